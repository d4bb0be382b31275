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
