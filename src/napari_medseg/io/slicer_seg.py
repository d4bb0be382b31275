"""3D Slicer segmentation files (``.seg.nrrd``).

A Slicer segmentation is an NRRD label map whose header carries one block of keys per
segment (``Segment<N>_ID``, ``_Name``, ``_Color`` as "r g b" in 0..1,
``_LabelValue``, ``_Layer``, ``_Extent`` as "i0 i1 j0 j1 k0 k1", ``_Tags``) plus
``Segmentation_*`` keys. Slicer 4.11+ stores non-overlapping segments in one 3D
layer (``_Layer`` 0, distinct ``_LabelValue``); overlapping segments go to extra
layers, stored as a 4D NRRD (one volume per layer). This module reads the
single-layer form and refuses the multi-layer form with a message saying what to do,
and writes single-layer files that Slicer opens as named, coloured segments.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..errors import UnsupportedFormatError
from ._sitk import write_image
from .arrays import present_ids, to_label_array
from .atomic import atomic_write
from .label_table import LabelTable
from .volume import Volume


def _segment_indices(metadata: dict) -> list:
    indices = set()
    for key in metadata:
        if key.startswith("Segment") and "_" in key:
            head = key[len("Segment"):].split("_", 1)[0]
            if head.isdigit():
                indices.add(int(head))
    return sorted(indices)


def _parse_color(text: Optional[str]) -> Optional[tuple]:
    if not text:
        return None
    try:
        vals = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        return None
    if len(vals) != 3 or not all(0.0 <= v <= 1.0 for v in vals):
        return None
    return (*vals, 1.0)


def slicer_layers(metadata: dict) -> set:
    """The set of ``Segment<N>_Layer`` values in a Slicer header (``{0}`` when absent)."""
    layers = set()
    for i in _segment_indices(metadata):
        text = metadata.get(f"Segment{i}_Layer")
        if text is not None:
            try:
                layers.add(int(float(text)))
            except ValueError:
                pass
    return layers or {0}


def label_table_from_slicer_metadata(metadata: dict) -> Optional[LabelTable]:
    """Label table from the ``Segment<N>_*`` keys of a Slicer ``.seg.nrrd`` header.

    Segments without ``_LabelValue`` (files from Slicer < 4.11) get value ``N + 1``.
    Returns ``None`` when the header has no segments.
    """
    entries = {}
    for i in _segment_indices(metadata):
        name = metadata.get(f"Segment{i}_Name") or metadata.get(f"Segment{i}_ID") or f"segment {i}"
        value_text = metadata.get(f"Segment{i}_LabelValue")
        try:
            value = int(float(value_text)) if value_text is not None else i + 1
        except ValueError:
            value = i + 1
        if value <= 0:
            continue
        entries[value] = (str(name), _parse_color(metadata.get(f"Segment{i}_Color")))
    if not entries:
        return None
    return LabelTable(entries)


def check_single_layer(path: Union[str, Path], metadata: dict, n_components: int, dimension: int) -> None:
    """Refuse multi-layer (overlapping-segment) Slicer segmentations with a clear message."""
    layers = slicer_layers(metadata)
    if n_components > 1 or dimension > 3 or len(layers) > 1:
        n = max(n_components, len(layers))
        raise UnsupportedFormatError(
            f"{path} is a 3D Slicer segmentation with {n} layers (overlapping segments); "
            "napari-medseg reads single-layer segmentations only. In Slicer, make the "
            "segments non-overlapping (Segment Editor > Masking: 'Overwrite all') and save "
            "again, or export them as a label map (Segmentations module > Export to files)."
        )


def _layer_extent(labels: np.ndarray) -> str:
    """Extent "i0 i1 j0 j1 k0 k1" (x, y, z index, inclusive) of the whole label map.

    Slicer builds the shared labelmap of a layer from the ``_Extent`` of the *first*
    segment listed in that layer and reads every other segment of the layer from it, so
    all segments must carry the layer's extent, not their own bounding boxes (a segment
    outside the first one's box would be cropped away, and an empty first segment would
    empty the layer). The full image extent is always safe.
    """
    z, y, x = labels.shape
    return f"0 {x - 1} 0 {y - 1} 0 {z - 1}"


def slicer_metadata(labels: np.ndarray, table: LabelTable) -> dict:
    """The ``Segment<N>_*`` / ``Segmentation_*`` header keys for ``labels``.

    Every id listed in ``table`` and every id present in ``labels`` gets a segment
    (unlisted ids are named ``label <id>``), in increasing id order.
    """
    present = present_ids(labels)
    ids = sorted(set(present) | set(table.ids))
    meta = {
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_SourceRepresentation": "Binary labelmap",
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
    }
    extent = _layer_extent(labels)
    for n, label_id in enumerate(ids):
        name = table.name_of(label_id)
        r, g, b, _a = table.color_of(label_id)
        meta.update({
            f"Segment{n}_ID": f"Segment_{label_id}",
            f"Segment{n}_Name": name,
            f"Segment{n}_NameAutoGenerated": "0",
            f"Segment{n}_Color": f"{r:.6g} {g:.6g} {b:.6g}",
            f"Segment{n}_ColorAutoGenerated": "0",
            f"Segment{n}_LabelValue": str(label_id),
            f"Segment{n}_Layer": "0",
            f"Segment{n}_Extent": extent,
            f"Segment{n}_Tags": "Segmentation.Status:inprogress|",
        })
    return meta


def write_seg_nrrd(labels: Volume, path: Union[str, os.PathLike], table: Optional[LabelTable] = None) -> Path:
    """Write ``labels`` as a 3D Slicer segmentation (single layer, gzip-compressed NRRD).

    Parameters
    ----------
    labels : Volume
        Integer label map (0 = background) with its geometry.
    path : path-like
        Destination, normally ending in ``.seg.nrrd``.
    table : LabelTable, optional
        Names and colours; ids without an entry are named ``label <id>``.

    Returns
    -------
    pathlib.Path
        The written path (written atomically).
    """
    path = Path(path)
    if not path.name.lower().endswith((".nrrd", ".nhdr")):
        raise UnsupportedFormatError(f"a Slicer segmentation must end in .seg.nrrd, got {path}")
    array = to_label_array(labels.array, what=f"labels for {path}")
    table = table if table is not None else LabelTable()
    image = labels.to_sitk(array)
    for key, value in slicer_metadata(array, table).items():
        image.SetMetaData(key, value)
    with atomic_write(path) as tmp:
        write_image(image, path, tmp, compress=True)
    return path


__all__ = [
    "label_table_from_slicer_metadata",
    "slicer_metadata",
    "write_seg_nrrd",
    "check_single_layer",
]
