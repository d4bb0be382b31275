"""Dock widget "Label tools": clean-up operations, class list and autosave for a Labels layer.

Thin by design: every operation is :func:`napari_medseg.editing.operations.apply_edit`
run in a worker thread; this widget only gathers parameters, hands the result to
the layer through napari's undoable path (:func:`apply_to_layer`: one
``data_setitem`` over the changed voxels inside ``block_history``, so one Ctrl+Z
reverts one operation), edits names/colours/visibility, and drives the
:class:`~napari_medseg.editing.autosave.Autosaver`.

Class-list edits (rename, colour, visibility, add, relabel, delete) are undoable with
the widget's "Undo/Redo class change" buttons; see :class:`LabelToolsWidget`.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Optional

import numpy as np
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QColorDialog,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..editing import classes as class_ops
from ..editing.autosave import Autosaver, list_recoverable, restore
from ..editing.class_history import ClassChange, ClassHistory, ClassState
from ..editing.operations import OPERATIONS, EditRequest, apply_edit
from ..errors import InvalidInputError, MedsegError
from ..io.label_table import LabelTable
from ._layers import layer_key, layer_volume

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ layer glue
def layer_table(layer) -> LabelTable:
    """Names and colours of a Labels layer: recorded table, else features, else ids."""
    recorded = (layer.metadata or {}).get("medseg_label_table")
    if recorded:
        try:
            return LabelTable.from_dict(recorded)
        except MedsegError:
            log.warning("layer %s has a broken label table in its metadata", layer.name)
    from_features = LabelTable.from_features(layer.features, layer.colormap)
    if from_features is not None:
        return from_features
    from ..io.readers import present_ids

    return LabelTable.from_ids(present_ids(np.asarray(layer.data)))


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


def apply_to_layer(layer, new: np.ndarray) -> int:
    """Write ``new`` into a Labels layer as ONE undoable step; returns voxels changed.

    Only the changed voxels are written, with :meth:`Labels.data_setitem` inside
    :meth:`Labels.block_history`, which records them in the layer's undo history
    (``layer.undo()`` / Ctrl+Z restores the previous values). When the new ids do not
    fit the layer's dtype, the layer is first widened (:func:`widen_for`), never
    wrapped around.
    """
    data = layer.data
    new = np.asarray(new)
    if new.shape != data.shape:
        raise InvalidInputError(f"edit result has shape {new.shape}, the layer {data.shape}")
    changed = np.nonzero(new != data)
    n = int(changed[0].size)
    if n == 0:
        return 0
    values = new[changed]
    widen_for(layer, int(values.max()))
    data = layer.data
    with layer.block_history():
        layer.data_setitem(changed, values.astype(data.dtype, copy=False))
    return n


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


def class_state(layer) -> ClassState:
    """The layer's class list (table and hidden ids) as a :class:`ClassState`."""
    return ClassState(layer_table(layer).to_dict(), tuple(sorted(hidden_labels(layer))))


def set_class_state(layer, state: ClassState) -> None:
    """Store a :class:`ClassState` on the layer (metadata, features, colormap)."""
    set_layer_table(layer, LabelTable.from_dict(state.table), set(state.hidden))


class _VoxelLink:
    """The voxel change made together with a class-list change (relabel, delete).

    ``diff`` is ``(indices, values before, values after)``, enough to write either
    side back. ``atoms`` lists ``(napari history atom, forward)`` for every napari
    step that wrote these voxels: the change itself (forward: applying it gives the
    "after" side) and any write-back by the widget (not forward). Whichever of them
    is on top of napari's undo or redo stack tells which side the voxels are on.
    """

    __slots__ = ("diff", "atoms")

    def __init__(self, diff, atom) -> None:
        self.diff = diff
        self.atoms = [] if atom is None else [(atom, True)]

    def napari_side(self, layer) -> Optional[bool]:
        """True/False: napari's newest step leaves the voxels on the after/before side; None: unknown."""
        for atom, forward in reversed(self.atoms):
            applied = _napari_applied(layer, atom)
            if applied is not None:
                return applied == forward
        return None


def _newest_atom(layer):
    """An atom of napari's newest undo step, or None.

    ``Labels._undo_history``/``_redo_history`` are private (napari 0.5 to 0.9: deques
    of lists of atoms; undo/redo move the same atom objects between them), so every
    use here tolerates their absence: the widget then writes voxels back itself.
    """
    stack = getattr(layer, "_undo_history", None)
    try:
        return stack[-1][-1] if stack else None
    except (TypeError, IndexError, KeyError):
        return None


