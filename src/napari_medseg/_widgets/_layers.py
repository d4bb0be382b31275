"""Layer glue shared by the widgets: a layer as a core :class:`Volume`, and its identity."""

from __future__ import annotations

import numpy as np


def layer_volume(layer):
    """The layer's data as a :class:`~napari_medseg.io.volume.Volume` with exact geometry.

    Uses the geometry the reader stored in ``metadata["medseg_geometry"]`` when present,
    else the layer's scale, translate and affine (see
    :func:`napari_medseg.io.layer_data.volume_from_layer`).
    """
    from ..io.layer_data import volume_from_layer

    affine = getattr(layer, "affine", None)
    meta = {
        "metadata": dict(layer.metadata or {}),
        "scale": tuple(layer.scale),
        "translate": tuple(layer.translate),
        "affine": None if affine is None else np.asarray(affine.affine_matrix),
    }
    return volume_from_layer(np.asarray(layer.data), meta)


def layer_key(layer) -> str:
    """A key identifying ``layer`` for as long as it lives.

    Dock widgets get napari's ``PublicOnlyProxy`` viewer, whose every attribute access
    returns a new proxy object: ``id(layer)`` then differs from one call to the next
    and a weak reference to it dies at once. The layer's public ``unique_id`` is the
    same through every proxy.
    """
    return str(layer.unique_id)


def placement_of(layer) -> dict:
    """``scale``, ``translate``, ``affine`` and ``units`` of ``layer``, for a layer added on its grid.

    Every layer a widget adds beside an image (labels, prompt points, boxes, lesion axes)
    takes these, so all of them share the image's physical grid and units: napari then
    shows no "inconsistent units" warning and the dims slider steps by the image's slices.
    """
    affine = getattr(layer, "affine", None)
    # the image's own units (mm for every layer this plugin's reader makes), so a layer added
    # beside an image opened by another reader matches it too
    kwargs = {"scale": tuple(layer.scale), "translate": tuple(layer.translate),
              "units": tuple(str(u) for u in layer.units)}
    if affine is not None and not np.allclose(affine.affine_matrix, np.eye(affine.affine_matrix.shape[0])):
        kwargs["affine"] = np.asarray(affine.affine_matrix)
    return kwargs
