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

from ..errors import InvalidInputError
from ._common import check_size, ellipsoid, label_pieces, prepare_boxes

METHODS = ("median", "opening", "closing")


def footprint_count(mask: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """For every voxel, how many voxels of ``mask`` lie under the (centred) footprint.

    Exact, in O(voxels x footprint rows): every row of a convex footprint (an
    ellipsoid) along the last axis is a contiguous run, whose sum is a difference of
    two prefix sums along that axis. A 3 x 9 x 9 mm kernel costs ~20 array additions,
    instead of a multiply per footprint element (convolution) or an FFT of the box.
    Outside the array counts as empty.
    """
    half = [n // 2 for n in footprint.shape]
    padded = np.pad(mask, [(h, h) for h in half])
    # int16 when the footprint holds < 2**15 voxels (any kernel of a few mm): the
    # prefix sums may wrap around, but differences and sums are exact modulo 2**16
    # and every count fits, so the result is exact at half the memory traffic
    dtype = np.int16 if int(np.count_nonzero(footprint)) < 2**15 else np.int32
    # prefix sums along the last axis with a leading zero: run [a, b] = C[b + 1] - C[a]
    csum = np.zeros(padded.shape[:-1] + (padded.shape[-1] + 1,), dtype=dtype)
    np.cumsum(padded, axis=-1, dtype=dtype, out=csum[..., 1:])
    counts = np.zeros(mask.shape, dtype=dtype)
    n_last = mask.shape[-1]
    for lead in np.ndindex(*footprint.shape[:-1]):
        row = np.flatnonzero(footprint[lead])
        if row.size == 0:
            continue
        a, b = int(row[0]), int(row[-1])
        if row.size != b - a + 1:
            raise ValueError("footprint rows must be contiguous (convex footprint)")
        key = tuple(slice(o, o + n) for o, n in zip(lead, mask.shape[:-1]))
        counts += csum[key + (slice(b + 1, b + 1 + n_last),)]
        counts -= csum[key + (slice(a, a + n_last),)]
    return counts


def _majority(mask: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Binary median: a voxel is on when more than half of its footprint is.

    For a binary mask this is exactly what a median filter computes; counting with
    :func:`footprint_count` is far faster than sorting. The footprint is symmetric
    with an odd number of elements, so there are no ties.
    """
    n = int(footprint.sum())
    if n == 1:
        return mask.copy()
    return footprint_count(mask, footprint) > n // 2  # n is odd; no doubling (int16)


def _pad_op(mask: np.ndarray, footprint: np.ndarray, op: str) -> np.ndarray:
    """Opening/closing with the outside of the box treated as background."""
    pad = [(r // 2, r // 2) for r in footprint.shape]
    pm = np.pad(mask, pad)
    n = int(footprint.sum())

    def erode(m):
        return footprint_count(m, footprint) == n

    def dilate(m):  # the footprint is symmetric, so correlation == convolution
        return footprint_count(m, footprint) > 0

    res = dilate(erode(pm)) if op == "opening" else erode(dilate(pm))
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
    out, view, sp, boxes = prepare_boxes(labels, spacing_zyx, label, axis, index)
    footprint = ellipsoid(radius, sp)
    if footprint.sum() == 1:
        return out  # kernel smaller than a voxel on every axis: nothing to do
    half = [s // 2 for s in footprint.shape]
    original = view.copy()  # decisions use the input, so label order does not matter
    pad = [h + 1 for h in half]
    for lab_id, whole in boxes.items():
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
