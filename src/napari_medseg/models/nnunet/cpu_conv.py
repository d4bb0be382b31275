"""CPU inference paths for 3D convolutions that PyTorch's own dispatch runs slowly.

PyTorch sends a float32 convolution to oneDNN only when a size heuristic holds; for a
batch of one with a 3x3x3 kernel that is ``channels x depth x height > 20480``
(``use_mkldnn`` in ATen's ``Convolution.cpp``). Below it, the convolution runs through
``slow_conv3d`` (im2col + GEMM) and returns a channels-first tensor, so the next instance
norm also leaves the channels-last fast path. nnU-Net's deep stages and every stage of a
small network fall under it (4 stages 8..64 at 64^3: 9 of 14 convolutions, 38 % of a
window in ``slow_conv3d``, 13 % in the channels-first norm; measured with
``bench_nnunet.py --window m4-1.5mm-5cls --quick --profile``).

* :func:`onednn_conv3d`: the same convolution through ``torch.mkldnn_convolution`` (the
  oneDNN kernel PyTorch uses above the threshold), channels-last in, channels-last out.
* :func:`single_channel_conv3d`: a one-channel input (oneDNN refuses those) with an
  all-zero second channel, which adds exact zeros.
* :func:`transposed_conv3d_as_gemm`: a transposed convolution whose kernel equals its
  stride (nnU-Net's upsampling) is one matrix product, ``(voxels, C_in) @ (C_in,
  C_out x k^3)``, followed by a reshuffle into the upsampled channels-last output;
  PyTorch runs the small ones through ``slow_conv_transpose3d``.
* :class:`OneDNNConv3d` and :class:`GemmConvTranspose3d`: ``Conv3d`` /
  ``ConvTranspose3d`` layers that take these paths themselves on CPU inference (the
  nnU-Net networks are built from them) and PyTorch's otherwise.
* :class:`swapped_layers`: replaces layers of a module for a ``with`` block (one place
  for the module walking); :class:`onednn_convolutions` uses it to put the two classes
  above into any torch network, ``winograd.winograd_convolutions`` its Winograd layers.

All compute the same sums as ``F.conv3d`` / ``F.conv_transpose3d`` in another order:
equal to float32 rounding (tested).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import nn

__all__ = ["cpu_inference", "onednn_conv3d", "single_channel_conv3d", "transposed_conv3d_as_gemm",
           "onednn_applies", "gemm_transposed_applies", "OneDNNConv3d", "GemmConvTranspose3d",
           "swapped_layers", "onednn_convolutions", "conv_like"]


def cpu_inference(x: torch.Tensor) -> bool:
    """Whether ``x`` is CPU inference that the fast paths may run: a CPU tensor, no
    gradient, and not traced for a compiled runtime (OpenVINO fuses the reference graph,
    ``Conv3d`` and ``InstanceNorm3d``, best)."""
    return x.device.type == "cpu" and not torch.is_grad_enabled() and not torch.jit.is_tracing()


def onednn_applies(conv: Any, x: torch.Tensor) -> bool:
    """Whether :func:`onednn_conv3d` runs ``conv(x)``: a zero-padded ``Conv3d`` on a float32
    CPU tensor with more than one input channel, no gradient."""
    return (isinstance(conv, nn.Conv3d) and conv.padding_mode == "zeros"
            and isinstance(conv.padding, tuple) and conv.in_channels > 1
            and x.device.type == "cpu" and x.dtype == torch.float32
            and not torch.is_grad_enabled() and torch.backends.mkldnn.is_available())


def onednn_conv3d(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` through oneDNN whatever the size (see the module docstring).

    Returns a channels-last tensor (from a channels-last ``x``).
    """
    return torch.mkldnn_convolution(x, conv.weight, conv.bias, conv.padding, conv.stride,
                                    conv.dilation, conv.groups)


