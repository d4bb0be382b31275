"""Dock widget "Label tools": clean-up operations, class list and autosave for a Labels layer.

Wiring only: every operation is :func:`napari_medseg.editing.operations.apply_edit` run by
the widget's :class:`~._jobs.JobRunner`; the result is written on the main thread as one
napari undo step (:func:`~._layers.apply_to_layer`), and the classes it touched are
recorded as edited (:func:`~._layers.mark_edited`: what DICOM-SEG writes as each
segment's algorithm type). Class-list edits (rename, colour, visibility, add, relabel,
delete) go through :class:`~._napari_history.ClassUndo`, which keeps them undoable with
the "Undo/Redo class change" buttons and in step with Ctrl+Z in the viewer. Autosave is
the core's :class:`~napari_medseg.editing.autosave.Autosaver`.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractSpinBox,
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
from ..editing.operations import OPERATIONS, EditRequest, apply_edit
from ..errors import InvalidInputError, MedsegError
from ._jobs import JobRunner, StatusLine
from ._layers import (
    LayerPicker,
    apply_to_layer,
    current_slice,
    hidden_labels,
    layer_key,
    layer_table,
    layer_volume,
    mark_edited,
)
from ._layout import collapsible, make_scrollable
from ._napari_history import ClassUndo

log = logging.getLogger(__name__)


class LabelToolsWidget(QWidget):
    """Clean-up operations, class list and autosave for a Labels layer.

    Public API (for tests and scripts): :meth:`set_operation`, :meth:`run`,
    :meth:`rename_class`, :meth:`set_class_color`, :meth:`set_class_visible`,
    :meth:`add_class`, :meth:`relabel_class`, :meth:`delete_class`,
    :meth:`undo_class_change`, :meth:`redo_class_change`, :meth:`set_autosave`,
    :meth:`autosave_now`, :meth:`restore_snapshot`; the ``finished`` signal carries
    a status message after each operation (success or error).

    Undo of class-list edits (:class:`~._napari_history.ClassUndo`, per layer, last 100):
    "Undo class change" restores the previous class list; a relabel or delete also gets
    its voxels back in the same step. Ctrl+Z / Ctrl+Shift+Z in the viewer revert the
    voxels and the class list follows (the widget listens to the layer's ``set_data``
    event) when that relabel/delete is the newest class change; names, colours and
    visibility are undone only with the widget's buttons.
    """

    finished = Signal(str)

    def __init__(self, napari_viewer, parent: Optional[QWidget] = None, autosaver: Optional[Autosaver] = None) -> None:
        from napari.layers import Image, Labels

        super().__init__(parent)
        self.viewer = napari_viewer
        self.autosaver = autosaver
        self.class_undo = ClassUndo()
        self._versions: dict = {}
        self._watched: dict = {}  # layer_key -> [(emitter, callback)] to disconnect on removal
        self._saved_versions: dict = {}
        napari_viewer.layers.events.removed.connect(self._forget_layer)

        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.labels_combo = LayerPicker(napari_viewer, Labels)
        self.labels_combo.currentIndexChanged.connect(self._on_layer_changed)
        form.addRow("Labels layer", self.labels_combo)
        self.operation_combo = QComboBox()
        self.operation_combo.addItems(list(OPERATIONS))
        self.operation_combo.currentTextChanged.connect(self._on_operation_changed)
        form.addRow("Operation", self.operation_combo)
        row = QHBoxLayout()
        self.label_spin = QSpinBox()
        self.label_spin.setRange(1, 2**31 - 1)
        self.label_spin.setMinimumWidth(90)  # never squeezed beside the check box
        self.all_labels = QCheckBox("all labels")
        row.addWidget(self.label_spin, 1)
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
        layout.addLayout(form)

        # what most operations leave alone, folded so that several docks fit one screen
        self.target_spin = QSpinBox()
        self.target_spin.setRange(1, 2**31 - 1)
        self.overwrite = QCheckBox("may overwrite other labels")
        self.image_combo = LayerPicker(napari_viewer, Image, allow_none=True)
        hu = QHBoxLayout()
        self.low_spin = QDoubleSpinBox()
        self.high_spin = QDoubleSpinBox()
        for spin, value in ((self.low_spin, -100.0), (self.high_spin, 300.0)):
            spin.setRange(-1e6, 1e6)
            spin.setDecimals(1)
            spin.setValue(value)
            hu.addWidget(spin)
        self.restrict = QCheckBox("restrict changes to the intensity range")
        self.operand_combo = LayerPicker(napari_viewer, Labels, allow_none=True)
        self.operand_label = QSpinBox()
        self.operand_label.setRange(1, 2**31 - 1)
        self.options = collapsible("Options (target, intensity range, operand)", [
            ("Target label", self.target_spin), ("", self.overwrite),
            ("Image (intensities)", self.image_combo), ("Intensity range (HU)", hu),
            ("", self.restrict), ("Operand layer", self.operand_combo),
            ("Operand label", self.operand_label)])
        layout.addWidget(self.options)
        self.apply_button = QPushButton("Apply")
        self.apply_button.clicked.connect(lambda: self.run())
        layout.addWidget(self.apply_button)
        self.status = StatusLine("")
        layout.addWidget(self.status)
        self.jobs = JobRunner(self.status, busy=[self.apply_button])
        # the widget's signal carries the status text, whatever the outcome
        self.jobs.finished.connect(lambda state: state == "done" or self.finished.emit(self.status.text()))
        self._autosave_jobs = JobRunner(self.status)

        # class list
        box = QGroupBox("Classes")
        box_layout = QVBoxLayout(box)
        self.class_table = QTableWidget(0, 4)
        self.class_table.setHorizontalHeaderLabels(["id", "name", "colour", "visible"])
        self.class_table.setMinimumHeight(90)
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
        make_scrollable(self)  # the dock shrinks and scrolls when several are docked
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.autosave_now)

        self._on_operation_changed(self.operation_combo.currentText())
        self._on_layer_changed()

    def showEvent(self, event) -> None:  # noqa: D102 - Qt override
        super().showEvent(event)
        # napari's style sheet makes spin boxes taller after the form was first laid out;
        # the form kept their old height (squeezed, PyQt6): ask for the styled height
        for spin in self.findChildren(QAbstractSpinBox):
            spin.setMinimumHeight(spin.sizeHint().height())

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
            if not self.class_undo.busy and current is not None and layer_key(current) == key:
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
        self.class_undo.forget(key)
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
        setters = {"label": (self.label_spin.setValue, int), "all_labels": (self.all_labels.setChecked, bool),
                   "scope": (self.scope_combo.setCurrentText, str), "size": (self.size_spin.setValue, float),
                   "target": (self.target_spin.setValue, int), "overwrite": (self.overwrite.setChecked, bool),
                   "low": (self.low_spin.setValue, float), "high": (self.high_spin.setValue, float),
                   "restrict": (self.restrict.setChecked, bool),
                   "operand_label": (self.operand_label.setValue, int)}
        for key, value in params.items():
            if key in setters:
                setter, kind = setters[key]
                setter(kind(value))
        if params.get("image") is not None:
            self.image_combo.set_layer(params["image"])
        if params.get("operand") is not None:
            self.operand_combo.set_layer(params["operand"])

    def request(self) -> EditRequest:
        """The :class:`EditRequest` for the current field values."""
        layer = self.labels_layer()
        axis = index = None
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

    def _message(self, text: str, error=None) -> None:
        """Show ``text`` (or the error ``error``) and emit :attr:`finished` with what is shown."""
        if error is not None:
            self.status.error(error, notify=False)
        else:
            self.status.message(text)
        self.finished.emit(self.status.text())

    # ---------------------------------------------------------------- running
    def run(self):
        """Run the selected operation on the selected Labels layer (in a worker).

        Returns the worker (or None when the input is refused; the reason is shown).
        The result is written on the main thread as one undoable step.
        """
        layer = self.labels_layer()
        if layer is None:
            self._message("", error=InvalidInputError("no Labels layer: add or open labels first"))
            return None
        name = self.operation_combo.currentText()
        try:
            req = self.request()
            volume = layer_volume(layer)
            image_layer = self.image_combo.layer()
            image = None if image_layer is None else np.asarray(image_layer.data)
            if image is not None and image.shape != volume.shape:
                raise InvalidInputError(
                    f"image layer {image_layer.name!r} has shape {image.shape}, the labels {volume.shape}")
            other_layer = self.operand_combo.layer()
            other = None if other_layer is None else np.asarray(other_layer.data)
        except MedsegError as exc:
            self._message("", error=exc)
            return None
        before = volume.array.copy()  # the worker reads a snapshot, the user may keep painting
        spacing = volume.spacing_zyx

        def job(progress, cancel):
            return apply_edit(name, before, spacing, req, image=image, other=other)

        return self.jobs.start(job, done=lambda result: self._write_result(layer, name, req, before, result),
                               text=f"{name}: running...")

    def _write_result(self, layer, name: str, req: EditRequest, before: np.ndarray, result: np.ndarray) -> None:
        """Write an operation's result over the layer as it is now (main thread)."""
        if layer.data.shape != before.shape:
            raise InvalidInputError("the layer changed shape while the edit ran; nothing was applied")
        # apply only what the operation changed, on top of any edits made meanwhile
        changed = result != before
        new = np.asarray(layer.data).astype(np.result_type(layer.data.dtype, result.dtype), copy=True)
        new[changed] = result[changed]
        table = layer_table(layer)
        if name == "Erase label" and req.label is not None and req.label in table:
            # voxels and class entry go together, so they are undone together
            n = self.class_undo.change_voxels_and_table(
                layer, new, table.without(req.label), f"erase label {req.label} '{table.name_of(req.label)}'")
        else:
            n = apply_to_layer(layer, new)
            with self.class_undo.quiet():
                mark_edited(layer, class_ops.changed_ids(before, result))
        widened = "" if layer.data.dtype == before.dtype else \
            f"; the layer now stores {layer.data.dtype} to hold the new ids"
        self.refresh_classes()
        self._message(f"{name}: {n} voxel(s) changed (Ctrl+Z to undo){widened}")

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
                id_item.setFlags(id_item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                self.class_table.setItem(row, 0, id_item)
                self.class_table.setItem(row, 1, QTableWidgetItem(table.name_of(label_id)))
                r, g, b, _ = table.color_of(label_id)
                color_item = QTableWidgetItem("")
                color_item.setFlags(color_item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                color_item.setBackground(QColor(int(r * 255), int(g * 255), int(b * 255)))
                self.class_table.setItem(row, 2, color_item)
                vis = QTableWidgetItem("")
                vis.setFlags((vis.flags() | Qt.ItemFlag.ItemIsUserCheckable) & ~Qt.ItemFlag.ItemIsEditable)
                vis.setCheckState(Qt.CheckState.Unchecked if label_id in hidden else Qt.CheckState.Checked)
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
                self.set_class_visible(label_id, item.checkState() == Qt.CheckState.Checked)
        except MedsegError as exc:
            self._message("", error=exc)
            self.refresh_classes()

    def _on_class_double_clicked(self, row: int, column: int) -> None:
        if column != 2:
            return
        color = QColorDialog.getColor(parent=self)
        if color.isValid():
            self.set_class_color(self._row_id(row), (color.redF(), color.greenF(), color.blueF(), 1.0))

    def _layer_or_raise(self):
        layer = self.labels_layer()
        if layer is None:
            raise InvalidInputError("no Labels layer selected")
        return layer

    def _change_table(self, layer, table, description: str, hidden: Optional[set] = None) -> None:
        self.class_undo.change_table(layer, table, description, hidden)
        self.refresh_classes()

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
        self._change_table(layer, class_ops.recolor_class(layer_table(layer), label_id, color),
                           f"colour of label {label_id}")

    def set_class_visible(self, label_id: int, visible: bool) -> None:
        """Show or hide one class (its colour becomes transparent; data untouched; undoable)."""
        layer = self._layer_or_raise()
        hidden = hidden_labels(layer)
        (hidden.discard if visible else hidden.add)(int(label_id))
        self._change_table(layer, layer_table(layer), f"{'show' if visible else 'hide'} label {label_id}", hidden)

    def add_class(self, label_id: int, name: str, color=None) -> None:
        """Add a named class to the list (e.g. before painting it; undoable)."""
        layer = self._layer_or_raise()
        self._change_table(layer, layer_table(layer).with_label(int(label_id), name, color),
                           f"add label {int(label_id)} '{name}'")

    def relabel_class(self, old: int, new: int, merge: bool = False) -> int:
        """Give class ``old`` the id ``new`` (name, colour and provenance move too).

        Voxels and class list change as one step: :meth:`undo_class_change` reverts
        both, as does Ctrl+Z in the viewer while this is the newest class change.
        Returns the number of voxels changed.
        """
        layer = self._layer_or_raise()
        out, table = class_ops.relabel(np.asarray(layer.data), old, new, layer_table(layer), merge=merge)
        n = self.class_undo.change_voxels_and_table(layer, out, table, f"relabel {old} -> {new}")
        self.refresh_classes()
        self._message(f"label {old} -> {new}: {n} voxel(s) (Ctrl+Z or Undo class change restores ids and names)")
        return n

    def delete_class(self, label_id: int) -> int:
        """Erase a class: voxels to background and its entry leaves the list.

        Undone as one step with :meth:`undo_class_change` (voxels and entry). Returns
        the number of voxels erased.
        """
        layer = self._layer_or_raise()
        table = layer_table(layer)
        out, new_table = class_ops.delete_class(np.asarray(layer.data), label_id, table)
        n = self.class_undo.change_voxels_and_table(layer, out, new_table,
                                                    f"delete label {label_id} '{table.name_of(label_id)}'")
        self.refresh_classes()
        self._message(f"deleted label {label_id}: {n} voxel(s) erased (Ctrl+Z or Undo class change restores them)")
        return n

    # ---------------------------------------------------------- class history
    def _update_undo_buttons(self) -> None:
        layer = self.labels_layer()
        self.undo_class_button.setEnabled(self.class_undo.can_undo(layer))
        self.redo_class_button.setEnabled(self.class_undo.can_redo(layer))

    def _follow_napari(self, layer) -> None:
        """The layer's voxels were undone/redone in the viewer: the class list follows."""
        followed = self.class_undo.follow(layer)
        if followed is None:
            return
        try:
            self.refresh_classes()
            self._message(followed)
        except RuntimeError:  # the widget was closed; the layer's table is in step anyway
            pass

    def undo_class_change(self) -> bool:
        """Undo the newest class-list change of the selected layer (voxels of a relabel/delete too).

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
        verb = "undo" if undo else "redo"
        change = self.class_undo.step(self.labels_layer(), undo=undo)
        self.refresh_classes()
        if change is None:
            self._message(f"no class change to {verb}")
            return False
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
                self._message("", error=exc)

    def _ask_delete(self) -> None:
        row = self.class_table.currentRow()
        if row >= 0:
            try:
                self.delete_class(self._row_id(row))
            except MedsegError as exc:
                self._message("", error=exc)

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
        # in the background (a failure is shown in the status line); a save still running
        # means the next tick saves what changed meanwhile
        self._autosave_jobs.start(lambda progress, cancel: write(), done=lambda written: None, text="")
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
                self._message("", error=exc)
