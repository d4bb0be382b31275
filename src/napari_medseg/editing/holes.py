"""Fill holes: background enclosed by a label becomes that label (3D or slice by slice)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from ..errors import InvalidInputError
from .._ndimage import fill_holes as fill_mask_holes
from ._common import check_size, check_spacing, prepare_boxes, voxel_volume_ml


def fill_holes(
    labels: np.ndarray,
    spacing_zyx: Sequence[float],
    *,
    label: Optional[int] = None,
    slice_by_slice: bool = False,
    slice_axis: int = 0,
    max_hole_ml: Optional[float] = None,
    overwrite: bool = False,
    axis: Optional[int] = None,
    index: Optional[int] = None,
) -> np.ndarray:
    """Fill the holes of each selected label.

    A hole is a region not in the label that is completely enclosed by it (not
    connected, through faces, to the outside of the label's bounding box).

    Parameters
    ----------
    labels, spacing_zyx
        Integer label map (z, y, x) and voxel size (mm, z, y, x). Never modified.
    label : int, optional
        The label to fill; every label when omitted.
    slice_by_slice : bool
        Fill 2D holes in every slice along ``slice_axis`` (e.g. a vessel running
        through an organ is a hole on axial slices but not in 3D).
    slice_axis : int
        0 (axial), 1 (coronal) or 2 (sagittal) for ``slice_by_slice``.
    max_hole_ml : float, optional
        Only fill holes up to this volume (mL); all holes when omitted.
    overwrite : bool
        Also overwrite other labels enclosed by this one. By default only
        background voxels are filled, so a lesion inside the liver stays a lesion.
    axis, index : int, optional
        Work on one slice only (2D holes of that slice).

    Returns
    -------
    numpy.ndarray
        A new label map.
    """
    if slice_axis not in (0, 1, 2):
        raise InvalidInputError(f"slice_axis must be 0, 1 or 2 (z, y, x), got {slice_axis!r}")
    max_ml = None if max_hole_ml is None else check_size(max_hole_ml, "maximum hole volume (mL)")
    out, view, sp, boxes = prepare_boxes(labels, spacing_zyx, label, axis, index)
    vox_ml = voxel_volume_ml(check_spacing(spacing_zyx))
    if view.ndim == 2:
        slice_by_slice = False  # already one slice
    for lab_id, box in boxes.items():
        sub = view[box]
        mask = sub == lab_id
        if slice_by_slice:
            filled = np.empty_like(mask)
            for k in range(mask.shape[slice_axis]):
                key = [slice(None)] * 3
                key[slice_axis] = k
                filled[tuple(key)] = fill_mask_holes(mask[tuple(key)])
        else:
            filled = fill_mask_holes(mask)
        holes = filled & ~mask
        if max_ml is not None and holes.any():
            comp, n = ndimage.label(holes)
            sizes = np.bincount(comp.ravel())
            too_big = sizes * vox_ml > max_ml
            too_big[0] = False
            holes &= ~too_big[comp]
        if not overwrite:
            holes &= sub == 0
        sub[holes] = lab_id
    return out
