"""nnU-Net's U-Nets (PlainConvUNet, ResidualEncoderUNet), written for this project.

The module tree reproduces ``dynamic_network_architectures`` (the package nnU-Net
v2 builds its networks from) attribute for attribute, so that published
checkpoints load with ``strict=True``: for example
``encoder.stages.0.0.convs.0.conv.weight`` and its alias
``encoder.stages.0.0.convs.0.all_modules.0.weight`` (the same tensor registered
twice), and ``decoder.encoder.*`` (the decoder keeps a reference to the encoder).
The forward computation is the reference's, with CPU fast paths that compute the
same sums: the 3D convolutions are :class:`~.cpu_conv.OneDNNConv3d` and the
upsampling :class:`~.cpu_conv.GemmConvTranspose3d` layers (``nn.Conv3d`` /
``nn.ConvTranspose3d`` subclasses, same parameters), instance norms stay
channels-last, and the 1x1 seg layer is one matrix product (``UNetDecoder.head``), so
outputs equal the reference's to float32 rounding (the parity tests compare both).

Only what inference needs is implemented: no deep-supervision outputs, no weight
initialisation, no stochastic depth or squeeze-excitation (their presence in the
plans is refused with a clear message).

Class names in the plans (``conv_op``, ``norm_op``, ``nonlin``, ...) are looked up
in explicit tables, never imported by name.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn

from ...errors import InvalidInputError
from .cpu_conv import GemmConvTranspose3d, OneDNNConv3d, cpu_inference

__all__ = ["PlainConvUNet", "ResidualEncoderUNet", "build_network"]

_CONV = {"Conv1d": nn.Conv1d, "Conv2d": nn.Conv2d, "Conv3d": nn.Conv3d}
#: the layer classes built for a conv_op / transposed conv_op (CPU fast paths, cpu_conv.py)
_FAST = {nn.Conv3d: OneDNNConv3d, nn.ConvTranspose3d: GemmConvTranspose3d}
_TRANSP = {nn.Conv1d: nn.ConvTranspose1d, nn.Conv2d: nn.ConvTranspose2d, nn.Conv3d: nn.ConvTranspose3d}
_AVGPOOL = {nn.Conv1d: nn.AvgPool1d, nn.Conv2d: nn.AvgPool2d, nn.Conv3d: nn.AvgPool3d}
_NORM = {
    "InstanceNorm1d": nn.InstanceNorm1d,
    "InstanceNorm2d": nn.InstanceNorm2d,
    "InstanceNorm3d": nn.InstanceNorm3d,
    "BatchNorm1d": nn.BatchNorm1d,
    "BatchNorm2d": nn.BatchNorm2d,
    "BatchNorm3d": nn.BatchNorm3d,
    "GroupNorm": nn.GroupNorm,
}
_NONLIN = {
    "LeakyReLU": nn.LeakyReLU,
    "ReLU": nn.ReLU,
    "GELU": nn.GELU,
    "ELU": nn.ELU,
    "PReLU": nn.PReLU,
    "SiLU": nn.SiLU,
}
_DROPOUT = {
    "Dropout": nn.Dropout,
    "Dropout1d": nn.Dropout1d,
    "Dropout2d": nn.Dropout2d,
    "Dropout3d": nn.Dropout3d,
}


def _as_list(value: Any, n: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


def _as_tuple(value: Any, dim: int) -> tuple:
    return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else (int(value),) * dim


class ConvDropoutNormReLU(nn.Module):
    """conv -> (dropout) -> (norm) -> (nonlin); ``nonlin_first`` swaps norm and nonlin."""

    def __init__(self, conv_op, cin: int, cout: int, kernel_size, stride, conv_bias: bool,
                 norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs,
                 nonlin_first: bool = False):
        super().__init__()
        dim = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}[conv_op]
        kernel_size = _as_tuple(kernel_size, dim)
        self.stride = _as_tuple(stride, dim)
        ops = []
        self.conv = _FAST.get(conv_op, conv_op)(cin, cout, kernel_size, self.stride,
                                                padding=[(k - 1) // 2 for k in kernel_size], dilation=1,
                                                bias=conv_bias)
        ops.append(self.conv)
        if dropout_op is not None:
            self.dropout = dropout_op(**(dropout_op_kwargs or {}))
            ops.append(self.dropout)
        if norm_op is not None:
            self.norm = norm_op(cout, **(norm_op_kwargs or {}))
            ops.append(self.norm)
        if nonlin is not None:
            self.nonlin = nonlin(**(nonlin_kwargs or {}))
            ops.append(self.nonlin)
        if nonlin_first and norm_op is not None and nonlin is not None:
            ops[-1], ops[-2] = ops[-2], ops[-1]
        self.all_modules = nn.Sequential(*ops)

    def forward(self, x):
        if not cpu_inference(x):
            return self.all_modules(x)
        x = self.conv(x)  # its class picks the CPU path (cpu_conv.py, winograd.py)
        for module in self.all_modules[1:]:
            if module is getattr(self, "norm", None) and _channels_last_instance_norm_applies(module, x):
                x = _channels_last_instance_norm(module, x)
            else:
                x = module(x)
        return x


def _channels_last_instance_norm_applies(norm: nn.Module, x: torch.Tensor) -> bool:
    return (isinstance(norm, nn.InstanceNorm3d) and norm.affine and not norm.track_running_stats
            and x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last_3d)
            and not x.is_contiguous())


def _channels_last_instance_norm(norm: nn.InstanceNorm3d, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)`` for a channels-last ``x``, without leaving channels-last order.

    PyTorch's instance norm copies a channels-last tensor to channels-first, and the
    next convolution copies it back: on the CPU those two copies cost more than the
    normalisation (a quarter of a full-size nnU-Net's forward pass). Here the
    statistics are reduced over the voxels of the (voxels, channels) view, in two
    passes (mean, then the mean squared deviation: no cancellation), and the affine
    map is applied in place on the centred copy. Same result to float32 rounding.
    """
    n, c = x.shape[:2]
    flat = x.permute(0, 2, 3, 4, 1).reshape(n, -1, c)  # a view: x is channels-last
    mean = flat.mean(1, keepdim=True)
    centred = flat - mean
    # sum of squares as a dot product: no squared temporary
    var = torch.linalg.vecdot(centred, centred, dim=1).unsqueeze(1).div_(flat.shape[1])
    scale = norm.weight * torch.rsqrt(var + norm.eps)
    torch.addcmul(norm.bias, centred, scale, out=centred)  # one pass, in place
    return centred.reshape(n, *x.shape[2:], c).permute(0, 4, 1, 2, 3)


