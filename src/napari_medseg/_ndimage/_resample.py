"""Grids of the same physical extent: target shapes, index maps, linear resampling.

Convention: voxel centres (``align_corners=False``), i.e. two grids of the same extent
share their outer boundary, and voxel ``i`` of an ``n``-voxel axis covers
``[i, i + 1)`` in units of ``1 / n`` of the extent.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np


def target_shape(shape: Sequence[int], spacing: Sequence[float],
                 target: Union[float, Sequence[float]]) -> tuple:
    """Shape of the grid of the same extent at ``target`` spacing (one value or per axis).

    ``round(n * spacing / target)`` per axis, at least 1 voxel.
    """
    if np.isscalar(target):
        target = [float(target)] * len(shape)
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target))


def to_resampled(index: float, n_in: int, n_out: int) -> float:
    """Continuous index on an ``n_out`` axis of a continuous index on an ``n_in`` axis."""
    return (index + 0.5) * n_out / n_in - 0.5


def nearest_index(n_from: int, n_to: int) -> np.ndarray:
    """For every voxel centre of an ``n_from`` axis, the nearest voxel of an ``n_to`` axis.

    Returns int64 indices in ``0..n_to - 1`` (nearest-neighbour resampling from the
    ``n_to`` grid to the ``n_from`` grid is ``values[nearest_index(n_from, n_to)]``).
    """
    idx = np.floor((np.arange(n_from) + 0.5) * n_to / n_from).astype(np.int64)
    return np.clip(idx, 0, n_to - 1)


def resample_linear(array: np.ndarray, shape: Sequence[int], *, chunk: int = 32):
    """Trilinear resampling (``align_corners=False``) of a z, y, x array to ``shape``.

    Separable: bilinear in-plane per slab of ``chunk`` slices, then linear along z, so
    the input is never converted to float32 as a whole; equals
    ``torch.nn.functional.interpolate(..., mode="trilinear", align_corners=False)`` up
    to float32 rounding. Returns a float32 **torch** tensor on the CPU (``.numpy()``
    shares its memory).
    """
    import torch  # heavy: imported on use
    import torch.nn.functional as F

    nz, ny, nx = array.shape
    rz, ry, rx = (int(v) for v in shape)
    plane = torch.empty((nz, ry, rx), dtype=torch.float32)
    for z0 in range(0, nz, chunk):
        slab = torch.from_numpy(np.ascontiguousarray(array[z0 : z0 + chunk], dtype=np.float32))
        if (ny, nx) == (ry, rx):
            plane[z0 : z0 + chunk] = slab
        else:
            plane[z0 : z0 + chunk] = F.interpolate(slab[None], size=(ry, rx), mode="bilinear", align_corners=False)[0]
    if rz == nz:
        return plane
    cols = plane.reshape(nz, ry * rx).t().unsqueeze(1)  # (pixels, 1, nz)
    out = F.interpolate(cols, size=rz, mode="linear", align_corners=False)
    return out[:, 0, :].t().reshape(rz, ry, rx).contiguous()


def resample_nearest(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resampling of the last three axes to ``shape`` (labels; dtype kept)."""
    arr = np.asarray(array)
    idx = [nearest_index(int(n_out), int(n_in)) for n_out, n_in in zip(shape, arr.shape[-3:])]
    return arr[(Ellipsis,) + np.ix_(*idx)]


def linear_upsample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Rows = output samples of 1D linear interpolation (``align_corners=False``), float32."""
    import math

    scale = n_in / n_out
    m = np.zeros((n_out, n_in), dtype=np.float32)
    for o in range(n_out):
        src = max(scale * (o + 0.5) - 0.5, 0.0)
        i0 = min(int(math.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        w1 = src - i0
        m[o, i0] += 1.0 - w1
        m[o, i1] += w1
    return m
