"""Confidence layers: add one beside a segmentation, find it again, show a flagged structure.

Wiring only (the numbers come from :mod:`napari_medseg.analysis.confidence`). A confidence
layer is an Image layer of the probability of each voxel's class (``ConfidenceMaps.max_prob``,
0..1, colormap ``magma``: dark = unsure, bright = sure), on the image's grid, hidden by
default. It names the Labels layer it belongs to in its metadata (``layer_key`` of the
labels, stable through napari's proxies and renames), so that the Statistics dock can
find it for the labels it measures.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ._layers import layer_key, placement_of, unique_name

#: metadata key of a confidence layer: the ``layer_key`` of its Labels layer
CONFIDENCE_OF = "medseg_confidence_of"
#: colormap of confidence layers (perceptually uniform; dark = unsure)
COLORMAP = "magma"


def add_confidence_layer(viewer, image_layer, labels_layer, maps):
    """Add ``maps.max_prob`` as a hidden Image layer named after ``labels_layer``; returns it."""
    name = unique_name(viewer, f"{labels_layer.name} confidence")
    meta = {CONFIDENCE_OF: layer_key(labels_layer), "medseg_temperature": float(maps.temperature)}
    return viewer.add_image(np.asarray(maps.max_prob, dtype=np.float32), name=name,
                            colormap=COLORMAP, contrast_limits=(0.0, 1.0), visible=False,
                            opacity=0.7, metadata=meta, **placement_of(image_layer))


def confidence_layer_of(viewer, labels_layer) -> Optional[object]:
    """The confidence Image layer of ``labels_layer`` (the last one added), or None."""
    if labels_layer is None:
        return None
    key = layer_key(labels_layer)
    found = None
    for layer in viewer.layers:
        if (layer.metadata or {}).get(CONFIDENCE_OF) == key \
                and np.shape(layer.data) == np.shape(labels_layer.data):
            found = layer
    return found


def show_structure(viewer, image_layer, labels_layer, structure) -> None:
    """Centre the view on ``structure.view_point_vox`` (its least sure axial slice) and
    select its label in ``labels_layer`` (as the Liver & lesions dock's ``select_lesion``)."""
    point = np.asarray(structure.view_point_vox, dtype=float)
    world = np.asarray(image_layer.data_to_world(point), dtype=float)[-3:]
    ndim = viewer.dims.ndim
    if ndim >= 3:
        viewer.dims.set_point(ndim - 3, float(world[0]))
    # napari >= 0.9 moved the camera to viewer.scene
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.center = tuple(float(v) for v in world)
    if labels_layer is not None:
        labels_layer.selected_label = int(structure.id)