def _napari_applied(layer, atom) -> Optional[bool]:
    """True when ``atom`` is napari's next undo step, False when its next redo step, else None."""
    if atom is None:
        return None
    for stack_name, applied in (("_undo_history", True), ("_redo_history", False)):
        stack = getattr(layer, stack_name, None)
        try:
            if stack and any(a is atom for a in stack[-1]):
                return applied
        except TypeError:
            return None
    return None


def _apply_linked(layer, new: np.ndarray) -> tuple:
    """:func:`apply_to_layer`, also returning a :class:`_VoxelLink` (None if nothing changed)."""
    data, new = np.asarray(layer.data), np.asarray(new)
    changed = np.nonzero(new != data) if new.shape == data.shape else None
    diff = None if changed is None else (changed, data[changed].copy(), new[changed])
    n = apply_to_layer(layer, new)
    if n == 0:
        return 0, None
    return n, _VoxelLink(diff, _newest_atom(layer))


class LayerCombo(QComboBox):
    """A combo box of the viewer's layers of one type, kept in sync with the layer list."""

    def __init__(self, viewer, layer_type, allow_none: bool = False, parent=None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.layer_type = layer_type
        self.allow_none = allow_none
        self.refresh()
        for ev in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.reordered):
            ev.connect(self.refresh)

    def refresh(self, event=None) -> None:
        try:
            current = self.currentText()
        except RuntimeError:  # the widget was closed: stop following the layer list
            for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed,
                       self.viewer.layers.events.reordered):
                ev.disconnect(self.refresh)
            return
        self.blockSignals(True)
        self.clear()
        if self.allow_none:
            self.addItem("(none)")
        for layer in self.viewer.layers:
            if isinstance(layer, self.layer_type):
                self.addItem(layer.name)
        idx = self.findText(current)
        if idx >= 0:
            self.setCurrentIndex(idx)
        self.blockSignals(False)
        if idx < 0:
            self.currentIndexChanged.emit(self.currentIndex())

    def layer(self):
        name = self.currentText()
        if not name or name == "(none)" or name not in self.viewer.layers:
            return None
        return self.viewer.layers[name]

    def set_layer(self, layer) -> None:
        self.refresh()
        self.setCurrentIndex(self.findText(layer.name))


