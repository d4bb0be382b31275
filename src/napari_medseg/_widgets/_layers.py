"""Layer glue shared by the widgets: the one place where a napari layer meets the core.

* a layer as a core :class:`~napari_medseg.io.volume.Volume` (:func:`layer_volume`), its
  identity through napari's proxy (:func:`layer_key`) and the placement of layers added
  beside an image (:func:`placement_of`);
* a Labels layer's class table: :func:`layer_table` (read through the core's one reader,
  :func:`napari_medseg.io.layer_data.layer_label_table`), :func:`set_layer_table`,
  :func:`hidden_labels`, :func:`mark_edited`;
* writing voxels as napari undo steps: :func:`apply_to_layer`, :func:`write_voxels`,
  :func:`widen_for`;
* :class:`LayerPicker`, the layer combo box of every widget, and small helpers
  (:func:`current_slice`, :func:`layer_sources`, :func:`unique_name`).
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Optional

import numpy as np
from qtpy.QtWidgets import QComboBox

from ..errors import InvalidInputError
from ..io.label_table import LabelTable

log = logging.getLogger(__name__)


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
    returns a new proxy object: the Python identity of a layer then differs from one call to the next
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


# ------------------------------------------------------------------ class table
def layer_table(layer) -> LabelTable:
    """Names, colours and provenance of a Labels layer (recorded table, napari features, ids)."""
    from ..io.layer_data import layer_label_table

    state = {"metadata": layer.metadata, "features": layer.features, "colormap": layer.colormap}
    return layer_label_table(state, layer.data)


def hidden_labels(layer) -> set:
    """Ids hidden with the class list's visibility boxes."""
    return {int(i) for i in (layer.metadata or {}).get("medseg_hidden_labels", [])}


def set_layer_table(layer, table: LabelTable, hidden: Optional[set] = None) -> None:
    """Store ``table`` on the layer: metadata, ``features`` and colormap (hidden ids transparent)."""
    from napari.utils.colormaps import DirectLabelColormap

    hidden = hidden_labels(layer) if hidden is None else {int(i) for i in hidden}
    hidden &= set(table.ids)
    meta = dict(layer.metadata or {})
    meta["medseg_label_table"] = table.to_dict()
    meta["medseg_hidden_labels"] = sorted(hidden)
    layer.metadata = meta
    colors = table.color_dict()
    for i in hidden:
        r, g, b, _ = colors[i]
        colors[i] = (r, g, b, 0.0)
    layer.colormap = DirectLabelColormap(color_dict=colors)
    layer.features = table.features()


def mark_edited(layer, ids: Iterable[int]) -> None:
    """Record that a person edited ``ids`` (model output -> SEMIAUTOMATIC, else MANUAL).

    What DICOM-SEG writes as each segment's algorithm type; ids not in the table are
    ignored.
    """
    table = layer_table(layer)
    new = table.marked_edited([int(i) for i in ids])
    if new.to_dict() != table.to_dict():
        set_layer_table(layer, new)


# ------------------------------------------------------------------ voxels
def widen_for(layer, max_id: int) -> Optional[str]:
    """Give a Labels layer a dtype that holds ``max_id``; returns a note when it had to widen.

    The array is replaced by a wider copy with the same values (uint8 -> uint16 ->
    int32, as :func:`napari_medseg.editing._common.result_dtype`), so no voxel changes.
    napari's undo history stays valid: its steps hold voxel indices and values, which the
    wider array takes as they are, so Ctrl+Z still restores every earlier state (the
    dtype stays wide, which loses nothing).
    """
    from ..editing._common import result_dtype

    data = layer.data
    dtype = result_dtype(np.empty(0, dtype=data.dtype), int(max_id))  # reads only the dtype
    if dtype == data.dtype:
        return None
    old = data.dtype
    layer.data = np.asarray(data).astype(dtype)
    return (f"label id {int(max_id)} does not fit {old}: layer '{layer.name}' now stores {dtype} "
            "(voxels unchanged; Ctrl+Z still undoes)")


def write_voxels(layer, index: tuple, values: np.ndarray) -> int:
    """``layer.data[index] = values`` as ONE napari undo step (widening first if needed)."""
    values = np.asarray(values)
    if values.size == 0:
        return 0
    widen_for(layer, int(values.max()))
    with layer.block_history():  # one Ctrl+Z reverts the whole write
        layer.data_setitem(index, values.astype(layer.data.dtype, copy=False))
    return int(values.size)


