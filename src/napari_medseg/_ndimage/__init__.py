"""Array and geometry primitives: the one home of each (NumPy, SciPy, SimpleITK; torch
imported inside the resampling functions).

The lowest layer of the package beside :mod:`napari_medseg.progress`: it imports nothing
of the project but :mod:`napari_medseg.errors`. One algorithm per private module; the
public API is this list.

Bounding boxes (``_bbox``)
    :func:`bbox`, :func:`bbox_mm`, :func:`union_box`, :func:`grow_box`, :func:`label_boxes`
Footprints in millimetres (``_footprints``)
    :func:`ellipsoid`, :func:`ball_offsets`, :func:`values_at`, :func:`mm_to_voxels`, :func:`stepped_ball`,
    :func:`octagon_disk`, :data:`PLANE4`, :data:`PLANE8`
Morphology (``_morphology``)
    :func:`dilate`, :func:`erode`, :func:`opening`, :func:`closing`, :func:`majority`,
    :func:`footprint_count`, :func:`fill_holes`
Connected components (``_components``)
    :func:`label_components`, :func:`largest_component`, :func:`small_components`,
    :func:`components_at`, :func:`min_voxels`, :func:`structure`
Resampling (``_resample``)
    :func:`target_shape`, :func:`to_resampled`, :func:`nearest_index`,
    :func:`resample_linear`, :func:`resample_nearest`, :func:`linear_upsample_matrix`
"""

from ._bbox import bbox, bbox_mm, grow_box, label_boxes, union_box
from ._components import components_at, label_components, largest_component, min_voxels, small_components, structure
from ._footprints import (PLANE4, PLANE8, ball_offsets, ellipsoid, mm_to_voxels, octagon_disk, stepped_ball,
                          values_at)
from ._morphology import closing, dilate, erode, face_dilate, fill_holes, footprint_count, majority, opening
from ._resample import (
    linear_upsample_matrix,
    nearest_index,
    resample_linear,
    resample_nearest,
    target_shape,
    to_resampled,
)

__all__ = [
    "PLANE4", "PLANE8", "ball_offsets", "values_at", "bbox", "bbox_mm", "closing", "components_at", "dilate",
    "ellipsoid", "erode", "face_dilate", "fill_holes", "footprint_count", "grow_box", "label_boxes", "label_components",
    "largest_component", "linear_upsample_matrix", "majority", "min_voxels", "mm_to_voxels",
    "nearest_index", "octagon_disk", "opening", "resample_linear", "resample_nearest",
    "small_components", "stepped_ball", "structure", "target_shape", "to_resampled",
    "union_box",
]
