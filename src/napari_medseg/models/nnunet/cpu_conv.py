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
* :func:`transposed_conv3d_as_gemm`: a transposed convolution whose kernel equals its
  stride (nnU-Net's upsampling) is one matrix product, ``(voxels, C_in) @ (C_in,
  C_out x k^3)``, followed by a reshuffle into the upsampled channels-last output;
  PyTorch runs the small ones through ``slow_conv_transpose3d``.
* :class:`onednn_convolutions`: both swapped into a module's layers for a ``with`` block
  (used by the tests and ``benchmarks/bench_winograd.py --onednn``).

Both compute the same sums as ``F.conv3d`` / ``F.conv_transpose3d`` in another order:
equal to float32 rounding (tested).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["onednn_conv3d", "transposed_conv3d_as_gemm", "onednn_applies",
           "gemm_transposed_applies", "onednn_convolutions"]


def onednn_applies(conv: Any, x: torch.Tensor) -> bool:
    """Whether :func:`onednn_conv3d` runs ``conv(x)``: a zero-padded ``Conv3d`` on a float32
    CPU tensor with more than one input channel, no gradient."""
    return (type(conv) is nn.Conv3d and conv.padding_mode == "zeros"
            and isinstance(conv.padding, tuple) and conv.in_channels > 1
            and x.device.type == "cpu" and x.dtype == torch.float32
            and not torch.is_grad_enabled() and torch.backends.mkldnn.is_available())


def onednn_conv3d(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` through oneDNN whatever the size (see the module docstring).

    Returns a channels-last tensor (from a channels-last ``x``).
    """
    return torch.mkldnn_convolution(x, conv.weight, conv.bias, conv.padding, conv.stride,
                                    conv.dilation, conv.groups)


def gemm_transposed_applies(tconv: Any, x: torch.Tensor) -> bool:
    """Whether :func:`transposed_conv3d_as_gemm` runs ``tconv(x)``: kernel == stride, no
    padding, dilation, groups or output padding; float32 CPU, no gradient."""
    return (type(tconv) is nn.ConvTranspose3d
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


class onednn_convolutions:
    """Within ``with``, the ``Conv3d`` layers of ``module`` run :func:`onednn_conv3d` and its
    kernel == stride ``ConvTranspose3d`` layers :func:`transposed_conv3d_as_gemm`, whenever
    their ``*_applies`` test holds for the input (else PyTorch's own path); restored on exit."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.layers: list = []

    def __enter__(self):
        for layer in {id(m): m for m in self.module.modules()}.values():
            if type(layer) is nn.Conv3d:
                layer.forward = self._wrap(layer, onednn_applies, onednn_conv3d)
            elif type(layer) is nn.ConvTranspose3d:
                layer.forward = self._wrap(layer, gemm_transposed_applies,
                                           transposed_conv3d_as_gemm)
            else:
                continue
            self.layers.append(layer)
        return self.module

    @staticmethod
    def _wrap(layer, applies, fast):
        reference = type(layer).forward.__get__(layer)

        def forward(x, *args, **kwargs):
            if args or kwargs or not applies(layer, x):
                return reference(x, *args, **kwargs)
            return fast(layer, x)

        return forward

    def __exit__(self, *exc):
        for layer in self.layers:
            del layer.forward
        self.layers = []
        return False
