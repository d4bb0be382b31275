"""Fill between slices: interpolate a label drawn on a few slices to the slices between.

Shape-based interpolation (Raya & Udupa 1990; the idea behind 3D Slicer's "Fill
between slices"): each annotated slice becomes a signed distance map (negative
inside, in mm with the in-plane spacing), the maps of two neighbouring annotated
slices are blended linearly along the slice axis, and the zero level set is the
interpolated outline. Shapes morph smoothly (a small circle grows into a big one),
identical outlines are copied unchanged. Annotated slices are never modified.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .._ndimage import bbox, label_boxes
from ..errors import InvalidInputError
from ._common import check_labels, check_spacing, distance_to, select_ids


def _signed_distance(mask: np.ndarray, sampling: Sequence[float]) -> np.ndarray:
    """Signed distance (mm) to the outline: negative inside, positive outside."""
    if not mask.any():
        return np.full(mask.shape, np.inf, dtype=np.float32)
    outside = distance_to(mask, sampling)
    inside = distance_to(~mask, sampling)
    return outside - inside


def fill_between_slices(
    labels: np.ndarray,
    spacing_zyx: Sequence[float],
    *,
    label: Optional[int] = None,
    axis: int = 0,
    overwrite: bool = False,
) -> np.ndarray:
    """Interpolate the selected labels across the empty slices between annotated ones.

    Parameters
    ----------
    labels, spacing_zyx
        Integer label map (z, y, x) and voxel size in mm (z, y, x). Never modified.
    label : int, optional
        The label to interpolate; every label when omitted (each on its own).
    axis : int
        The axis the slices were drawn along: 0 axial, 1 coronal, 2 sagittal.
    overwrite : bool
        Also overwrite other labels on the filled slices (default: fill background only).

    Returns
    -------
    numpy.ndarray
        A new label map. Slices outside the first and last annotated slice of a label
        are left alone (no extrapolation).
    """
    if isinstance(axis, bool) or axis not in (0, 1, 2):
        raise InvalidInputError(f"axis must be 0, 1 or 2 (z, y, x), got {axis!r}")
    arr = check_labels(labels)
    sp = check_spacing(spacing_zyx)
    ids = select_ids(arr, label)
    out = arr.copy()
    in_plane = tuple(s for a, s in enumerate(sp) if a != axis)
    # Move the slice axis first (views, no copies) so the loop reads simply.
    src = np.moveaxis(arr, axis, 0)
    dst = np.moveaxis(out, axis, 0)
    for lab_id, box in label_boxes(src, ids).items():
        block = src[box] == lab_id
        present = np.flatnonzero(block.any(axis=(1, 2))) + box[0].start
        for k0, k1 in zip(present[:-1], present[1:]):
            if k1 - k0 < 2:
                continue
            m0 = src[k0] == lab_id
            m1 = src[k1] == lab_id
            # Work on the union of both outlines' in-plane boxes, padded so that the
            # distance maps see background around the shapes.
            both = bbox(m0 | m1, pad=3)
            if both is None:
                continue
            m0c, m1c = m0[both], m1[both]
            d0 = _signed_distance(m0c, in_plane)
            d1 = _signed_distance(m1c, in_plane)
            for k in range(k0 + 1, k1):
                t = (k - k0) / (k1 - k0)
                fill = ((1.0 - t) * d0 + t * d1) < 0
                target = dst[k][both]
                if not overwrite:
                    fill &= src[k][both] == 0
                target[fill] = lab_id
    return out