class StackedConvBlocks(nn.Module):
    def __init__(self, num_convs: int, conv_op, cin: int, cout: int, kernel_size, initial_stride,
                 conv_bias, norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin,
                 nonlin_kwargs, nonlin_first: bool = False):
        super().__init__()
        couts = _as_list(cout, num_convs)
        blocks = [ConvDropoutNormReLU(conv_op, cin, couts[0], kernel_size, initial_stride, conv_bias,
                                      norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin,
                                      nonlin_kwargs, nonlin_first)]
        for i in range(1, num_convs):
            blocks.append(ConvDropoutNormReLU(conv_op, couts[i - 1], couts[i], kernel_size, 1, conv_bias,
                                              norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs,
                                              nonlin, nonlin_kwargs, nonlin_first))
        self.convs = nn.Sequential(*blocks)
        self.output_channels = couts[-1]

    def forward(self, x):
        return self.convs(x)


class _EncoderInfo(nn.Module):
    """What the decoder reads from an encoder (kept as plain attributes)."""

    def _store(self, conv_op, features, strides, kernel_sizes, conv_bias, norm_op, norm_op_kwargs,
               dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs):
        dim = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}[conv_op]
        self.conv_op = conv_op
        self.output_channels = list(features)
        self.strides = [_as_tuple(s, dim) for s in strides]
        self.kernel_sizes = list(kernel_sizes)
        self.conv_bias = conv_bias
        self.norm_op, self.norm_op_kwargs = norm_op, norm_op_kwargs
        self.dropout_op, self.dropout_op_kwargs = dropout_op, dropout_op_kwargs
        self.nonlin, self.nonlin_kwargs = nonlin, nonlin_kwargs


