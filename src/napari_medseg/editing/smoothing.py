"""Smoothing with a kernel given in millimetres: median, opening, closing.

The structuring element is an ellipsoid in voxels, round in millimetres (see
:func:`~napari_medseg.editing._common.ellipsoid`), so anisotropic CTs are smoothed
as much along z as in-plane, physically. Each label is smoothed on its own bounding
box; voxels a label gains are taken from the background only (another label is never
overwritten), voxels it loses become background.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from ..errors import InvalidInputError
from ._common import check_size, ellipsoid, label_bboxes, label_pieces, prepare

METHODS = ("median", "opening", "closing")


def _majority(mask: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Binary median: a voxel is on when more than half of its footprint is.

    Computed as a convolution (FFT for big boxes) instead of a sorting median
    filter: for a binary mask the two agree and the convolution is far faster.
    """
    n = int(footprint.sum())
    if n == 1:
        return mask.copy()
    if mask.size * n < 2e7:
        counts = ndimage.correlate(mask.astype(np.uint16), footprint.astype(np.uint16), mode="constant")
        return counts * 2 > n
    from scipy.signal import fftconvolve

    counts = fftconvolve(mask.astype(np.float32), footprint[::-1, ::-1, ::-1].astype(np.float32)
                         if footprint.ndim == 3 else footprint[::-1, ::-1].astype(np.float32), mode="same")
    # counts are integers up to float error; n is odd (symmetric footprint), so
    # "more than half" is counts > n / 2 with a margin of 0.5 either side.
    return counts > n / 2.0


def _pad_op(mask: np.ndarray, footprint: np.ndarray, op: str) -> np.ndarray:
    """Opening/closing with the outside of the box treated as background."""
    pad = [(r // 2, r // 2) for r in footprint.shape]
    pm = np.pad(mask, pad)
    if op == "opening":
        res = ndimage.binary_dilation(ndimage.binary_erosion(pm, footprint), footprint)
    else:
        res = ndimage.binary_erosion(ndimage.binary_dilation(pm, footprint), footprint)
    return res[tuple(slice(p[0], p[0] + n) for p, n in zip(pad, mask.shape))]


def smooth(
    labels: np.ndarray,
    spacing_zyx: Sequence[float],
    radius_mm: float,
    method: str = "median",
    *,
    label: Optional[int] = None,
    axis: Optional[int] = None,
    index: Optional[int] = None,
) -> np.ndarray:
    """Smooth the selected labels.

    Parameters
    ----------
    labels, spacing_zyx
        Integer label map (z, y, x) and voxel size in mm (z, y, x). Never modified.
    radius_mm : float
        Kernel radius in mm. An axis whose spacing exceeds the radius is not smoothed
        along (the kernel is one voxel thick there).
    method : {"median", "opening", "closing"}
        ``median`` removes small extrusions and fills small dents; ``opening``
        removes structures thinner than the kernel; ``closing`` fills gaps and
        dents narrower than the kernel.
    label : int, optional
        The label to smooth; every label when omitted (each on its own).
    axis, index : int, optional
        Smooth one slice only (2D kernel).

    Returns
    -------
    numpy.ndarray
        A new label map.
    """
    if method not in METHODS:
        raise InvalidInputError(f"smoothing method must be one of {METHODS}, got {method!r}")
    radius = check_size(radius_mm, "smoothing radius (mm)", allow_zero=False)
    out, view, sp, ids = prepare(labels, spacing_zyx, label, axis, index)
    footprint = ellipsoid(radius, sp)
    if footprint.sum() == 1:
        return out  # kernel smaller than a voxel on every axis: nothing to do
    half = [s // 2 for s in footprint.shape]
    original = view.copy()  # decisions use the input, so label order does not matter
    pad = [h + 1 for h in half]
    for lab_id, whole in label_bboxes(original, ids).items():
        for box in label_pieces(original, lab_id, whole, pad):
            src = original[box]
            mask = src == lab_id
            if method == "median":
                new = _majority(mask, footprint)
            else:
                new = _pad_op(mask, footprint, method)
            sub = view[box]
            sub[mask & ~new] = 0
            sub[new & ~mask & (src == 0) & (sub == 0)] = lab_id
    return out
