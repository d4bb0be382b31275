"""Connected components: remove small islands, keep the largest, split into labels.

Sizes are physical: a component's volume is its voxel count times the volume of one
voxel (from the full 3D spacing, also for single-slice edits) in millilitres.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .._ndimage import label_components, largest_component, min_voxels, small_components, structure
from ..errors import InvalidInputError
from ._common import (
    check_label_id,
    check_size,
    check_spacing,
    present_ids,
    prepare_boxes,
    result_dtype,
    voxel_volume_ml,
    work_region,
)


def remove_small_islands(
    labels: np.ndarray,
    spacing_zyx: Sequence[float],
    min_volume_ml: float,
    *,
    label: Optional[int] = None,
    connectivity: int = 1,
    axis: Optional[int] = None,
    index: Optional[int] = None,
) -> np.ndarray:
    """Remove connected components smaller than ``min_volume_ml``.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer label map (z, y, x). Never modified.
    spacing_zyx : sequence of float
        Voxel size in mm (z, y, x).
    min_volume_ml : float
        Components with a volume strictly below this (mL) become background.
    label : int, optional
        The label to clean; every label when omitted.
    connectivity : int
        1: voxels touching by faces are connected; 2: also edges; 3: also corners.
    axis, index : int, optional
        Work on one slice only (e.g. ``axis=0, index=k`` for axial slice ``k``).

    Returns
    -------
    numpy.ndarray
        A new label map.
    """
    min_ml = check_size(min_volume_ml, "minimum island volume (mL)")
    out, view, sp, boxes = prepare_boxes(labels, spacing_zyx, label, axis, index)
    vox_ml = voxel_volume_ml(check_spacing(spacing_zyx))
    structure(view.ndim, connectivity)  # a bad connectivity is refused even with no label
    n_min = min_voxels(min_ml, vox_ml)
    for lab_id, box in boxes.items():
        sub = view[box]
        small = small_components(sub == lab_id, n_min, connectivity)
        if small is not None:
            sub[small] = 0
    return out


def keep_largest_component(
    labels: np.ndarray,
    spacing_zyx: Sequence[float],
    *,
    label: Optional[int] = None,
    connectivity: int = 1,
    axis: Optional[int] = None,
    index: Optional[int] = None,
) -> np.ndarray:
    """Keep only the largest connected component of each selected label.

    Ties are broken by the component found first in array order. Parameters as in
    :func:`remove_small_islands`. Returns a new label map.
    """
    out, view, sp, boxes = prepare_boxes(labels, spacing_zyx, label, axis, index)
    structure(view.ndim, connectivity)  # a bad connectivity is refused even with no label
    for lab_id, box in boxes.items():
        sub = view[box]
        mask = sub == lab_id
        sub[mask & ~largest_component(mask, connectivity)] = 0
    return out


def split_components(
    labels: np.ndarray,
    spacing_zyx: Sequence[float],
    label: int,
    *,
    connectivity: int = 1,
    first_new_id: Optional[int] = None,
    axis: Optional[int] = None,
    index: Optional[int] = None,
) -> tuple:
    """Split one label into its connected components, each a label of its own.

    The largest component keeps ``label``; the others, largest first, get new ids
    starting at ``first_new_id`` (default: one above the largest id in the map),
    skipping ids already in use.

    Returns
    -------
    (numpy.ndarray, list of int)
        The new label map (its dtype widened if the new ids need it) and the new ids
        in order of decreasing component size (empty when the label is one piece).
    """
    check_label_id(label)
    out, view, sp, boxes = prepare_boxes(labels, spacing_zyx, label, axis, index)
    structure(view.ndim, connectivity)  # a bad connectivity is refused even with no label
    if label not in boxes:  # single-slice edit where the label is absent from that slice
        return out, []
    box = boxes[label]
    sub = view[box]
    mask = sub == label
    comp, n, sizes = label_components(mask, connectivity)
    if n <= 1:
        return out, []
    order = [int(c) for c in np.argsort(-sizes[1:], kind="stable") + 1]
    used = set(present_ids(np.asarray(labels)))  # one find_objects pass: no full sort
    nxt = int(first_new_id) if first_new_id is not None else int(max(used)) + 1
    if nxt <= 0:
        raise InvalidInputError(f"first_new_id must be a positive id, got {first_new_id}")
    new_ids = []
    for _ in order[1:]:
        while nxt in used:
            nxt += 1
        new_ids.append(nxt)
        used.add(nxt)
    dtype = result_dtype(out, max(new_ids))
    if dtype != out.dtype:
        # The new ids do not fit: widen the copy and re-take the views on it.
        out = out.astype(dtype)
        view, _ = work_region(out, check_spacing(spacing_zyx), axis, index)
        sub = view[box]
    lut = np.zeros(n + 1, dtype=out.dtype)
    lut[order[0]] = label
    for comp_id, new_id in zip(order[1:], new_ids):
        lut[comp_id] = new_id
    sub[mask] = lut[comp[mask]]
    return out, new_ids