class PlainConvEncoder(_EncoderInfo):
    def __init__(self, cin, n_stages, features, conv_op, kernel_sizes, strides, n_conv_per_stage,
                 conv_bias, norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin,
                 nonlin_kwargs, nonlin_first=False):
        super().__init__()
        kernel_sizes = _as_list(kernel_sizes, n_stages)
        features = _as_list(features, n_stages)
        n_conv_per_stage = _as_list(n_conv_per_stage, n_stages)
        strides = _as_list(strides, n_stages)
        stages = []
        for s in range(n_stages):
            stages.append(nn.Sequential(StackedConvBlocks(
                n_conv_per_stage[s], conv_op, cin, features[s], kernel_sizes[s], strides[s], conv_bias,
                norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs,
                nonlin_first)))
            cin = features[s]
        self.stages = nn.Sequential(*stages)
        self._store(conv_op, features, strides, kernel_sizes, conv_bias, norm_op, norm_op_kwargs,
                    dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs)

    def forward(self, x):
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips


class BasicBlockD(nn.Module):
    """ResNet-D basic block: two convs, skip through avg-pool + 1x1 conv when needed."""

    def __init__(self, conv_op, cin, cout, kernel_size, stride, conv_bias, norm_op, norm_op_kwargs,
                 dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs):
        super().__init__()
        dim = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}[conv_op]
        stride = _as_tuple(stride, dim)
        self.conv1 = ConvDropoutNormReLU(conv_op, cin, cout, kernel_size, stride, conv_bias, norm_op,
                                         norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin,
                                         nonlin_kwargs)
        self.conv2 = ConvDropoutNormReLU(conv_op, cout, cout, kernel_size, 1, conv_bias, norm_op,
                                         norm_op_kwargs, None, None, None, None)
        self.nonlin2 = nonlin(**(nonlin_kwargs or {})) if nonlin is not None else nn.Identity()
        has_stride = any(s != 1 for s in stride)
        needs_projection = cin != cout
        if has_stride or needs_projection:
            ops = []
            if has_stride:
                ops.append(_AVGPOOL[conv_op](stride, stride))
            if needs_projection:
                ops.append(ConvDropoutNormReLU(conv_op, cin, cout, 1, 1, False, norm_op, norm_op_kwargs,
                                               None, None, None, None))
            self.skip = nn.Sequential(*ops)
        else:
            self.skip = None

    def forward(self, x):
        residual = x if self.skip is None else self.skip(x)
        out = self.conv2(self.conv1(x))
        out += residual
        return self.nonlin2(out)


class StackedResidualBlocks(nn.Module):
    def __init__(self, n_blocks, conv_op, cin, cout, kernel_size, initial_stride, conv_bias, norm_op,
                 norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs):
        super().__init__()
        couts = _as_list(cout, n_blocks)
        blocks = [BasicBlockD(conv_op, cin, couts[0], kernel_size, initial_stride, conv_bias, norm_op,
                              norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs)]
        for n in range(1, n_blocks):
            blocks.append(BasicBlockD(conv_op, couts[n - 1], couts[n], kernel_size, 1, conv_bias, norm_op,
                                      norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin,
                                      nonlin_kwargs))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):
        return self.blocks(x)


class ResidualEncoder(_EncoderInfo):
    def __init__(self, cin, n_stages, features, conv_op, kernel_sizes, strides, n_blocks_per_stage,
                 conv_bias, norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin,
                 nonlin_kwargs, stem_channels: Optional[int] = None):
        super().__init__()
        kernel_sizes = _as_list(kernel_sizes, n_stages)
        features = _as_list(features, n_stages)
        n_blocks_per_stage = _as_list(n_blocks_per_stage, n_stages)
        strides = _as_list(strides, n_stages)
        stem_channels = features[0] if stem_channels is None else stem_channels
        self.stem = StackedConvBlocks(1, conv_op, cin, stem_channels, kernel_sizes[0], 1, conv_bias,
                                      norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin,
                                      nonlin_kwargs)
        cin = stem_channels
        stages = []
        for s in range(n_stages):
            stages.append(StackedResidualBlocks(
                n_blocks_per_stage[s], conv_op, cin, features[s], kernel_sizes[s], strides[s], conv_bias,
                norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs))
            cin = features[s]
        self.stages = nn.Sequential(*stages)
        self._store(conv_op, features, strides, kernel_sizes, conv_bias, norm_op, norm_op_kwargs,
                    dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs)

    def forward(self, x):
        x = self.stem(x)
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips


