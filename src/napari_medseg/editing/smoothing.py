"""Smoothing with a kernel given in millimetres: median, opening, closing.

The structuring element is an ellipsoid in voxels, round in millimetres (see
:func:`~napari_medseg._ndimage.ellipsoid`), so anisotropic CTs are smoothed
as much along z as in-plane, physically. Each label is smoothed on its own bounding
box; voxels a label gains are taken from the background only (another label is never
overwritten), voxels it loses become background.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

# footprint_count stays importable from here (the smoothing's counting kernel)
from .._ndimage import closing, ellipsoid, footprint_count, majority, opening  # noqa: F401
from ..errors import InvalidInputError
from ._common import check_size, label_pieces, prepare_boxes

METHODS = ("median", "opening", "closing")


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
                new = majority(mask, footprint)
            elif method == "opening":
                new = opening(mask, footprint)
            else:
                new = closing(mask, footprint)
            sub = view[box]
            sub[mask & ~new] = 0
            sub[new & ~mask & (src == 0) & (sub == 0)] = lab_id
    return out
