"""Grow or shrink labels by a margin in millimetres (exact Euclidean distances).

Distances are between voxel centres, computed with
:func:`scipy.ndimage.distance_transform_edt` and ``sampling`` = spacing, so a margin
of 5 mm is 5 mm along every axis of an anisotropic scan. Growing adds every voxel
whose centre lies within the margin of a voxel of the label; shrinking removes every
voxel of the label whose centre lies within the margin of a voxel outside it (the
two are exact duals).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from ._common import check_size, grow_box, label_bboxes, mm_to_voxels, prepare


def grow(
    labels: np.ndarray,
    spacing_zyx: Sequence[float],
    margin_mm: float,
    *,
    label: Optional[int] = None,
    overwrite: bool = False,
    axis: Optional[int] = None,
    index: Optional[int] = None,
) -> np.ndarray:
    """Grow the selected labels by ``margin_mm``.

    Parameters
    ----------
    labels, spacing_zyx
        Integer label map (z, y, x) and voxel size in mm (z, y, x). Never modified.
    margin_mm : float
        Margin (mm, >= 0).
    label : int, optional
        The label to grow; every label when omitted. When several labels compete
        for a background voxel it goes to the nearest one.
    overwrite : bool
        Also take voxels of other labels (never a label that is itself being grown).
        By default only background voxels are added.
    axis, index : int, optional
        Grow within one slice only (2D distances).

    Returns
    -------
    numpy.ndarray
        A new label map.
    """
    d = check_size(margin_mm, "margin (mm)")
    out, view, sp, ids = prepare(labels, spacing_zyx, label, axis, index)
    if d == 0 or not ids:
        return out
    original = view.copy()
    pad = [p + 1 for p in mm_to_voxels(d, sp)]
    growing = np.isin(original, ids) if len(ids) > 1 else None
    best = None
    if len(ids) > 1:
        best = np.full(view.shape, np.inf, dtype=np.float32)
    for lab_id, box in label_bboxes(original, ids).items():
        box = grow_box(box, pad, view.shape)
        src = original[box]
        mask = src == lab_id
        dist = ndimage.distance_transform_edt(~mask, sampling=sp).astype(np.float32)
        cand = (dist <= d + 1e-6) & ~mask
        if overwrite:
            cand &= ~growing[box] if growing is not None else True
        else:
            cand &= src == 0
        if best is not None:
            bsub = best[box]
            cand &= dist < bsub
            bsub[cand] = dist[cand]
        view[box][cand] = lab_id
    return out


def shrink(
    labels: np.ndarray,
    spacing_zyx: Sequence[float],
    margin_mm: float,
    *,
    label: Optional[int] = None,
    axis: Optional[int] = None,
    index: Optional[int] = None,
) -> np.ndarray:
    """Shrink the selected labels by ``margin_mm``; removed voxels become background.

    The label's surface is taken against everything that is not the label (background
    and other labels). A label touching the edge of the volume is not eroded from that
    edge (nothing is known beyond it). Parameters as in :func:`grow`.
    """
    d = check_size(margin_mm, "margin (mm)")
    out, view, sp, ids = prepare(labels, spacing_zyx, label, axis, index)
    if d == 0:
        return out
    original = view.copy()
    for lab_id, box in label_bboxes(original, ids).items():
        box = grow_box(box, [1] * view.ndim, view.shape)
        mask = original[box] == lab_id
        if mask.all():  # fills the whole volume: no surface to shrink from
            continue
        dist = ndimage.distance_transform_edt(mask, sampling=sp)
        view[box][mask & (dist <= d + 1e-6)] = 0
    return out


def margin(
    labels: np.ndarray,
    spacing_zyx: Sequence[float],
    margin_mm: float,
    **kwargs,
) -> np.ndarray:
    """Grow (``margin_mm`` > 0) or shrink (< 0) the selected labels; see :func:`grow`.

    ``overwrite`` only applies to growing.
    """
    try:
        value = float(margin_mm)
    except (TypeError, ValueError):
        value = margin_mm  # let check_size word the error
    if isinstance(value, float) and value < 0:
        kwargs.pop("overwrite", None)
        return shrink(labels, spacing_zyx, -value, **kwargs)
    return grow(labels, spacing_zyx, value, **kwargs)
