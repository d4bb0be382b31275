"""napari layer data tuples for volumes and label maps (no napari import here).

Layers are placed in physical millimetres through :meth:`Volume.layer_kwargs`
(``scale`` = spacing, ``translate`` = origin, ``affine`` for flipped/oblique
scans), and carry the exact original geometry in ``metadata["medseg_geometry"]``
so that writers reproduce the file geometry exactly
(:func:`~napari_medseg.io.volume.volume_from_layer_data`).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from ..errors import GeometryMismatchError, InvalidInputError, MedsegError
from .arrays import present_ids
from .label_table import LabelTable
from .volume import Volume, volume_from_layer_data
from .windows import data_range, default_contrast_limits

# Volume.metadata keys copied into layer metadata (small, JSON-friendly).
_COPIED_METADATA = ("source_path", "format", "dicom", "channel_note", "single_slice", "label_names_source")


def _layer_metadata(volume: Volume) -> dict:
    meta = {k: volume.metadata[k] for k in _COPIED_METADATA if k in volume.metadata}
    meta["medseg_geometry"] = volume.geometry_dict()
    return meta


def image_layer_tuple(volume: Volume, name: Optional[str] = None) -> tuple:
    """``(data, kwargs, "image")`` for ``viewer.add_image(data, **kwargs)`` / readers.

    kwargs hold the physical placement, a grey colormap, contrast limits (soft-tissue
    window W400/L40 for CT or HU-like data, else the 0.5-99.5 percentile range), the
    full data range as ``contrast_limits_range`` and ``metadata`` with
    ``medseg_geometry`` (plus source path, format and DICOM UIDs when known).
    """
    kwargs: dict[str, Any] = dict(volume.layer_kwargs())
    kwargs["name"] = name or "image"
    kwargs["colormap"] = "gray"
    kwargs["blending"] = "translucent"
    limits = default_contrast_limits(volume.array, volume.modality)
    lo, hi = data_range(volume.array)
    kwargs["contrast_limits"] = [float(limits[0]), float(limits[1])]
    kwargs["metadata"] = _layer_metadata(volume)
    if volume.array.dtype.kind in "iuf":
        kwargs["metadata"]["medseg_data_range"] = [lo, hi]
    return volume.array, kwargs, "image"


def labels_layer_tuple(labels_array: np.ndarray, reference: Volume, table: Optional[LabelTable] = None,
                       name: Optional[str] = None) -> tuple:
    """``(data, kwargs, "labels")`` for ``viewer.add_labels(data, **kwargs)``.

    Parameters
    ----------
    labels_array : numpy.ndarray
        Integer label ids on ``reference``'s grid, ``[z, y, x]``.
    reference : Volume
        The image the labels belong to (gives the placement and geometry).
    table : LabelTable, optional
        Names/colours (default: ids present named ``label <id>``).
    name : str, optional
        Layer name (default ``"labels"``).

    Returns
    -------
    tuple
        kwargs: scale/translate/affine, ``colormap=table.color_dict()``,
        ``features=table.features()``, ``metadata`` with ``medseg_geometry`` and
        ``medseg_label_table`` (``table.to_dict()``).
    """
    arr = np.asarray(labels_array)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.dtype.kind not in "ui":
        raise InvalidInputError(f"labels must be an integer array, got dtype {arr.dtype}")
    if arr.shape != reference.shape:
        raise GeometryMismatchError(
            f"labels of shape {arr.shape} do not match the image grid {reference.shape} (z, y, x)")
    if table is None:
        table = LabelTable.from_ids(present_ids(arr))
    kwargs: dict[str, Any] = dict(reference.layer_kwargs())
    kwargs["name"] = name or "labels"
    kwargs["colormap"] = table.color_dict()
    kwargs["features"] = table.features()
    meta = _layer_metadata(reference)
    meta.pop("label_names_source", None)
    meta["medseg_label_table"] = table.to_dict()
    kwargs["metadata"] = meta
    return arr, kwargs, "labels"


def volume_from_layer(data: Any, meta: Optional[dict]) -> Volume:
    """Rebuild a Volume from layer data and a napari layer-state dict (writers' ``meta``).

    Uses ``metadata["medseg_geometry"]`` when present (exact), else ``scale``,
    ``translate`` and ``affine`` (the affine's rotation becomes the direction).
    """
    meta = dict(meta or {})
    metadata = dict(meta.get("metadata") or {})
    arr = np.asarray(data)
    if arr.ndim != 3:
        raise InvalidInputError(f"only 3D layers can be saved as volumes; this one has shape {arr.shape}")
    if "medseg_geometry" in metadata:
        geometry = metadata["medseg_geometry"]
        if tuple(geometry.get("shape_zyx", arr.shape)) != arr.shape:
            raise GeometryMismatchError(
                f"layer data of shape {arr.shape} no longer matches its recorded geometry "
                f"{tuple(geometry['shape_zyx'])}; it was resampled or cropped")
        return volume_from_layer_data(arr, metadata)
    scale = np.asarray(meta.get("scale", (1.0, 1.0, 1.0)), dtype=float)[-3:]
    translate = np.asarray(meta.get("translate", (0.0, 0.0, 0.0)), dtype=float)[-3:]
    affine = meta.get("affine")
    if affine is not None:
        affine = np.asarray(getattr(affine, "affine_matrix", affine), dtype=float)
        if affine.shape[0] > 4:
            affine = affine[-4:, -4:]
    if affine is None or np.allclose(affine, np.eye(4)):
        return volume_from_layer_data(arr, metadata, scale=scale, translate=translate)
    lin = affine[:3, :3]
    norms = np.linalg.norm(lin, axis=0)
    rot = lin / norms[None, :]
    spacing_zyx = scale * norms
    origin_zyx = lin @ translate + affine[:3, 3]
    direction_xyz = rot[::-1, ::-1]
    return Volume(array=arr, spacing=tuple(spacing_zyx[::-1]), origin=tuple(origin_zyx[::-1]),
                  direction=tuple(direction_xyz.ravel()), metadata=metadata)


def layer_label_table(state: Mapping, data: Any = None) -> Optional[LabelTable]:
    """The label table of a Labels layer, from its state: the one reader of a layer's names.

    Parameters
    ----------
    state : mapping
        The layer's ``metadata``, ``features`` and ``colormap`` (a napari layer-state dict,
        as writers get it as ``meta``; other keys are ignored).
    data : array-like, optional
        The layer's labels, to name the ids present when nothing else names them.

    Returns
    -------
    LabelTable or None
        The table recorded in ``metadata["medseg_label_table"]`` (names, colours,
        provenance, codes), with the names of napari's ``features`` table where they differ
        (a user may edit that table in napari) and ids only listed there added with their
        colormap colour. A recorded id keeps its recorded colour: a class hidden in the
        class list is transparent in the colormap only. Without a recorded table: the
        features' table; without either, ``label <id>`` for each id present in ``data``,
        or ``None`` when ``data`` is not given.
    """
    metadata = state.get("metadata") or {}
    stored = None
    if metadata.get("medseg_label_table"):
        try:
            stored = LabelTable.from_dict(metadata["medseg_label_table"])
        except MedsegError as exc:  # a damaged table must not block saving or editing
            import logging

            logging.getLogger(__name__).warning("ignoring a broken label table in a layer's metadata: %s", exc)
    listed = LabelTable.from_features(state.get("features"), state.get("colormap"))
    if stored is not None and listed is not None:
        edited = [i for i in listed.ids if i not in stored.ids or listed.name_of(i) != stored.name_of(i)]
        if not edited:
            return stored
        colors = {i: stored.color_of(i) if i in stored.ids else listed.color_of(i) for i in edited}
        return stored.merged(LabelTable.from_names({i: listed.name_of(i) for i in edited}, colors))
    if stored is not None or listed is not None:
        return stored if stored is not None else listed
    if data is None:
        return None
    return LabelTable.from_ids(present_ids(np.asarray(data)))
