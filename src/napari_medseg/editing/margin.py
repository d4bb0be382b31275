"""Grow or shrink labels by a margin in millimetres (exact Euclidean distances).

Distances are exact Euclidean distances between voxel centres in millimetres (the
voxel spacing is used, so a margin of 5 mm is 5 mm along every axis of an anisotropic
scan), computed with Maurer's linear-time transform (SimpleITK), box by box around
the label (scattered islands each in their own small box). Growing adds every voxel
whose centre lies within the margin of a voxel of the label; shrinking removes every
voxel of the label whose centre lies within the margin of a voxel outside it (the
two are exact duals).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from ._common import check_size, distance_to, label_bboxes, label_pieces, mm_to_voxels, prepare


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
    tol = 1e-4 + 1e-5 * d  # float32 distances
    for lab_id, box in label_bboxes(original, ids).items():
        for box in label_pieces(original, lab_id, box, pad):
            _grow_box(view, original, lab_id, box, sp, d + tol, overwrite, growing, best)
    return out


def _grow_box(view, original, lab_id, box, sp, limit, overwrite, growing, best):
    src = original[box]
    mask = src == lab_id
    if not mask.any():
        return
    dist = distance_to(mask, sp)
    cand = (dist <= limit) & ~mask
    if overwrite:
        if growing is not None:
            cand &= ~growing[box]
    else:
        cand &= src == 0
    if best is not None:
        bsub = best[box]
        cand &= dist < bsub
        bsub[cand] = dist[cand]
    view[box][cand] = lab_id


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
    pad = [p + 1 for p in mm_to_voxels(d, sp)]
    tol = 1e-4 + 1e-5 * d
    for lab_id, box in label_bboxes(original, ids).items():
        for piece in label_pieces(original, lab_id, box, pad):
            mask = original[piece] == lab_id
            # distance of each label voxel to the nearest voxel outside the label
            dist = distance_to(~mask, sp)
            view[piece][mask & (dist <= d + tol)] = 0
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
