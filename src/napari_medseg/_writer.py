"""npe2 writers: Labels and Image layers to NIfTI / NRRD / MetaImage with exact geometry.

Thin adapters over :mod:`napari_medseg.io.writers`. The geometry comes from the
layer's ``metadata["medseg_geometry"]`` (written by our reader / layer tuples), or
else from its scale, translate and affine. Writes are atomic; labels get a JSON
sidecar with names and colours.
"""

from __future__ import annotations

from typing import Any, List, Optional

from .io.label_table import LabelTable
from .io.layer_data import layer_label_table, volume_from_layer
from .io.writers import write_labels as _write_labels
from .io.writers import write_volume as _write_volume


def _table_from_meta(meta: dict) -> Optional[LabelTable]:
    """The layer's label table (:func:`napari_medseg.io.layer_data.layer_label_table`)."""
    return layer_label_table(meta)


def write_labels(path: str, data: Any, meta: dict) -> List[str]:
    """Write a Labels layer (npe2 single-layer writer). Returns ``[path]``."""
    volume = volume_from_layer(data, meta)
    _write_labels(volume, path, _table_from_meta(meta))
    return [path]


def write_image(path: str, data: Any, meta: dict) -> List[str]:
    """Write an Image layer (npe2 single-layer writer). Returns ``[path]``."""
    volume = volume_from_layer(data, meta)
    _write_volume(volume, path)
    return [path]
