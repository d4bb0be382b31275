"""One entry point for every editing operation, by name (for the widget and scripts).

:func:`apply_edit` maps an operation name and an :class:`EditRequest` to the pure
function that does it, and optionally restricts the result to an intensity range
(threshold painting for any operation). Keeping the dispatch here keeps the Label
tools widget free of editing logic and lets it be tested without Qt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import InvalidInputError
from . import classes, components, holes, interpolation, logical, smoothing, threshold
from .margin import grow as _grow
from .margin import shrink as _shrink


@dataclass
class EditRequest:
    """Parameters of one edit (unused ones are ignored by the operation).

    Attributes
    ----------
    label : int or None
        Label to edit; ``None`` for every label (operations that allow it).
    size : float
        Size for the operation, in the unit :data:`OPERATIONS` gives (mm or mL).
    axis, index : int or None
        Restrict to one slice (both given) or work in 3D (both ``None``).
    slice_axis : int
        Axis the user draws slices along (fill between slices, 2D hole filling).
    overwrite : bool
        Allow overwriting other labels (grow, threshold fill, add, fill holes).
    target : int or None
        Second label id (merge into, relabel to, threshold fill with).
    low, high : float or None
        Intensity range (threshold fill; restriction of any edit when ``restrict``).
    restrict : bool
        Keep only changes where ``low <= image <= high``.
    other_label : int or None
        Label of the operand layer (subtract/intersect/add/copy).
    """

    label: Optional[int] = None
    size: float = 0.0
    axis: Optional[int] = None
    index: Optional[int] = None
    slice_axis: int = 0
    overwrite: bool = False
    target: Optional[int] = None
    low: Optional[float] = None
    high: Optional[float] = None
    restrict: bool = False
    other_label: Optional[int] = None


def _need(value, what):
    if value is None:
        raise InvalidInputError(f"this operation needs {what}")
    return value


def _slice(r):
    return {"axis": r.axis, "index": r.index}


def _operand(other, r):
    if other is None:
        raise InvalidInputError("this operation needs a second Labels layer as operand")
    return logical.mask_of(other, _need(r.other_label, "the operand layer's label"))


#: name -> (size unit or None, needs an image, needs an operand layer, function)
OPERATIONS = {
    "Remove small islands": ("mL", False, False, lambda a, sp, r, img, o: components.remove_small_islands(
        a, sp, r.size, label=r.label, **_slice(r))),
    "Keep largest component": (None, False, False, lambda a, sp, r, img, o: components.keep_largest_component(
        a, sp, label=r.label, **_slice(r))),
    "Split into components": (None, False, False, lambda a, sp, r, img, o: components.split_components(
        a, sp, _need(r.label, "one label (not all)"), **_slice(r))[0]),
    "Fill holes (3D)": (None, False, False, lambda a, sp, r, img, o: holes.fill_holes(
        a, sp, label=r.label, overwrite=r.overwrite, **_slice(r))),
    "Fill holes (slice by slice)": (None, False, False, lambda a, sp, r, img, o: holes.fill_holes(
        a, sp, label=r.label, slice_by_slice=True, slice_axis=r.slice_axis, overwrite=r.overwrite, **_slice(r))),
    "Smooth (median)": ("mm", False, False, lambda a, sp, r, img, o: smoothing.smooth(
        a, sp, r.size, "median", label=r.label, **_slice(r))),
    "Smooth (opening)": ("mm", False, False, lambda a, sp, r, img, o: smoothing.smooth(
        a, sp, r.size, "opening", label=r.label, **_slice(r))),
    "Smooth (closing)": ("mm", False, False, lambda a, sp, r, img, o: smoothing.smooth(
        a, sp, r.size, "closing", label=r.label, **_slice(r))),
    "Grow margin": ("mm", False, False, lambda a, sp, r, img, o: _grow(
        a, sp, r.size, label=r.label, overwrite=r.overwrite, **_slice(r))),
    "Shrink margin": ("mm", False, False, lambda a, sp, r, img, o: _shrink(
        a, sp, r.size, label=r.label, **_slice(r))),
    "Fill between slices": (None, False, False, lambda a, sp, r, img, o: interpolation.fill_between_slices(
        a, sp, label=r.label, axis=r.slice_axis, overwrite=r.overwrite)),
    "Threshold fill (intensity range)": (None, True, False, lambda a, sp, r, img, o: threshold.threshold_fill(
        a, _need(img, "an image layer"), _need(r.low, "a low value"), _need(r.high, "a high value"),
        _need(r.target, "a label to paint"), overwrite=r.overwrite, **_slice(r))),
    "Merge into target label": (None, False, False, lambda a, sp, r, img, o: logical.merge_labels(
        a, _need(r.label, "one label (not all)"), _need(r.target, "a target label"), **_slice(r))),
    "Subtract operand layer": (None, False, True, lambda a, sp, r, img, o: logical.subtract_mask(
        a, _need(r.label, "one label (not all)"), _operand(o, r), **_slice(r))),
    "Intersect with operand layer": (None, False, True, lambda a, sp, r, img, o: logical.intersect_mask(
        a, _need(r.label, "one label (not all)"), _operand(o, r), **_slice(r))),
    "Add operand layer": (None, False, True, lambda a, sp, r, img, o: logical.add_mask(
        a, _need(r.label, "one label (not all)"), _operand(o, r), overwrite=r.overwrite, **_slice(r))),
    "Erase label": (None, False, False, lambda a, sp, r, img, o: classes.delete_class(
        a, _need(r.label, "one label (not all)"))[0]),
}


def apply_edit(name: str, labels: np.ndarray, spacing_zyx, request: EditRequest,
               image: Optional[np.ndarray] = None, other: Optional[np.ndarray] = None) -> np.ndarray:
    """Run operation ``name`` and return the new label map (the input is not modified).

    Parameters
    ----------
    name : str
        A key of :data:`OPERATIONS`.
    labels : numpy.ndarray
        The label map (z, y, x).
    spacing_zyx : sequence of float
        Voxel size in mm.
    request : EditRequest
        The operation's parameters.
    image : numpy.ndarray, optional
        Intensities on the same grid (threshold fill, ``request.restrict``).
    other : numpy.ndarray, optional
        Operand label map (subtract / intersect / add).
    """
    if name not in OPERATIONS:
        raise InvalidInputError(f"unknown editing operation {name!r}; choose one of {list(OPERATIONS)}")
    func = OPERATIONS[name][3]
    result = func(labels, spacing_zyx, request, image, other)
    if request.restrict:
        result = threshold.restrict_edit(labels, result, _need(image, "an image layer for the intensity range"),
                                         _need(request.low, "a low value"), _need(request.high, "a high value"))
    return result
