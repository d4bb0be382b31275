"""Logical operations between labels: merge, subtract, intersect, add, copy.

A label map holds one label per voxel, so two labels of the same map never overlap:
"subtract B from A" or "intersect A with B" only make sense with an operand that may
overlap A, i.e. a mask from another layer (another label map, a threshold, a
grown copy of B...). Operands are therefore boolean masks on the same grid; use
:func:`mask_of` to make one from a label map.
"""

from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

from ..errors import GeometryMismatchError, InvalidInputError
from ._common import check_label_id, check_labels, plane, result_dtype, select_ids


def _check_mask(mask, shape, what="operand mask") -> np.ndarray:
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise GeometryMismatchError(
            f"the {what} has shape {m.shape} but the label map has {tuple(shape)} (z, y, x); "
            "both must be on the same voxel grid"
        )
    if m.dtype != np.bool_:
        raise InvalidInputError(f"the {what} must be boolean, got dtype {m.dtype}; use mask_of()")
    return m


def _restrict(mask: np.ndarray, axis, index) -> np.ndarray:
    key = plane(axis, index, mask.shape)
    if key is None:
        return mask
    limited = np.zeros_like(mask)
    limited[key] = mask[key]
    return limited


def mask_of(labels: np.ndarray, ids: int | Iterable[int]) -> np.ndarray:
    """Boolean mask of one label id or several (which must be present)."""
    arr = check_labels(labels)
    sel = select_ids(arr, ids)
    return arr == sel[0] if len(sel) == 1 else np.isin(arr, sel)


def merge_labels(labels: np.ndarray, sources: int | Iterable[int], target: int, *,
                 axis: Optional[int] = None, index: Optional[int] = None) -> np.ndarray:
    """Merge ``sources`` into ``target``: their voxels get the id ``target``.

    ``target`` may be a new id (a merged class) or one of the sources. Returns a new map.
    """
    arr = check_labels(labels)
    target = check_label_id(target, "target label")
    src = select_ids(arr, sources)
    out = arr.astype(result_dtype(arr, target), copy=True)
    out[_restrict(np.isin(arr, src), axis, index)] = target
    return out


def add_mask(labels: np.ndarray, target: int, mask: np.ndarray, *, overwrite: bool = False,
             axis: Optional[int] = None, index: Optional[int] = None) -> np.ndarray:
    """Union: the voxels of ``mask`` become ``target`` (background only unless ``overwrite``)."""
    arr = check_labels(labels)
    target = check_label_id(target, "target label")
    m = _restrict(_check_mask(mask, arr.shape), axis, index)
    out = arr.astype(result_dtype(arr, target), copy=True)
    if not overwrite:
        m = m & (arr == 0)
    out[m] = target
    return out


def subtract_mask(labels: np.ndarray, target: int, mask: np.ndarray, *,
                  axis: Optional[int] = None, index: Optional[int] = None) -> np.ndarray:
    """Subtract: voxels of ``target`` inside ``mask`` become background."""
    arr = check_labels(labels)
    (target,) = select_ids(arr, target)
    m = _restrict(_check_mask(mask, arr.shape), axis, index)
    out = arr.copy()
    out[m & (arr == target)] = 0
    return out


def intersect_mask(labels: np.ndarray, target: int, mask: np.ndarray, *,
                   axis: Optional[int] = None, index: Optional[int] = None) -> np.ndarray:
    """Intersect: voxels of ``target`` outside ``mask`` become background."""
    arr = check_labels(labels)
    (target,) = select_ids(arr, target)
    m = _check_mask(mask, arr.shape)
    drop = (arr == target) & ~m
    out = arr.copy()
    out[_restrict(drop, axis, index)] = 0
    return out


def copy_label(source: np.ndarray, label: int, destination: Optional[np.ndarray] = None,
               new_id: Optional[int] = None, *, overwrite: bool = False) -> tuple:
    """Copy one label of ``source`` into ``destination`` as ``new_id``.

    Parameters
    ----------
    source : numpy.ndarray
        Label map holding ``label``. Never modified.
    label : int
        The label to copy.
    destination : numpy.ndarray, optional
        Label map to copy into (same grid), e.g. another layer. Defaults to
        ``source`` itself; since a voxel holds one label, copying within one map
        moves the voxels to ``new_id`` only where ``overwrite`` is set, so copy into
        another map to keep both.
    new_id : int, optional
        Id of the copy (default: one above the largest id of ``destination``).
    overwrite : bool
        Overwrite other labels of ``destination`` (default: background only).

    Returns
    -------
    (numpy.ndarray, int)
        The new destination map and the id of the copy.
    """
    src = check_labels(source, "source label map")
    (label,) = select_ids(src, label)
    dst = src if destination is None else check_labels(destination, "destination label map")
    if dst.shape != src.shape:
        raise GeometryMismatchError(
            f"the destination has shape {dst.shape} but the source has {src.shape} (z, y, x)"
        )
    if new_id is None:
        new_id = int(dst.max(initial=0)) + 1
    new_id = check_label_id(new_id, "new label id")
    out = dst.astype(result_dtype(dst, new_id), copy=True)
    m = src == label
    if not overwrite:
        m &= dst == 0
    out[m] = new_id
    return out, new_id