def single_channel_conv3d(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a one-channel input, about 4x faster on the CPU.

    oneDNN does not take single-channel 3D convolutions, and PyTorch's fallback
    (im2col) is slow. A second, all-zero input channel with all-zero weights
    adds exact zeros to every sum, so the result is the same while oneDNN runs it.
    """
    x2 = torch.cat((x, torch.zeros_like(x)), 1).contiguous(memory_format=torch.channels_last_3d)
    w2 = torch.cat((conv.weight, torch.zeros_like(conv.weight)), 1)
    return torch.nn.functional.conv3d(x2, w2, conv.bias, conv.stride, conv.padding, conv.dilation,
                                      conv.groups)


def gemm_transposed_applies(tconv: Any, x: torch.Tensor) -> bool:
    """Whether :func:`transposed_conv3d_as_gemm` runs ``tconv(x)``: kernel == stride, no
    padding, dilation, groups or output padding; float32 CPU, no gradient."""
    return (isinstance(tconv, nn.ConvTranspose3d)
            and tuple(tconv.kernel_size) == tuple(tconv.stride)
            and tuple(tconv.padding) == (0, 0, 0) and tuple(tconv.output_padding) == (0, 0, 0)
            and tuple(tconv.dilation) == (1, 1, 1) and tconv.groups == 1
            and x.device.type == "cpu" and x.dtype == torch.float32
            and not torch.is_grad_enabled())


def transposed_conv3d_as_gemm(tconv: nn.ConvTranspose3d, x: torch.Tensor) -> torch.Tensor:
    """``tconv(x)`` for kernel == stride as one matrix product (non-overlapping patches).

    Output voxel ``(k*d + i, k*h + j, k*w + l)`` of channel ``o`` is
    ``sum_c x[c, d, h, w] * W[c, o, i, j, l] + b[o]``: the product of the
    ``(voxels, C_in)`` view of ``x`` with the ``(C_in, C_out * k^3)`` view of the weights,
    reshuffled once into the channels-last output.
    """
    n, cin, d, h, w = x.shape
    cout = tconv.weight.shape[1]
    k = tuple(int(s) for s in tconv.kernel_size)
    flat = x.permute(0, 2, 3, 4, 1).reshape(-1, cin)  # a view when x is channels-last
    prod = torch.mm(flat, tconv.weight.reshape(cin, -1))
    out = prod.view(n, d, h, w, cout, *k).permute(0, 1, 5, 2, 6, 3, 7, 4)
    out = out.reshape(n, d * k[0], h * k[1], w * k[2], cout)
    if tconv.bias is not None:
        out += tconv.bias
    return out.permute(0, 4, 1, 2, 3)


def conv_like(cls: type, layer: nn.Module, **extra: Any) -> nn.Module:
    """A ``cls`` layer with ``layer``'s hyper-parameters and its very parameters (shared,
    not copied); ``cls`` is a ``Conv3d`` / ``ConvTranspose3d`` subclass and ``extra`` its
    own keyword arguments."""
    kwargs = dict(in_channels=layer.in_channels, out_channels=layer.out_channels,
                  kernel_size=layer.kernel_size, stride=layer.stride, padding=layer.padding,
                  dilation=layer.dilation, groups=layer.groups, bias=layer.bias is not None,
                  padding_mode=layer.padding_mode)
    if isinstance(layer, nn.ConvTranspose3d):
        kwargs["output_padding"] = layer.output_padding
    with torch.device("meta"):  # no memory for weights that are replaced at once
        new = cls(**kwargs, **extra)
    new.weight = layer.weight
    new.bias = layer.bias
    return new.train(layer.training)


class OneDNNConv3d(nn.Conv3d):
    """``nn.Conv3d`` that runs on oneDNN at every size on CPU inference.

    :func:`onednn_conv3d` when :func:`onednn_applies`, :func:`single_channel_conv3d` for a
    one-channel input, PyTorch's convolution otherwise (gradients, other devices,
    tracing). Same parameters and state-dict keys as ``nn.Conv3d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if cpu_inference(x):
            if x.shape[1] == 1:
                return single_channel_conv3d(self, x)
            if onednn_applies(self, x):
                return onednn_conv3d(self, x)
        return super().forward(x)


class GemmConvTranspose3d(nn.ConvTranspose3d):
    """``nn.ConvTranspose3d`` that runs :func:`transposed_conv3d_as_gemm` on CPU inference
    when :func:`gemm_transposed_applies` (nnU-Net's kernel == stride upsampling), PyTorch's
    transposed convolution otherwise. Same parameters and state-dict keys."""

    def forward(self, x: torch.Tensor, output_size: Optional[list] = None) -> torch.Tensor:
        if output_size is None and cpu_inference(x) and gemm_transposed_applies(self, x):
            return transposed_conv3d_as_gemm(self, x)
        return super().forward(x, output_size)


class swapped_layers:
    """Within ``with``, every layer of ``module`` for which ``replace(layer)`` returns a
    module is replaced by it, wherever the module tree holds it (nnU-Net registers each
    convolution twice: ``conv`` and ``all_modules.0``); restored on exit.

    ``with`` gives the module to run: ``module`` itself, or its replacement when
    ``module`` is such a layer.
    """

    def __init__(self, module: nn.Module, replace: Callable[[nn.Module], Optional[nn.Module]]):
        self.module = module
        self.replace = replace
        self.swaps: list = []  # (parent, name, original layer)
        self.root: Optional[nn.Module] = None

    def __enter__(self) -> nn.Module:
        holders: dict = {}
        for parent in self.module.modules():  # each module once
            for name, child in parent._modules.items():
                if child is not None:
                    holders.setdefault(id(child), []).append((parent, name))
        done: dict = {}
        for layer in list(self.module.modules()):
            if id(layer) in done:
                continue
            new = done[id(layer)] = self.replace(layer)
            if new is None:
                continue
            for parent, name in holders.get(id(layer), []):
                parent._modules[name] = new
                self.swaps.append((parent, name, layer))
        new_root = done.get(id(self.module))
        self.root = self.module if new_root is None else new_root
        return self.root

    def __exit__(self, *exc) -> bool:
        for parent, name, layer in reversed(self.swaps):
            parent._modules[name] = layer
        self.swaps = []
        return False


def _onednn_layer(layer: nn.Module) -> Optional[nn.Module]:
    if type(layer) is nn.Conv3d:
        return conv_like(OneDNNConv3d, layer)
    if type(layer) is nn.ConvTranspose3d:
        return conv_like(GemmConvTranspose3d, layer)
    return None


def onednn_convolutions(module: nn.Module) -> swapped_layers:
    """Within ``with``, the plain ``Conv3d`` / ``ConvTranspose3d`` layers of ``module`` are
    :class:`OneDNNConv3d` / :class:`GemmConvTranspose3d` sharing their parameters (for
    torch networks not built from them; used by the tests and
    ``benchmarks/bench_winograd.py --onednn``); restored on exit."""
    return swapped_layers(module, _onednn_layer)
