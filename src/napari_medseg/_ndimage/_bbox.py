"""Bounding boxes of masks and label maps, as tuples of slices.

A box is a tuple of one ``slice(start, stop)`` per axis (what indexing takes); ``None``
stands for the box of nothing (an empty mask).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np


def bbox(mask: np.ndarray, pad: Union[Sequence[int], int] = 0) -> Optional[tuple]:
    """Bounding box of the true voxels of ``mask``, grown by ``pad`` voxels and clipped.

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean (or 0/1) array of any dimension.
    pad : int or sequence of int
        Voxels added on both sides, per axis or for all axes.

    Returns
    -------
    tuple of slice or None
        One slice per axis; ``None`` for an empty mask.

    Notes
    -----
    Uses one ``any`` projection per axis rather than ``argwhere``, which would allocate
    the coordinates of every voxel.
    """
    if np.isscalar(pad):
        pad = [int(pad)] * mask.ndim
    out = []
    if mask.ndim > 1:
        # first axis: one pass over the rows (stops at each row's first true voxel); the
        # others from one OR of the rows between its ends, instead of one reduction over
        # the whole array per axis
        first = np.flatnonzero(mask.any(axis=tuple(range(1, mask.ndim))))
        if first.size == 0:
            return None
        rest = mask[first[0] : first[-1] + 1].any(axis=0)
        projections = [first] + [np.flatnonzero(rest.any(axis=tuple(a for a in range(rest.ndim) if a != ax)))
                                 for ax in range(rest.ndim)]
    else:
        projections = [np.flatnonzero(mask)]
    for ax in range(mask.ndim):
        idx = projections[ax]
        if idx.size == 0:
            return None
        lo = max(0, int(idx[0]) - int(pad[ax]))
        hi = min(mask.shape[ax], int(idx[-1]) + 1 + int(pad[ax]))
        out.append(slice(lo, hi))
    return tuple(out)


def bbox_mm(mask: np.ndarray, spacing: Sequence[float], margin_mm: float) -> Optional[tuple]:
    """:func:`bbox` grown by ``margin_mm`` millimetres (``ceil(margin / spacing)`` voxels per axis)."""
    pad = [int(np.ceil(margin_mm / float(s))) for s in spacing]
    return bbox(mask, pad)


def union_box(a: Optional[tuple], b: Optional[tuple]) -> Optional[tuple]:
    """The smallest box holding boxes ``a`` and ``b`` (either may be ``None``)."""
    if a is None:
        return b
    if b is None:
        return a
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def grow_box(box: tuple, pad: Sequence[int], shape: Sequence[int]) -> tuple:
    """Grow a box by ``pad`` voxels per axis, clipped to ``shape``."""
    return tuple(
        slice(max(0, s.start - int(p)), min(n, s.stop + int(p)))
        for s, p, n in zip(box, pad, shape)
    )


def label_boxes(labels: np.ndarray, ids: Optional[Sequence[int]] = None) -> Optional[dict]:
    """``{id: box}`` of label ids of an integer map, from one ``find_objects`` pass.

    Parameters
    ----------
    labels : numpy.ndarray
        Non-negative integer label map.
    ids : sequence of int, optional
        The ids wanted (absent ones are left out). ``None``: every non-zero id present,
        or ``None`` instead of a dict when the map holds negative ids or ids above
        2**20 (``find_objects`` lists one entry per id up to the largest).
    """
    from scipy import ndimage

    if ids is not None:
        if not len(ids):
            return {}
        objs = ndimage.find_objects(labels, max_label=max(ids))
        return {i: objs[i - 1] for i in ids if objs[i - 1] is not None}
    if labels.size == 0:
        return {}
    top = int(labels.max())
    if top <= 0:
        return {}
    if top > 1 << 20 or int(labels.min()) < 0:
        return None
    return {i + 1: o for i, o in enumerate(ndimage.find_objects(labels)) if o is not None}