# ------------------------------------------------------------------ the widget
class LabelToolsWidget(QWidget):
    """Clean-up operations, class list and autosave for a Labels layer.

    Public API (for tests and scripts): :meth:`set_operation`, :meth:`run`,
    :meth:`rename_class`, :meth:`set_class_color`, :meth:`set_class_visible`,
    :meth:`add_class`, :meth:`relabel_class`, :meth:`delete_class`,
    :meth:`undo_class_change`, :meth:`redo_class_change`, :meth:`set_autosave`,
    :meth:`autosave_now`, :meth:`restore_snapshot`; the ``finished`` signal carries
    a status message after each operation (success or error).

    Undo of class-list edits: each layer has its own :class:`ClassHistory` (last
    100 edits, dropped when the layer leaves the viewer). "Undo class change"
    restores the previous class list; for a relabel or delete it also reverts the
    voxels in the same step, through napari's own history (``layer.undo()``) when
    that change is still napari's next undo step, else by writing the old values
    back as a new undoable step. Ctrl+Z / Ctrl+Shift+Z in the viewer revert the
    voxels and the class list follows (the widget listens to the layer's
    ``set_data`` event) when that relabel/delete is the newest class change;
    names, colours and visibility are undone only with the widget's buttons.
    """

    finished = Signal(str)

    def __init__(self, napari_viewer, parent: Optional[QWidget] = None, autosaver: Optional[Autosaver] = None) -> None:
        from napari.layers import Image, Labels

        super().__init__(parent)
        self.viewer = napari_viewer
        self.autosaver = autosaver
        self._worker = None
        self._versions: dict = {}
        self._watched: dict = {}  # layer_key -> [(emitter, callback)] to disconnect on removal
        self._saved_versions: dict = {}
        self._histories: dict = {}  # layer_key -> ClassHistory, dropped with the layer
        self._busy = False  # True while the widget itself changes voxels/tables
        napari_viewer.layers.events.removed.connect(self._forget_layer)

        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.labels_combo = LayerCombo(napari_viewer, Labels)
        self.labels_combo.currentIndexChanged.connect(self._on_layer_changed)
        form.addRow("Labels layer", self.labels_combo)
        self.operation_combo = QComboBox()
        self.operation_combo.addItems(list(OPERATIONS))
        self.operation_combo.currentTextChanged.connect(self._on_operation_changed)
        form.addRow("Operation", self.operation_combo)
        row = QHBoxLayout()
        self.label_spin = QSpinBox()
        self.label_spin.setRange(1, 2**31 - 1)
        self.all_labels = QCheckBox("all labels")
        row.addWidget(self.label_spin)
        row.addWidget(self.all_labels)
        form.addRow("Label", row)
        self.scope_combo = QComboBox()
        self.scope_combo.addItems(["3D", "current slice"])
        form.addRow("Scope", self.scope_combo)
        self.size_spin = QDoubleSpinBox()
        self.size_spin.setDecimals(3)
        self.size_spin.setRange(0.0, 1e6)
        self.size_spin.setValue(1.0)
        self.size_label = QLabel("Size")
        form.addRow(self.size_label, self.size_spin)
        self.target_spin = QSpinBox()
        self.target_spin.setRange(1, 2**31 - 1)
        form.addRow("Target label", self.target_spin)
        self.overwrite = QCheckBox("may overwrite other labels")
        form.addRow("", self.overwrite)
        self.image_combo = LayerCombo(napari_viewer, Image, allow_none=True)
        form.addRow("Image (intensities)", self.image_combo)
        hu = QHBoxLayout()
        self.low_spin = QDoubleSpinBox()
        self.high_spin = QDoubleSpinBox()
        for spin, value in ((self.low_spin, -100.0), (self.high_spin, 300.0)):
            spin.setRange(-1e6, 1e6)
            spin.setDecimals(1)
            spin.setValue(value)
            hu.addWidget(spin)
        form.addRow("Intensity range (HU)", hu)
        self.restrict = QCheckBox("restrict changes to the intensity range")
        form.addRow("", self.restrict)
        self.operand_combo = LayerCombo(napari_viewer, Labels, allow_none=True)
        form.addRow("Operand layer", self.operand_combo)
        self.operand_label = QSpinBox()
        self.operand_label.setRange(1, 2**31 - 1)
        form.addRow("Operand label", self.operand_label)
        layout.addLayout(form)
        self.apply_button = QPushButton("Apply")
        self.apply_button.clicked.connect(lambda: self.run())
        layout.addWidget(self.apply_button)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)

        # class list
        box = QGroupBox("Classes")
        box_layout = QVBoxLayout(box)
        self.class_table = QTableWidget(0, 4)
        self.class_table.setHorizontalHeaderLabels(["id", "name", "colour", "visible"])
        self.class_table.itemChanged.connect(self._on_class_item_changed)
        self.class_table.cellDoubleClicked.connect(self._on_class_double_clicked)
        box_layout.addWidget(self.class_table)
        buttons = QHBoxLayout()
        for text, slot in (("Relabel...", self._ask_relabel), ("Delete", self._ask_delete), ("Refresh", self.refresh_classes)):
            b = QPushButton(text)
            b.clicked.connect(lambda _=False, s=slot: s())
            buttons.addWidget(b)
        box_layout.addLayout(buttons)
        undo_row = QHBoxLayout()
        self.undo_class_button = QPushButton("Undo class change")
        self.undo_class_button.clicked.connect(lambda: self.undo_class_change())
        self.redo_class_button = QPushButton("Redo class change")
        self.redo_class_button.clicked.connect(lambda: self.redo_class_change())
        undo_row.addWidget(self.undo_class_button)
        undo_row.addWidget(self.redo_class_button)
        box_layout.addLayout(undo_row)
        layout.addWidget(box)

        # autosave
        auto = QHBoxLayout()
        self.autosave_box = QCheckBox("Autosave every")
        self.autosave_interval = QSpinBox()
        self.autosave_interval.setRange(5, 3600)
        self.autosave_interval.setValue(60)
        self.autosave_interval.setSuffix(" s")
        self.autosave_box.toggled.connect(lambda on: self.set_autosave(on))
        restore_button = QPushButton("Restore...")
        restore_button.clicked.connect(self._ask_restore)
        auto.addWidget(self.autosave_box)
        auto.addWidget(self.autosave_interval)
        auto.addWidget(restore_button)
        layout.addLayout(auto)
        layout.addStretch(1)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.autosave_now)

        self._on_operation_changed(self.operation_combo.currentText())
        self._on_layer_changed()

    # ---------------------------------------------------------------- helpers
    def labels_layer(self):
        return self.labels_combo.layer()

    def _on_layer_changed(self, *_):
        layer = self.labels_layer()
        if layer is not None:
            self._watch(layer)
            if int(layer.selected_label) > 0:
                self.label_spin.setValue(int(layer.selected_label))
        self.refresh_classes()

    def _watch(self, layer) -> None:
        key = layer_key(layer)
        if key in self._watched:
            return
        self._versions.setdefault(key, 0)

        def bump(event=None):
            self._versions[key] = self._versions.get(key, 0) + 1

        def follow(event=None):
            # looked up by key, not held: the widget must not keep a layer alive
            target = next((lay for lay in self.viewer.layers if layer_key(lay) == key), None)
            if target is not None:
                self._follow_napari(target)

        def classes_changed(event=None):
            # another widget (e.g. Interactive segmentation naming an object) changed the table
            current = self.labels_layer()
            if not self._busy and current is not None and layer_key(current) == key:
                self.refresh_classes()

        # undo/redo only emit set_data (as does re-slicing: the autosaver's digest
        # then finds nothing changed and writes nothing; ``follow`` finds no change)
        connections = [(layer.events.paint, bump), (layer.events.data, bump),
                       (layer.events.set_data, bump), (layer.events.set_data, follow),
                       (layer.events.features, classes_changed)]
        for emitter, callback in connections:
            emitter.connect(callback)
        self._watched[key] = connections

    def _forget_layer(self, event) -> None:
        # a removed layer's history would keep its arrays alive: drop everything keyed by it
        key = layer_key(event.value)
        for emitter, callback in self._watched.pop(key, ()):
            emitter.disconnect(callback)
        self._histories.pop(key, None)
        self._versions.pop(key, None)
        for saved in [k for k in list(self._saved_versions) if k[0] == key]:
            self._saved_versions.pop(saved, None)

    def _on_operation_changed(self, name: str) -> None:
        unit = OPERATIONS.get(name, (None,))[0]
        self.size_spin.setEnabled(unit is not None)
        self.size_label.setText({"mm": "Size (mm)", "mL": "Min. volume (mL)"}.get(unit, "Size"))

    def set_operation(self, name: str, **params) -> None:
        """Select operation ``name`` and set fields: label, all_labels, scope ("3D" or
        "current slice"), size, target, overwrite, low, high, restrict, image (layer),
        operand (layer), operand_label."""
        if name not in OPERATIONS:
            raise InvalidInputError(f"unknown operation {name!r}")
        self.operation_combo.setCurrentText(name)
        if "label" in params:
            self.label_spin.setValue(int(params["label"]))
        if "all_labels" in params:
            self.all_labels.setChecked(bool(params["all_labels"]))
        if "scope" in params:
            self.scope_combo.setCurrentText(params["scope"])
        if "size" in params:
            self.size_spin.setValue(float(params["size"]))
        if "target" in params:
            self.target_spin.setValue(int(params["target"]))
        if "overwrite" in params:
            self.overwrite.setChecked(bool(params["overwrite"]))
        if "low" in params:
            self.low_spin.setValue(float(params["low"]))
        if "high" in params:
            self.high_spin.setValue(float(params["high"]))
        if "restrict" in params:
            self.restrict.setChecked(bool(params["restrict"]))
        if params.get("image") is not None:
            self.image_combo.set_layer(params["image"])
        if params.get("operand") is not None:
            self.operand_combo.set_layer(params["operand"])
        if "operand_label" in params:
            self.operand_label.setValue(int(params["operand_label"]))

    def request(self) -> EditRequest:
        """The :class:`EditRequest` for the current field values."""
        layer = self.labels_layer()
        axis = index = None
        slice_axis = 0
        try:
            slice_axis = current_slice(self.viewer, layer)[0] if layer is not None else 0
        except InvalidInputError:
            slice_axis = 0
        if self.scope_combo.currentText() == "current slice":
            axis, index = current_slice(self.viewer, layer)
        return EditRequest(
            label=None if self.all_labels.isChecked() else self.label_spin.value(),
            size=self.size_spin.value(), axis=axis, index=index, slice_axis=slice_axis,
            overwrite=self.overwrite.isChecked(), target=self.target_spin.value(),
            low=self.low_spin.value(), high=self.high_spin.value(), restrict=self.restrict.isChecked(),
            other_label=self.operand_label.value(),
        )

    def _message(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        if error:
            log.warning("label tools: %s", text)
        self.finished.emit(text)

    # ---------------------------------------------------------------- running
    def run(self):
        """Run the selected operation on the selected Labels layer (in a worker).

        Returns the worker (or None when the input is refused; the reason is shown).
        The result is written on the main thread as one undoable step.
        """
        from napari.qt.threading import thread_worker

        layer = self.labels_layer()
        if layer is None:
            self._message("No Labels layer: add or open labels first.", error=True)
            return None
        name = self.operation_combo.currentText()
        try:
            req = self.request()
            volume = layer_volume(layer)
            image = None
            img_layer = self.image_combo.layer()
            if img_layer is not None:
                image = np.asarray(img_layer.data)
                if image.shape != volume.shape:
                    raise InvalidInputError(
                        f"image layer {img_layer.name!r} has shape {image.shape}, the labels {volume.shape}")
            other_layer = self.operand_combo.layer()
            other = None if other_layer is None else np.asarray(other_layer.data)
        except MedsegError as exc:
            self._message(str(exc), error=True)
            return None
        data = volume.array
        spacing = volume.spacing_zyx
        before = data.copy()  # the worker reads a snapshot, the user may keep painting

        # errors are shown in the widget (``failed``), not re-raised into the event loop
        @thread_worker(ignore_errors=True)
        def work():
            return apply_edit(name, before, spacing, req, image=image, other=other)

        worker = work()
        self.apply_button.setEnabled(False)
        self.status.setText(f"{name}: running...")

        def done(result):
            try:
                if layer.data.shape != before.shape:
                    raise InvalidInputError("the layer changed shape while the edit ran; nothing was applied")
                # apply only what the operation changed, on top of any edits made meanwhile
                changed = result != before
                new = np.asarray(layer.data).astype(np.result_type(layer.data.dtype, result.dtype), copy=True)
                new[changed] = result[changed]
                table = layer_table(layer)
                if name == "Erase label" and req.label is not None and req.label in table:
                    # voxels and class entry go together, so they are undone together
                    before_state = class_state(layer)
                    with self._quiet():
                        n, link = _apply_linked(layer, new)
                        set_layer_table(layer, table.without(req.label))
                    self._record(layer, f"erase label {req.label} '{table.name_of(req.label)}'",
                                 before_state, link)
                else:
                    n = apply_to_layer(layer, new)
                widened = "" if layer.data.dtype == before.dtype else \
                    f"; the layer now stores {layer.data.dtype} to hold the new ids"
                self.refresh_classes()
                self._message(f"{name}: {n} voxel(s) changed (Ctrl+Z to undo){widened}")
            except MedsegError as exc:
                self._message(str(exc), error=True)

        def failed(exc):
            if isinstance(exc, MedsegError):
                self._message(str(exc), error=True)
            else:
                log.exception("label tools: %s failed", name, exc_info=exc)
                self._message(f"{name} failed: {exc}", error=True)

        worker.returned.connect(done)
        worker.errored.connect(failed)
        worker.finished.connect(lambda: self.apply_button.setEnabled(True))
        self._worker = worker
        worker.start()
        return worker

    # ---------------------------------------------------------------- classes
    def refresh_classes(self) -> None:
        """Fill the class list from the layer's table (plus ids present but unnamed)."""
        layer = self.labels_layer()
        self.class_table.blockSignals(True)
        self.class_table.setRowCount(0)
        if layer is not None:
            table = layer_table(layer)
            hidden = hidden_labels(layer)
            for row, label_id in enumerate(table.ids):
                self.class_table.insertRow(row)
                id_item = QTableWidgetItem(str(label_id))
                id_item.setFlags(id_item.flags() & ~_editable())
                self.class_table.setItem(row, 0, id_item)
                self.class_table.setItem(row, 1, QTableWidgetItem(table.name_of(label_id)))
                r, g, b, _ = table.color_of(label_id)
                color_item = QTableWidgetItem("")
                color_item.setFlags(color_item.flags() & ~_editable())
                from qtpy.QtGui import QColor

                color_item.setBackground(QColor(int(r * 255), int(g * 255), int(b * 255)))
                self.class_table.setItem(row, 2, color_item)
                vis = QTableWidgetItem("")
                vis.setFlags((vis.flags() | _checkable()) & ~_editable())
                vis.setCheckState(_unchecked() if label_id in hidden else _checked())
                self.class_table.setItem(row, 3, vis)
        self.class_table.blockSignals(False)
        self._update_undo_buttons()

    def _row_id(self, row: int) -> int:
        return int(self.class_table.item(row, 0).text())

    def _on_class_item_changed(self, item) -> None:
        label_id = self._row_id(item.row())
        try:
            if item.column() == 1:
                self.rename_class(label_id, item.text())
            elif item.column() == 3:
                self.set_class_visible(label_id, item.checkState() == _checked())
        except MedsegError as exc:
            self._message(str(exc), error=True)
            self.refresh_classes()

    def _on_class_double_clicked(self, row: int, column: int) -> None:
        if column != 2:
            return
        from qtpy.QtGui import QColor

        color = QColorDialog.getColor(parent=self)
        if color.isValid():
            self.set_class_color(self._row_id(row), (color.redF(), color.greenF(), color.blueF(), 1.0))

    def _layer_or_raise(self):
        layer = self.labels_layer()
        if layer is None:
            raise InvalidInputError("no Labels layer selected")
        return layer

    def rename_class(self, label_id: int, name: str) -> None:
        """Rename a class (updates features, metadata and the list; undoable)."""
        layer = self._layer_or_raise()
        table = layer_table(layer)
        new_table = class_ops.rename_class(table, label_id, name)
        self._change_table(layer, new_table, f"rename label {label_id} "
                           f"'{table.name_of(label_id)}' -> '{new_table.name_of(label_id)}'")

    def set_class_color(self, label_id: int, color) -> None:
        """Set a class colour (RGB(A) in 0..1; undoable)."""
        layer = self._layer_or_raise()
        new_table = class_ops.recolor_class(layer_table(layer), label_id, color)
        self._change_table(layer, new_table, f"colour of label {label_id}")

    def set_class_visible(self, label_id: int, visible: bool) -> None:
        """Show or hide one class (its colour becomes transparent; data untouched; undoable)."""
        layer = self._layer_or_raise()
        hidden = hidden_labels(layer)
        (hidden.discard if visible else hidden.add)(int(label_id))
        self._change_table(layer, layer_table(layer), f"{'show' if visible else 'hide'} label {label_id}", hidden)

    def relabel_class(self, old: int, new: int, merge: bool = False) -> int:
        """Give class ``old`` the id ``new`` (name and colour move too).

        Voxels and class list change as one step: :meth:`undo_class_change` reverts
        both, as does Ctrl+Z in the viewer while this is the newest class change.
        Returns the number of voxels changed.
        """
        layer = self._layer_or_raise()
        self._follow_napari(layer)
        before = class_state(layer)
        out, table = class_ops.relabel(np.asarray(layer.data), old, new, layer_table(layer), merge=merge)
        with self._quiet():
            n, link = _apply_linked(layer, out)  # widens the layer first when `new` needs it
        with self._quiet():
            set_layer_table(layer, table)
        self._record(layer, f"relabel {old} -> {new}", before, link)
        self.refresh_classes()
        self._message(f"label {old} -> {new}: {n} voxel(s) (Ctrl+Z or Undo class change restores ids and names)")
        return n

    def delete_class(self, label_id: int) -> int:
        """Erase a class: voxels to background and its entry leaves the list.

        Undone as one step with :meth:`undo_class_change` (voxels and entry). Returns
        the number of voxels erased.
        """
        layer = self._layer_or_raise()
        self._follow_napari(layer)
        before = class_state(layer)
        table = layer_table(layer)
        out, new_table = class_ops.delete_class(np.asarray(layer.data), label_id, table)
        with self._quiet():
            n, link = _apply_linked(layer, out)
            set_layer_table(layer, new_table)
        self._record(layer, f"delete label {label_id} '{table.name_of(label_id)}'", before, link)
        self.refresh_classes()
        self._message(f"deleted label {label_id}: {n} voxel(s) erased (Ctrl+Z or Undo class change restores them)")
        return n

    def add_class(self, label_id: int, name: str, color=None) -> None:
        """Add a named class to the list (e.g. before painting it; undoable)."""
        layer = self._layer_or_raise()
        self._change_table(layer, layer_table(layer).with_label(int(label_id), name, color),
                           f"add label {int(label_id)} '{name}'")

    # ---------------------------------------------------------- class history
    @contextmanager
    def _quiet(self):
        """While the widget itself writes voxels or tables, ``set_data`` is not a viewer Ctrl+Z."""
        prev, self._busy = self._busy, True
        try:
            yield
        finally:
            self._busy = prev

    def _history(self, layer, create: bool = False) -> Optional[ClassHistory]:
        key = layer_key(layer)
        if create and key not in self._histories:
            self._watch(layer)  # so that it is forgotten when the layer is removed
            self._histories[key] = ClassHistory()
        return self._histories.get(key)

    def _change_table(self, layer, table: LabelTable, description: str, hidden: Optional[set] = None) -> None:
        self._follow_napari(layer)
        before = class_state(layer)
        with self._quiet():
            set_layer_table(layer, table, hidden)
        self._record(layer, description, before)
        self.refresh_classes()

    def _record(self, layer, description: str, before: ClassState, link: Optional[_VoxelLink] = None) -> None:
        after = class_state(layer)
        if after != before or link is not None:  # e.g. re-typing the same name is no change
            self._history(layer, create=True).push(ClassChange(description, before, after, link))
        self._update_undo_buttons()

    def _update_undo_buttons(self) -> None:
        layer = self.labels_layer()
        history = None if layer is None else self._history(layer)
        self.undo_class_button.setEnabled(history is not None and history.can_undo)
        self.redo_class_button.setEnabled(history is not None and history.can_redo)

    def _move_voxels(self, layer, link: _VoxelLink, applied: bool) -> None:
        """Put the voxels of ``link`` on their "after" (``applied``) or "before" side.

        When napari's next undo/redo step is this very change, take it: napari's
        stack and the voxels stay consistent (Ctrl+Z/Ctrl+Shift+Z go on from there).
        Otherwise (painted since, history cleared) write the values back as a new
        undoable step, only where the voxels still hold what the change left there.
        """
        for atom, forward in reversed(link.atoms):
            now = _napari_applied(layer, atom)
            if now is not None and (now == forward) != applied:
                (layer.undo if now else layer.redo)()
                return
        if link.diff is None:
            return
        indices, before, after = link.diff
        src, dst = (before, after) if applied else (after, before)
        data = layer.data
        keep = np.asarray(data[indices]) == src
        if not keep.any():
            return
        with layer.block_history():
            layer.data_setitem(tuple(i[keep] for i in indices), dst[keep].astype(data.dtype, copy=False))
        atom = _newest_atom(layer)
        if atom is not None:
            link.atoms.append((atom, applied))

    def _follow_napari(self, layer) -> bool:
        """Keep the class list in step after napari undid/redid a relabel's or delete's voxels.

        Called on the layer's ``set_data`` event (emitted by ``layer.undo()`` /
        ``layer.redo()``, i.e. Ctrl+Z in the viewer) and before each class edit. Only
        the newest class change (or the newest undone one) is followed: older ones
        would need the changes after them undone first. Returns True if it moved.
        """
        history = self._history(layer)
        if self._busy or history is None:
            return False
        # an applied change whose voxels napari just reverted, or an undone one napari re-applied
        change, verb = history.peek_undo(), "undid"
        if change is None or change.voxels is None or change.voxels.napari_side(layer) is not False:
            change, verb = history.peek_redo(), "redid"
            if change is None or change.voxels is None or change.voxels.napari_side(layer) is not True:
                return False
        with self._quiet():
            if verb == "undid":
                set_class_state(layer, history.undo().before)
            else:
                set_class_state(layer, history.redo().after)
        try:
            self.refresh_classes()
            self._message(f"{verb} (Ctrl+Z in the viewer): {change.description}")
        except RuntimeError:  # the widget was closed; the layer's table is in step anyway
            pass
        return True

    def undo_class_change(self) -> bool:
        """Undo the newest class-list change of the selected layer.

        Restores names, colours and hidden ids; a relabel or delete also gets its
        voxels back in the same step (see :meth:`_move_voxels`).

        Returns
        -------
        bool
            False when there was nothing to undo (a message says so).
        """
        return self._step(undo=True)

    def redo_class_change(self) -> bool:
        """Redo the newest undone class-list change of the selected layer.

        Returns
        -------
        bool
            False when there was nothing to redo (a message says so).
        """
        return self._step(undo=False)

    def _step(self, undo: bool) -> bool:
        layer = self.labels_layer()
        history = None if layer is None else self._history(layer)
        if history is not None:
            self._follow_napari(layer)
        change = None if history is None else (history.peek_undo() if undo else history.peek_redo())
        if change is None:
            self._message(f"no class change to {'undo' if undo else 'redo'}")
            self._update_undo_buttons()
            return False
        with self._quiet():
            if change.voxels is not None:
                self._move_voxels(layer, change.voxels, applied=not undo)
            set_class_state(layer, change.before if undo else change.after)
        history.undo() if undo else history.redo()
        self.refresh_classes()
        self._message(f"{'undid' if undo else 'redid'}: {change.description}")
        return True

    def _ask_relabel(self) -> None:
        row = self.class_table.currentRow()
        if row < 0:
            return
        old = self._row_id(row)
        new, ok = QInputDialog.getInt(self, "Relabel", f"New id for label {old}:", old, 1, 2**31 - 1)
        if ok:
            try:
                self.relabel_class(old, new)
            except MedsegError as exc:
                self._message(str(exc), error=True)

    def _ask_delete(self) -> None:
        row = self.class_table.currentRow()
        if row >= 0:
            try:
                self.delete_class(self._row_id(row))
            except MedsegError as exc:
                self._message(str(exc), error=True)

    # ---------------------------------------------------------------- autosave
    def set_autosave(self, enabled: bool, interval_s: Optional[float] = None) -> None:
        """Switch periodic autosave of every Labels layer on or off."""
        if interval_s is not None:
            self.autosave_interval.setValue(int(max(5, interval_s)))
        if enabled:
            if self.autosaver is None:
                self.autosaver = Autosaver()
            self._timer.start(int(self.autosave_interval.value() * 1000))
        else:
            self._timer.stop()
        if self.autosave_box.isChecked() != bool(enabled):
            self.autosave_box.blockSignals(True)
            self.autosave_box.setChecked(bool(enabled))
            self.autosave_box.blockSignals(False)

    def autosave_now(self, blocking: bool = False) -> list:
        """Snapshot every Labels layer changed since its last snapshot.

        The arrays are copied here (main thread) and written by a worker thread
        (``blocking=True`` writes before returning). Returns the snapshots written
        when blocking, else ``[]``.
        """
        from napari.layers import Labels
        from napari.qt.threading import thread_worker

        if self.autosaver is None:
            self.autosaver = Autosaver()
        jobs = []
        for layer in self.viewer.layers:
            if not isinstance(layer, Labels) or np.asarray(layer.data).ndim != 3:
                continue
            self._watch(layer)
            version = self._versions.get(layer_key(layer), 0)
            key = (layer_key(layer), layer.name)
            if self._saved_versions.get(key) == version:
                continue
            try:
                geometry = layer_volume(layer).geometry_dict()
            except MedsegError:
                geometry = None
            jobs.append((key, version, layer.name, np.array(layer.data, copy=True), geometry,
                         layer_table(layer)))
        if not jobs:
            return []
        saver = self.autosaver

        def write():
            written = []
            for key, version, name, arr, geometry, table in jobs:
                snap = saver.save(name, arr, geometry, table)
                self._saved_versions[key] = version
                if snap is not None:
                    written.append(snap)
            return written

        if blocking:
            return write()
        worker = thread_worker(write, ignore_errors=True)()
        worker.errored.connect(lambda exc: self._message(f"autosave failed: {exc}", error=True))
        worker.start()
        return []

    def restore_snapshot(self, snapshot_id: str, directory=None):
        """Add a Labels layer from a recovery snapshot; returns the new layer."""
        from ..io.layer_data import labels_layer_tuple

        directory = directory if directory is not None else (self.autosaver.directory if self.autosaver else None)
        volume, table, name = restore(snapshot_id, directory)
        data, kwargs, _ = labels_layer_tuple(volume.array, volume, table, name=f"{name} (recovered)")
        layer = self.viewer.add_labels(data, **kwargs)
        self.labels_combo.set_layer(layer)
        self._message(f"restored {name} from snapshot {snapshot_id}")
        return layer

    def _ask_restore(self) -> None:
        directory = self.autosaver.directory if self.autosaver else None
        snaps = list_recoverable(directory)
        if not snaps:
            self._message("nothing to restore: the recovery folder holds no complete snapshot")
            return
        items = [s.describe() for s in snaps]
        choice, ok = QInputDialog.getItem(self, "Restore labels", "Snapshot:", items, 0, False)
        if ok:
            try:
                self.restore_snapshot(snaps[items.index(choice)].id, directory)
            except MedsegError as exc:
                self._message(str(exc), error=True)


def _editable():
    from qtpy.QtCore import Qt

    return Qt.ItemFlag.ItemIsEditable


def _checkable():
    from qtpy.QtCore import Qt

    return Qt.ItemFlag.ItemIsUserCheckable


def _checked():
    from qtpy.QtCore import Qt

    return Qt.CheckState.Checked


def _unchecked():
    from qtpy.QtCore import Qt

    return Qt.CheckState.Unchecked
