"""Label clean-up operations: pure functions ``op(labels, spacing_zyx, ...) -> new array``.

Every operation validates its input, never modifies it, works on the bounding box of
the labels concerned and takes sizes in millimetres or millilitres. Import from here:

>>> from napari_medseg.editing import remove_small_islands, grow, fill_between_slices
"""

from .classes import delete_class, next_free_id, recolor_class, relabel, rename_class
from .components import keep_largest_component, remove_small_islands, split_components
from .holes import fill_holes
from .interpolation import fill_between_slices
from .logical import add_mask, copy_label, intersect_mask, mask_of, merge_labels, subtract_mask
from .margin import grow, margin, shrink
from .smoothing import smooth
from .threshold import intensity_mask, paint_mask, restrict_edit, threshold_fill

__all__ = [
    "add_mask", "copy_label", "delete_class", "fill_between_slices", "fill_holes", "grow",
    "intensity_mask", "intersect_mask", "keep_largest_component", "margin", "mask_of",
    "merge_labels", "next_free_id", "paint_mask", "recolor_class", "relabel",
    "remove_small_islands", "rename_class", "restrict_edit", "shrink", "smooth",
    "split_components", "subtract_mask", "threshold_fill",
]