def apply_to_layer(layer, new: np.ndarray) -> int:
    """Write ``new`` into a Labels layer as ONE undoable step; returns voxels changed.

    Only the changed voxels are written (:func:`write_voxels`: ``Labels.data_setitem``
    inside ``Labels.block_history``, so ``layer.undo()`` / Ctrl+Z restores the previous
    values). When the new ids do not fit the layer's dtype, the layer is first widened
    (:func:`widen_for`), never wrapped around.
    """
    data = layer.data
    new = np.asarray(new)
    if new.shape != data.shape:
        raise InvalidInputError(f"edit result has shape {new.shape}, the layer {data.shape}")
    changed = np.nonzero(new != data)
    return write_voxels(layer, changed, new[changed])


# ------------------------------------------------------------------ helpers
def current_slice(viewer, layer) -> tuple:
    """(axis, index) of the slice shown in a 2D view, in the layer's data indices."""
    dims = viewer.dims
    not_displayed = [d for d in range(dims.ndim) if d not in dims.displayed]
    if len(not_displayed) != 1:
        raise InvalidInputError("current-slice editing needs a 2D view of a 3D layer (switch off 3D view)")
    world_axis = not_displayed[0]
    offset = dims.ndim - layer.ndim
    axis = world_axis - offset
    idx = int(np.round(layer.world_to_data(dims.point)[axis]))
    idx = min(max(idx, 0), layer.data.shape[axis] - 1)
    return axis, idx


def layer_sources(*layers) -> list:
    """The files the given layers were opened from (for the output guard).

    Reads napari's ``layer.source.path`` and the ``source_path`` the plugin's reader
    stores in ``layer.metadata``; ``None`` layers and layers made in memory give nothing.
    Every widget that writes files passes these to
    :func:`napari_medseg.io.paths.check_outputs`.
    """
    paths = []
    for layer in layers:
        if layer is None:
            continue
        source = getattr(getattr(layer, "source", None), "path", None)
        meta = (getattr(layer, "metadata", None) or {}).get("source_path")
        paths.extend(str(p) for p in (source, meta) if p)
    return paths


def unique_name(viewer, base: str) -> str:
    """``base``, or ``base [2]``, ``base [3]``... whichever no layer of ``viewer`` has."""
    names = {layer.name for layer in viewer.layers}
    if base not in names:
        return base
    i = 2
    while f"{base} [{i}]" in names:
        i += 1
    return f"{base} [{i}]"


class LayerPicker(QComboBox):
    """A combo box of the viewer's layers of one type, kept in sync with the layer list.

    The one layer picker of the plugin's widgets. It holds layer *names* (layers are
    looked up by name on each use: through napari's proxy viewer a held layer object is a
    proxy of its own). A lost selection (the layer was removed) emits
    ``currentIndexChanged``.

    Parameters
    ----------
    viewer : napari.Viewer
    layer_type : type
        e.g. ``napari.layers.Labels``.
    allow_none : bool
        Offer "(none)" first (optional inputs).
    predicate : callable, optional
        ``predicate(layer) -> bool``: only matching layers are offered (e.g. 3D only).
    """

    NONE = "(none)"

    def __init__(self, viewer, layer_type, allow_none: bool = False,
                 predicate: Optional[Callable] = None, parent=None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.layer_type = layer_type
        self.allow_none = allow_none
        self.predicate = predicate
        self.refresh()
        for ev in self._events():
            ev.connect(self.refresh)

    def _events(self):
        events = self.viewer.layers.events
        return (events.inserted, events.removed, events.reordered)

    def _offered(self, layer) -> bool:
        return isinstance(layer, self.layer_type) and (self.predicate is None or self.predicate(layer))

    def refresh(self, event=None) -> None:
        """Refill from the layer list, keeping the selection when its layer is still there."""
        try:
            current = self.currentText()
        except RuntimeError:  # the widget was closed: stop following the layer list
            for ev in self._events():
                ev.disconnect(self.refresh)
            return
        self.blockSignals(True)
        self.clear()
        if self.allow_none:
            self.addItem(self.NONE)
        for layer in self.viewer.layers:
            if self._offered(layer):
                self.addItem(layer.name)
        idx = self.findText(current)
        if idx >= 0:
            self.setCurrentIndex(idx)
        self.blockSignals(False)
        if idx < 0:
            self.currentIndexChanged.emit(self.currentIndex())

    def layer(self):
        """The picked layer, or None."""
        name = self.currentText()
        if not name or name == self.NONE or name not in self.viewer.layers:
            return None
        return self.viewer.layers[name]

    def set_layer(self, layer) -> None:
        """Pick ``layer`` (a layer or its name)."""
        self.refresh()
        name = layer if isinstance(layer, str) else layer.name
        index = self.findText(name)
        if index < 0:
            raise InvalidInputError(f"no {self.layer_type.__name__} layer named {name!r} to pick")
        self.setCurrentIndex(index)
