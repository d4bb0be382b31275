"""Winograd 3D convolution F(m x m x m, 3 x 3 x 3) for stride-1 3x3x3 convolutions, in torch ops.

A dense 3x3x3 convolution costs 27 multiply-adds per output voxel and input-output channel
pair. Winograd's minimal filtering computes an m x m x m block of outputs from an
(m + 2)^3 input tile with (m + 2)^3 multiply-adds per channel pair instead of 27 m^3:
F(2^3, 3^3) needs 64 instead of 216 (3.4x fewer), F(4^3, 3^3) 216 instead of 1728 (8x).
The price is three linear transforms (input tiles, weights, output tiles), which are
memory traffic rather than arithmetic.

Here (channels-last throughout):

1. the padded input ``(N, D, H, W, C)`` is transformed one axis at a time with
   ``B^T`` (each axis: overlapping tiles of m + 2 voxels at a step of m, written as the
   few non-zero linear combinations of strided slices), giving ``(a^3, tiles, C_in)``
   with ``a = m + 2``;
2. the weights once per layer with ``G`` (in float64, then float32):
   ``(a^3, C_in, C_out)``;
3. ``a^3`` batched matrix products ``(tiles, C_in) @ (C_in, C_out)`` (``torch.bmm``);
4. the products transformed back one axis at a time with ``A^T``, the last axis
   written straight into the channels-last output (bias added there).

:func:`winograd_conv3d` is the function; :class:`WinogradConv3d` a ``Conv3d`` layer that
runs it (its transformed weights computed once), and :class:`winograd_convolutions`
puts such layers, sharing the weights, in place of the qualifying ``Conv3d`` layers of
a module (stride 1, kernel 3, padding 1, no dilation or groups, at least
``min_channels`` input and output channels) for the duration of a ``with`` block.
The error is float32 rounding amplified by the transform
coefficients: ~1e-6 of the output's scale for F(2), ~1e-5 for F(4) (tested).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InvalidInputError
from .cpu_conv import conv_like, cpu_inference, swapped_layers

__all__ = ["winograd_conv3d", "transform_weight", "WinogradConv3d", "winograd_convolutions", "qualifies"]

_F = Fraction

#: (B^T, G, A^T) of F(m, 3) for m = 2 and 4 (Lavin & Gray, "Fast Algorithms for
#: Convolutional Neural Networks", 2016), exact fractions.
_MATRICES = {
    2: ([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [_F(1, 2), _F(1, 2), _F(1, 2)], [_F(1, 2), _F(-1, 2), _F(1, 2)], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]]),
    4: ([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
         [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[_F(1, 4), 0, 0], [_F(-1, 6), _F(-1, 6), _F(-1, 6)], [_F(-1, 6), _F(1, 6), _F(-1, 6)],
         [_F(1, 24), _F(1, 12), _F(1, 6)], [_F(1, 24), _F(-1, 12), _F(1, 6)], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
}


def _matrices(m: int) -> tuple:
    if m not in _MATRICES:
        raise InvalidInputError(f"Winograd tile size m={m!r} is not supported (use 2 or 4)")
    return _MATRICES[m]


def transform_weight(weight: torch.Tensor, m: int = 2) -> torch.Tensor:
    """``G g G^T`` on every (output, input) channel pair of a 3x3x3 kernel.

    Parameters
    ----------
    weight : torch.Tensor
        ``(C_out, C_in, 3, 3, 3)``.
    m : {2, 4}
        Output tile edge.

    Returns
    -------
    torch.Tensor
        ``((m + 2)^3, C_in, C_out)`` float32, contiguous: the right-hand matrices of the
        batched products.
    """
    if weight.dim() != 5 or tuple(weight.shape[2:]) != (3, 3, 3):
        raise InvalidInputError(f"Winograd F(m, 3) needs a (C_out, C_in, 3, 3, 3) kernel, got "
                                f"{tuple(weight.shape)}")
    g = torch.tensor([[float(v) for v in row] for row in _matrices(m)[1]], dtype=torch.float64)
    # leading axes in the order the input transform stacks them: (W, H, D)
    u = torch.einsum("ap,bq,cs,oipqs->cbaio", g, g, g, weight.detach().double())
    a = m + 2
    return u.reshape(a ** 3, weight.shape[1], weight.shape[0]).float().contiguous()


def _combine(coeffs, slices, out: torch.Tensor) -> None:
    """``out = sum_k coeffs[k] * slices(k)`` over the non-zero coefficients, in place."""
    first = True
    for k, c in enumerate(coeffs):
        if c == 0:
            continue
        c = float(c)
        if first:
            if c == 1:
                out.copy_(slices(k))
            else:
                torch.mul(slices(k), c, out=out)
            first = False
        else:
            out.add_(slices(k), alpha=c)
    if first:
        out.zero_()


def _transform_axis(x: torch.Tensor, axis: int, matrix, step: int, tiles: int) -> torch.Tensor:
    """Apply ``matrix`` (rows: results, columns: tile offsets) to the overlapping tiles of
    ``x`` along ``axis`` (tile ``t`` starts at ``t * step``); the results become a new
    leading dimension and ``axis`` keeps ``tiles`` entries."""
    rows = len(matrix)
    shape = list(x.shape)
    shape[axis] = tiles
    out = x.new_empty([rows] + shape)
    span = (tiles - 1) * step + 1

    def piece(k):
        index = [slice(None)] * x.dim()
        index[axis] = slice(k, k + span, step)
        return x[tuple(index)]

    for j in range(rows):
        _combine(matrix[j], piece, out[j])
    return out


def _reduce_axis(y: torch.Tensor, axis: int, matrix, out: Optional[torch.Tensor] = None):
    """``out[i] = sum_j matrix[i][j] * y.select(axis, j)``, stacked along ``axis``."""
    if out is None:
        shape = list(y.shape)
        shape[axis] = len(matrix)
        out = y.new_empty(shape)
    for i, row in enumerate(matrix):
        _combine(row, lambda j: y.select(axis, j), out.select(axis, i))
    return out


def winograd_conv3d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                    padding: int = 1, m: int = 2,
                    transformed: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A stride-1 3x3x3 convolution (cross-correlation, as ``F.conv3d``) by Winograd F(m, 3).

    Parameters
    ----------
    x : torch.Tensor
        ``(N, C_in, D, H, W)`` float32; channels-last order is fastest (other orders are
        copied to it).
    weight : torch.Tensor
        ``(C_out, C_in, 3, 3, 3)``.
    bias : torch.Tensor, optional
        ``(C_out,)``.
    padding : int
        Zero padding on every side (0, 1 or 2), as ``F.conv3d``'s.
    m : {2, 4}
        Output tile edge (4: fewer multiplications, more rounding).
    transformed : torch.Tensor, optional
        :func:`transform_weight` of ``weight`` for this ``m`` (computed when absent).

    Returns
    -------
    torch.Tensor
        ``(N, C_out, D', H', W')`` in channels-last order, equal to ``F.conv3d`` to float32
        rounding amplified by the transforms.
    """
    if x.dim() != 5 or weight.dim() != 5 or x.shape[1] != weight.shape[1]:
        raise InvalidInputError(f"winograd_conv3d: input {tuple(x.shape)} and kernel "
                                f"{tuple(weight.shape)} do not fit (N, C, D, H, W) x "
                                "(C_out, C, 3, 3, 3)")
    if int(padding) not in (0, 1, 2):
        raise InvalidInputError(f"winograd_conv3d: padding must be 0, 1 or 2, got {padding!r}")
    bt, _, at = _matrices(m)
    a = m + 2
    u = transform_weight(weight, m) if transformed is None else transformed
    n, cin = x.shape[:2]
    cout = weight.shape[0]
    p = int(padding)
    sizes = [s + 2 * p - 2 for s in x.shape[2:]]
    if min(sizes) < 1:
        raise InvalidInputError(f"winograd_conv3d: input {tuple(x.shape)} is smaller than the "
                                "kernel")
    tiles = [-(-s // m) for s in sizes]
    # (N, D, H, W, C) view; pad the convolution's border plus the last tile's overhang
    xl = x.permute(0, 2, 3, 4, 1)
    extra = [t * m + 2 - (s + 2 * p) for t, s in zip(tiles, x.shape[2:])]
    xl = F.pad(xl, (0, 0, p, p + extra[2], p, p + extra[1], p, p + extra[0]))
    # input transform, each axis' results stacked in front:
    # (N, Dp, Hp, Wp, C) -> (aD, N, TD, Hp, Wp, C) -> ... -> (aW, aH, aD, N, TD, TH, TW, C)
    v = _transform_axis(xl, 1, bt, m, tiles[0])
    del xl
    v = _transform_axis(v, 3, bt, m, tiles[1])
    v = _transform_axis(v, 5, bt, m, tiles[2])
    count = n * tiles[0] * tiles[1] * tiles[2]
    prod = torch.bmm(v.view(a ** 3, count, cin), u)  # (a^3, tiles, C_out)
    del v
    prod = prod.view(a, a, a, n, *tiles, cout)
    y = _reduce_axis(prod, 0, at)   # (mW, aH, aD, ...)
    del prod
    y = _reduce_axis(y, 1, at)      # (mW, mH, aD, ...)
    out = x.new_empty((n, tiles[0], m, tiles[1], m, tiles[2], m, cout))
    # the last axis is written straight into the (N, D, H, W, C) output
    _reduce_axis(y, 2, at, out=out.permute(6, 4, 2, 0, 1, 3, 5, 7))
    del y
    if bias is not None:
        out += bias
    out = out.view(n, tiles[0] * m, tiles[1] * m, tiles[2] * m, cout)
    if [t * m for t in tiles] != sizes:
        out = out[:, :sizes[0], :sizes[1], :sizes[2]].contiguous()
    return out.permute(0, 4, 1, 2, 3)


def qualifies(conv: Any, min_channels: int = 64) -> bool:
    """Whether ``conv`` is a ``Conv3d`` that :func:`winograd_conv3d` computes exactly:
    kernel 3, stride 1, padding 0-2 (same on every side), no dilation or groups, and at
    least ``min_channels`` input and output channels (smaller layers are memory-bound,
    where the 8x larger transformed input costs more than the saved arithmetic)."""
    return (isinstance(conv, nn.Conv3d) and tuple(conv.kernel_size) == (3, 3, 3)
            and tuple(conv.stride) == (1, 1, 1) and tuple(conv.dilation) == (1, 1, 1)
            and conv.groups == 1 and isinstance(conv.padding, tuple)
            and len(set(conv.padding)) == 1 and conv.padding[0] in (0, 1, 2)
            and conv.padding_mode == "zeros"
            and min(conv.in_channels, conv.out_channels) >= int(min_channels))


class WinogradConv3d(nn.Conv3d):
    """``nn.Conv3d`` computed by :func:`winograd_conv3d` on CPU float32 inference, by
    PyTorch's convolution otherwise (gradients, other dtypes or devices, tracing).

    Build it from a layer with :func:`~napari_medseg.models.nnunet.cpu_conv.conv_like`
    (``conv_like(WinogradConv3d, conv, m=4)``); the transformed weights are computed on
    the first call and again whenever the weights change.

    Parameters
    ----------
    *args, **kwargs
        As ``nn.Conv3d``'s; a 3x3x3 kernel, stride 1, equal padding 0-2.
    m : {2, 4}
        Output tile edge.
    """

    def __init__(self, *args: Any, m: int = 2, **kwargs: Any) -> None:
        _matrices(m)
        super().__init__(*args, **kwargs)
        self.m = int(m)
        self._transformed: Optional[tuple] = None  # (weight, (version, storage), transform)

    def transformed_weight(self) -> torch.Tensor:
        """:func:`transform_weight` of the current weights (cached)."""
        w = self.weight
        # inference-mode weights have no version counter (and cannot change outside it)
        key = (None if w.is_inference() else w._version, w.data_ptr())
        cached = self._transformed
        if cached is None or cached[0] is not w or cached[1] != key:
            cached = self._transformed = (w, key, transform_weight(w, self.m))
        return cached[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if cpu_inference(x) and x.dtype == torch.float32:
            return winograd_conv3d(x, self.weight, self.bias, self.padding[0], self.m,
                                   self.transformed_weight())
        return super().forward(x)


def winograd_convolutions(module: nn.Module, min_channels: int = 64, m: int = 2) -> swapped_layers:
    """Within ``with``, the qualifying ``Conv3d`` layers of ``module`` (see
    :func:`qualifies`) are :class:`WinogradConv3d` layers sharing their weights (the
    transforms computed on entry); restored on exit. ``with`` gives the module to run.

    Parameters
    ----------
    module : torch.nn.Module
    min_channels : int
        Smallest input/output channel count converted.
    m : {2, 4}
        Output tile edge.
    """
    _matrices(m)

    def replace(layer: nn.Module) -> Optional[nn.Module]:
        if not qualifies(layer, int(min_channels)):
            return None
        new = conv_like(WinogradConv3d, layer, m=int(m))
        new.transformed_weight()
        return new

    return swapped_layers(module, replace)