class UNetDecoder(nn.Module):
    """Transposed conv up, concatenate the skip, conv blocks; one 1x1 seg layer per stage.

    Only the last (full-resolution) seg layer is evaluated: inference never uses
    deep supervision. The others exist so the published state dict fits.
    """

    def __init__(self, encoder: _EncoderInfo, num_classes: int, n_conv_per_stage, nonlin_first=False):
        super().__init__()
        self.encoder = encoder  # registered on purpose: the checkpoints hold decoder.encoder.*
        n_enc = len(encoder.output_channels)
        n_conv_per_stage = _as_list(n_conv_per_stage, n_enc - 1)
        transp = _TRANSP[encoder.conv_op]
        stages, transpconvs, seg_layers = [], [], []
        for s in range(1, n_enc):
            below = encoder.output_channels[-s]
            skip = encoder.output_channels[-(s + 1)]
            stride = encoder.strides[-s]
            transpconvs.append(_FAST.get(transp, transp)(below, skip, stride, stride, bias=encoder.conv_bias))
            stages.append(StackedConvBlocks(
                n_conv_per_stage[s - 1], encoder.conv_op, 2 * skip, skip, encoder.kernel_sizes[-(s + 1)], 1,
                encoder.conv_bias, encoder.norm_op, encoder.norm_op_kwargs, encoder.dropout_op,
                encoder.dropout_op_kwargs, encoder.nonlin, encoder.nonlin_kwargs, nonlin_first))
            seg_layers.append(encoder.conv_op(skip, num_classes, 1, 1, 0, bias=True))
        self.stages = nn.ModuleList(stages)
        self.transpconvs = nn.ModuleList(transpconvs)
        self.seg_layers = nn.ModuleList(seg_layers)

    def forward(self, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.head(self.forward_features(skips))

    def forward_features(self, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        """The full-resolution decoder features (the input of the last seg layer)."""
        x = skips[-1]
        for s in range(len(self.stages)):
            x = self.transpconvs[s](x)  # one GEMM on the CPU (GemmConvTranspose3d)
            x = torch.cat((x, skips[-(s + 2)]), 1)
            x = self.stages[s](x)
        return x

    def head(self, features: torch.Tensor, classes: slice = slice(None)) -> torch.Tensor:
        """The last (1x1) seg layer, as one matrix product per sample.

        Same maths as the convolution; on the CPU PyTorch runs a 1x1 3D convolution
        through its slow im2col path and then copies the result out of channels-last
        order, which together cost several times this product. The output is
        channels-first contiguous, as the score accumulators want it.
        """
        seg = self.seg_layers[-1]
        n_in = seg.weight.shape[1]
        weight = seg.weight.reshape(seg.weight.shape[0], n_in)[classes]
        bias = seg.bias[classes, None]
        n_out = weight.shape[0]
        spatial = features.shape[2:]
        outs = [torch.addmm(bias, weight, f.reshape(n_in, -1)).reshape(n_out, *spatial)
                for f in features]
        return torch.stack(outs) if len(outs) > 1 else outs[0][None]


class _UNet(nn.Module):
    """Encoder + decoder; ``forward_features`` and ``head`` let the sliding window
    average test-time mirrors on the decoder features and run the seg layer once
    (the seg layer is linear and per-voxel, so it commutes with flips and means)."""

    def forward(self, x):
        return self.decoder(self.encoder(x))

    def forward_features(self, x):
        return self.decoder.forward_features(self.encoder(x))

    def head(self, features, classes: slice = slice(None)):
        """Class scores (of the ``classes`` block) from ``forward_features`` output."""
        return self.decoder.head(features, classes)


class PlainConvUNet(_UNet):
    def __init__(self, input_channels, n_stages, features_per_stage, conv_op, kernel_sizes, strides,
                 n_conv_per_stage, num_classes, n_conv_per_stage_decoder, conv_bias=False,
                 norm_op=None, norm_op_kwargs=None, dropout_op=None, dropout_op_kwargs=None,
                 nonlin=None, nonlin_kwargs=None, nonlin_first=False):
        super().__init__()
        self.encoder = PlainConvEncoder(input_channels, n_stages, features_per_stage, conv_op,
                                        kernel_sizes, strides, n_conv_per_stage, conv_bias, norm_op,
                                        norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin,
                                        nonlin_kwargs, nonlin_first)
        self.decoder = UNetDecoder(self.encoder, num_classes, n_conv_per_stage_decoder, nonlin_first)


class ResidualEncoderUNet(_UNet):
    def __init__(self, input_channels, n_stages, features_per_stage, conv_op, kernel_sizes, strides,
                 n_blocks_per_stage, num_classes, n_conv_per_stage_decoder, conv_bias=False,
                 norm_op=None, norm_op_kwargs=None, dropout_op=None, dropout_op_kwargs=None,
                 nonlin=None, nonlin_kwargs=None, stem_channels=None):
        super().__init__()
        self.encoder = ResidualEncoder(input_channels, n_stages, features_per_stage, conv_op,
                                       kernel_sizes, strides, n_blocks_per_stage, conv_bias, norm_op,
                                       norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin,
                                       nonlin_kwargs, stem_channels)
        self.decoder = UNetDecoder(self.encoder, num_classes, n_conv_per_stage_decoder)


def _lookup(table: dict, value: Any, what: str, source: str):
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"{source}: {what} must be a class name, got {value!r}")
    name = value.rsplit(".", 1)[-1]
    if not value.startswith("torch.nn") or name not in table:
        raise InvalidInputError(
            f"{source}: {what} '{value}' is not supported (supported: torch.nn "
            f"{', '.join(sorted(table))})"
        )
    return table[name]


_KNOWN_KWARGS = {
    "n_stages", "features_per_stage", "conv_op", "kernel_sizes", "strides", "n_conv_per_stage",
    "n_blocks_per_stage", "n_conv_per_stage_decoder", "conv_bias", "norm_op", "norm_op_kwargs",
    "dropout_op", "dropout_op_kwargs", "nonlin", "nonlin_kwargs", "deep_supervision",
    "nonlin_first", "stem_channels", "block", "bottleneck_channels",
}


def build_network(architecture: dict, num_input_channels: int, num_classes: int,
                  source: str = "plans.json") -> nn.Module:
    """Build the network described by a plans ``architecture`` entry.

    Parameters
    ----------
    architecture : dict
        ``{"network_class_name", "arch_kwargs", "_kw_requires_import"}``.
    num_input_channels, num_classes : int
        From dataset.json (``channel_names`` and ``labels``).
    source : str
        For error messages.
    """
    class_name = str(architecture.get("network_class_name", "")).rsplit(".", 1)[-1]
    kwargs = dict(architecture.get("arch_kwargs", {}))
    unknown = set(kwargs) - _KNOWN_KWARGS
    if unknown:
        raise InvalidInputError(f"{source}: unsupported network arguments {sorted(unknown)}")
    conv_op = _lookup(_CONV, kwargs.pop("conv_op", None), "conv_op", source)
    if conv_op is None:
        raise InvalidInputError(f"{source}: the architecture has no conv_op")
    common = dict(
        input_channels=num_input_channels,
        n_stages=int(kwargs.pop("n_stages")),
        features_per_stage=kwargs.pop("features_per_stage"),
        conv_op=conv_op,
        kernel_sizes=kwargs.pop("kernel_sizes"),
        strides=kwargs.pop("strides"),
        num_classes=num_classes,
        n_conv_per_stage_decoder=kwargs.pop("n_conv_per_stage_decoder"),
        conv_bias=bool(kwargs.pop("conv_bias", False)),
        norm_op=_lookup(_NORM, kwargs.pop("norm_op", None), "norm_op", source),
        norm_op_kwargs=kwargs.pop("norm_op_kwargs", None),
        dropout_op=_lookup(_DROPOUT, kwargs.pop("dropout_op", None), "dropout_op", source),
        dropout_op_kwargs=kwargs.pop("dropout_op_kwargs", None),
        nonlin=_lookup(_NONLIN, kwargs.pop("nonlin", None), "nonlin", source),
        nonlin_kwargs=kwargs.pop("nonlin_kwargs", None),
    )
    kwargs.pop("deep_supervision", None)
    if class_name == "PlainConvUNet":
        return PlainConvUNet(n_conv_per_stage=kwargs.pop("n_conv_per_stage"),
                             nonlin_first=bool(kwargs.pop("nonlin_first", False)), **common)
    if class_name == "ResidualEncoderUNet":
        block = kwargs.pop("block", None)
        if block is not None and str(block).rsplit(".", 1)[-1] != "BasicBlockD":
            raise InvalidInputError(f"{source}: residual block '{block}' is not supported (BasicBlockD only)")
        kwargs.pop("bottleneck_channels", None)
        return ResidualEncoderUNet(n_blocks_per_stage=kwargs.pop("n_blocks_per_stage"),
                                   stem_channels=kwargs.pop("stem_channels", None), **common)
    raise InvalidInputError(
        f"{source}: network '{architecture.get('network_class_name')}' is not supported "
        "(PlainConvUNet and ResidualEncoderUNet are)"
    )
