"""Dock widget "Interactive segmentation": click inside a structure, get its 3D mask.

Thin by design: a :class:`~napari_medseg.prompts.base.PromptSession` (made by
:func:`napari_medseg.prompts.factory.make_session`) does the work in a worker
thread; this widget turns clicks into voxel indices, queues them, and writes each
result into the target Labels layer through napari's undoable path.

How it is wired
---------------
* **Clicks** go into a Points layer ("prompts") placed on the image's grid
  (:func:`~napari_medseg._widgets._layers.placement_of`: same scale, origin, affine and
  mm units). Each click's world position (physical millimetres, z, y, x) is converted
  to the image's voxel index with ``image_layer.world_to_data`` - exact for
  anisotropic spacing, oblique affines, any slicing orientation, 2D or 3D display.
  Green points are positive (inside), red negative (outside).
* **Identity.** Docked from the Plugins menu the widget gets napari's
  ``PublicOnlyProxy`` viewer, whose every attribute access is a new object: the
  session and the current object are keyed on the layers' ``unique_id``
  (:func:`~napari_medseg._widgets._layers.layer_key`), never on ``id()`` or ``is``.
* **Writing**: an :class:`~napari_medseg.prompts.compositing.ObjectCompositor` says
  which voxels change (voxels of other labels are never overwritten unless "allow
  overwriting other labels" is ticked; when the object shrinks, voxels go back to
  what they were when the object was started); the widget writes them with
  ``Labels.data_setitem``: each interaction is one undo item of the Labels layer. A
  label id beyond the layer's dtype (300 on uint8) widens the layer first, losslessly.
* **Names and colours.** Each object is an entry of the layer's class table (name
  from the Name field, else "object <id>"; a distinct colour per id), stored like
  every labels layer of the plugin (metadata, ``features``, ``DirectLabelColormap``),
  so Statistics, Export and Label tools show its name.
* **Undo.** ``Ctrl+Z`` with the prompts layer selected (and the "Undo click" button)
  undoes the last *click*: the prompt is removed and the previous mask restored.
  With the Labels layer selected, ``Ctrl+Z`` is napari's own undo, which reverts the
  last write (a click's result) without changing the session's prompts.
* **Keys** (prompts layer selected): ``T`` toggle positive/negative, ``M`` next object
  (next free label id), ``R`` reset the current object, ``Ctrl+Z`` undo click.
* **Box**: draw a rectangle in the "prompt box" Shapes layer on the current slice and
  press "Use box": the box covers the rectangle in-plane and ``box depth`` mm across
  the slice direction (or draw it in 3D: the corners' full extent is used).
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..errors import Cancelled, InvalidInputError, MedsegError
from ..progress import CancelToken
from ._layers import layer_key, layer_volume, placement_of

log = logging.getLogger(__name__)

POSITIVE_COLOR = np.array([0.1, 0.9, 0.2, 1.0])
NEGATIVE_COLOR = np.array([0.95, 0.15, 0.15, 1.0])
PROMPTS_LAYER = "prompts"
BOX_LAYER = "prompt box"


class InteractiveSegmentationWidget(QWidget):
    """Point/box-prompted 3D segmentation into a Labels layer.

    Public methods (used by tests and scripts): :meth:`add_point_world`,
    :meth:`add_point_voxel`, :meth:`add_box_world`, :meth:`undo`, :meth:`reset`,
    :meth:`next_object`, :meth:`refine_existing`, :meth:`cancel`; :attr:`busy` says
    whether work is queued or running.
    """

    #: emitted (on the main thread) after each interaction was written or failed
    finished = Signal()

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._session = None
        self._session_key: Optional[tuple] = None
        self._queue: list = []
        self._worker = None
        self._cancel: Optional[CancelToken] = None
        self._records: list = []  # (zyx voxel, positive) per point in the prompts layer
        self._compositor = None  # ObjectCompositor of the current object, None between objects
        self._object_layer: Optional[str] = None  # layer_key of the labels layer it is drawn in
        self.last_report: str = ""  # the plausibility report of the last click, if any
        self._filled_name = ""  # the Name field's text when it was filled in from the class table
        self._adding = False
        self.last_error: str = ""
        self._build_ui()
        self._refresh_layers()
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        from ..prompts.factory import backend_statuses

        form = QFormLayout()
        self.image_combo = QComboBox()
        self.labels_combo = QComboBox()
        self.new_labels_btn = QPushButton("New")
        self.new_labels_btn.setToolTip("create a Labels layer on the image's grid")
        self.new_labels_btn.clicked.connect(lambda: self.create_labels_layer())
        row = QHBoxLayout()
        row.addWidget(self.labels_combo, 1)
        row.addWidget(self.new_labels_btn)
        form.addRow("Image", self.image_combo)
        form.addRow("Labels", row)
        self.image_combo.currentIndexChanged.connect(self._on_target_changed)
        self.labels_combo.currentIndexChanged.connect(self._on_target_changed)

        self.backend_combo = QComboBox()
        for status in backend_statuses():
            text = status.name if status.ready else f"{status.name} ({'not installed' if not status.available else 'needs weights'})"
            self.backend_combo.addItem(text, status.name)
            index = self.backend_combo.count() - 1
            self.backend_combo.setItemData(index, status.reason or status.description, 3)  # tooltip
            if not status.available:
                self.backend_combo.model().item(index).setEnabled(False)
        form.addRow("Backend", self.backend_combo)
        self.weights_edit = QLineEdit()
        self.weights_edit.setPlaceholderText("checkpoint (optional; default: installed weights)")
        form.addRow("Weights", self.weights_edit)

        self.label_spin = QSpinBox()
        self.label_spin.setRange(1, 65535)
        self.label_spin.setValue(1)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("object name (e.g. liver, lesion 1)")
        form.addRow("Label id", self.label_spin)
        form.addRow("Name", self.name_edit)
        self.label_spin.valueChanged.connect(self._on_label_id_changed)
        self.name_edit.editingFinished.connect(lambda: self.rename_object())

        self.positive_btn = QPushButton("Positive (inside)")
        self.positive_btn.setCheckable(True)
        self.positive_btn.setChecked(True)
        self.negative_btn = QPushButton("Negative (outside)")
        self.negative_btn.setCheckable(True)
        self.positive_btn.clicked.connect(lambda: self.set_positive(True))
        self.negative_btn.clicked.connect(lambda: self.set_positive(False))
        modes = QHBoxLayout()
        modes.addWidget(self.positive_btn)
        modes.addWidget(self.negative_btn)

        self.start_btn = QPushButton("Place clicks")
        self.start_btn.setToolTip("select the prompts layer in add mode; click inside the structure")
        self.start_btn.clicked.connect(lambda: self.activate())
        self.undo_btn = QPushButton("Undo click")
        self.undo_btn.clicked.connect(lambda: self.undo())
        self.reset_btn = QPushButton("Reset object (R)")
        self.reset_btn.clicked.connect(lambda: self.reset())
        self.next_btn = QPushButton("Next object (M)")
        self.next_btn.clicked.connect(lambda: self.next_object())
        actions = QHBoxLayout()
        for b in (self.undo_btn, self.reset_btn, self.next_btn):
            actions.addWidget(b)

        self.box_depth = QDoubleSpinBox()
        self.box_depth.setRange(1.0, 1000.0)
        self.box_depth.setValue(40.0)
        self.box_depth.setSuffix(" mm")
        self.box_btn = QPushButton("Use box")
        self.box_btn.setToolTip(f"use the last rectangle of the '{BOX_LAYER}' Shapes layer as a box prompt")
        self.box_btn.clicked.connect(lambda: self.use_shapes_box())
        self.draw_box_btn = QPushButton("Draw box")
        self.draw_box_btn.clicked.connect(lambda: self.activate_box())
        box_row = QHBoxLayout()
        box_row.addWidget(self.draw_box_btn)
        box_row.addWidget(QLabel("depth"))
        box_row.addWidget(self.box_depth)
        box_row.addWidget(self.box_btn)

        self.refine_btn = QPushButton("Refine existing label")
        self.refine_btn.setToolTip("start from the current voxels of this label id; clicks then add or remove")
        self.refine_btn.clicked.connect(lambda: self.refine_existing())
        self.overwrite_check = QCheckBox("Allow overwriting other labels")
        self.overwrite_check.setChecked(False)

        self.status = QLabel("Pick an image, then click inside a structure.")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setVisible(False)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(lambda: self.cancel())

        layout = QVBoxLayout()
        layout.addLayout(form)
        layout.addLayout(modes)
        layout.addWidget(self.start_btn)
        layout.addLayout(actions)
        layout.addLayout(box_row)
        layout.addWidget(self.refine_btn)
        layout.addWidget(self.overwrite_check)
        layout.addWidget(self.progress)
        layout.addWidget(self.cancel_btn)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.setLayout(layout)

    def _refresh_layers(self, event=None) -> None:
        from napari.layers import Image, Labels

        for combo, kind in ((self.image_combo, Image), (self.labels_combo, Labels)):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            for layer in self.viewer.layers:
                if isinstance(layer, kind) and layer.ndim == 3:
                    combo.addItem(layer.name)
            index = combo.findText(current)
            if index >= 0:
                combo.setCurrentIndex(index)
            combo.blockSignals(False)

    # ------------------------------------------------------------------ layers
    @property
    def image_layer(self):
        name = self.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise InvalidInputError("no 3D image layer: open a CT/MR volume first")
        return self.viewer.layers[name]

    @property
    def labels_layer(self):
        """The target Labels layer (a new one on the image's grid when none is picked)."""
        layer = self._labels_layer_or_none()
        return self.create_labels_layer() if layer is None else layer

    def _labels_layer_or_none(self):
        name = self.labels_combo.currentText()
        if not name or name not in self.viewer.layers:
            return None
        return self.viewer.layers[name]

    def create_labels_layer(self, name: str = "segmentation"):
        """A new empty Labels layer on the image's grid (selected as the target)."""
        from ..io.label_table import LabelTable
        from ..io.layer_data import labels_layer_tuple

        volume = layer_volume(self.image_layer)
        data, kwargs, _ = labels_layer_tuple(
            np.zeros(volume.shape, dtype=np.uint8), volume, LabelTable.from_names({}), name=name
        )
        layer = self.viewer.add_labels(data, **kwargs)
        self._refresh_layers()
        self.labels_combo.setCurrentText(layer.name)
        return layer

    def _prompts_layer(self):
        if PROMPTS_LAYER in self.viewer.layers:
            return self.viewer.layers[PROMPTS_LAYER]
        # On the image's grid and units (no "inconsistent units", the slider keeps the
        # image's slice steps); clicks are read back through the layer's own transform.
        placement = placement_of(self.image_layer)
        size = 6.0 / float(np.mean(np.abs(placement["scale"][-3:])))  # about 6 mm across
        layer = self.viewer.add_points(
            np.empty((0, 3)), ndim=3, name=PROMPTS_LAYER, size=size, border_width=0.1,
            face_color=POSITIVE_COLOR, border_color="white", **placement,
        )
        layer.events.data.connect(self._on_points_changed)
        layer.bind_key("t", lambda _layer: self.toggle_mode(), overwrite=True)
        layer.bind_key("m", lambda _layer: self.next_object(), overwrite=True)
        layer.bind_key("r", lambda _layer: self.reset(), overwrite=True)
        layer.bind_key("Control-z", lambda _layer: self.undo(), overwrite=True)
        return layer

    def activate(self) -> None:
        """Select the prompts layer in add mode, ready for clicks."""
        layer = self._prompts_layer()
        self.viewer.layers.selection.active = layer
        layer.mode = "add"
        self._show(f"{'Positive' if self.positive else 'Negative'} clicks: T toggles, M next object, "
                   "R reset, Ctrl+Z undo click")

    def activate_box(self) -> None:
        """Select (creating it if needed) the box Shapes layer in rectangle mode."""
        if BOX_LAYER not in self.viewer.layers:
            self.viewer.add_shapes(ndim=3, name=BOX_LAYER, edge_color="yellow", face_color="transparent",
                                   edge_width=1.0, **placement_of(self.image_layer))
        layer = self.viewer.layers[BOX_LAYER]
        self.viewer.layers.selection.active = layer
        layer.mode = "add_rectangle"

    # ------------------------------------------------------------------ state
    @property
    def busy(self) -> bool:
        """True while an interaction is queued or running."""
        return self._worker is not None or bool(self._queue)

    @property
    def positive(self) -> bool:
        return self.positive_btn.isChecked()

    def set_positive(self, positive: bool) -> None:
        self.positive_btn.setChecked(bool(positive))
        self.negative_btn.setChecked(not positive)
        if PROMPTS_LAYER in self.viewer.layers:
            layer = self.viewer.layers[PROMPTS_LAYER]
            # current_face_color also recolours selected points: deselect first
            layer.selected_data = set()
            layer.current_face_color = POSITIVE_COLOR if positive else NEGATIVE_COLOR

    def toggle_mode(self) -> None:
        """Switch between positive and negative clicks (key ``T``)."""
        self.set_positive(not self.positive)
        self._show(f"{'positive' if self.positive else 'negative'} clicks")

    @property
    def label_id(self) -> int:
        return int(self.label_spin.value())

    def _show(self, text: str) -> None:
        self.status.setText(text)

    def _error(self, text: str) -> None:
        self.last_error = text
        self.status.setText(f"<b>Error:</b> {text}")
        try:
            from napari.utils.notifications import show_error

            show_error(text)
        except Exception:  # pragma: no cover - notifications are best effort
            pass

    # ------------------------------------------------------------------ prompts
    def world_to_voxel(self, world: Sequence[float]) -> tuple:
        """World coordinate (z, y, x mm, any viewer dims) -> the image's voxel index."""
        layer = self.image_layer
        world = np.asarray(world, dtype=float)
        if world.shape[-1] != self.viewer.dims.ndim and self.viewer.dims.ndim > world.shape[-1]:
            full = np.asarray(self.viewer.dims.point, dtype=float)
            full[-world.shape[-1]:] = world
            world = full
        data = np.asarray(layer.world_to_data(world), dtype=float)[-3:]
        shape = layer.data.shape[-3:]
        index = np.round(data)
        if np.any(index < -0.5) or np.any(index > np.asarray(shape) - 0.5):
            raise InvalidInputError(
                f"the click at {tuple(round(float(w), 1) for w in world[-3:])} mm lies outside the image "
                f"'{layer.name}' (voxel {tuple(round(float(v), 1) for v in data)}, shape {tuple(shape)})"
            )
        return tuple(int(min(max(v, 0), n - 1)) for v, n in zip(index, shape))

    def add_point_world(self, world: Sequence[float], positive: Optional[bool] = None) -> None:
        """Add a click at a world coordinate (as napari gives it) and segment."""
        positive = self.positive if positive is None else bool(positive)
        try:
            zyx = self.world_to_voxel(world)
        except MedsegError as exc:
            self._error(str(exc))
            return
        layer = self._prompts_layer()
        self._adding = True
        try:
            layer.selected_data = set()
            layer.current_face_color = POSITIVE_COLOR if positive else NEGATIVE_COLOR
            layer.add(_world_to_layer(layer, np.asarray(world, dtype=float)[-3:]))
        finally:
            self._adding = False
            layer.selected_data = set()
            layer.current_face_color = POSITIVE_COLOR if self.positive else NEGATIVE_COLOR
        self._records.append((zyx, positive))
        self._enqueue(("point", zyx, positive))

    def add_point_voxel(self, zyx: Sequence[float], positive: Optional[bool] = None) -> None:
        """Add a click at a voxel index of the image (z, y, x) and segment."""
        world = np.asarray(self.image_layer.data_to_world(np.asarray(zyx, dtype=float)), dtype=float)
        self.add_point_world(world[-3:], positive)

    def _on_points_changed(self, event) -> None:
        """A point placed with the mouse in the prompts layer: segment with it."""
        if self._adding:
            return
        action = str(getattr(event, "action", ""))
        if "added" not in action.lower():
            if "removed" in action.lower() and len(event.source.data) < len(self._records):
                self._show("points were deleted by hand; use Undo click / Reset to change prompts")
            return
        layer = event.source
        for i in range(len(self._records), len(layer.data)):
            world = np.asarray(layer.data_to_world(np.asarray(layer.data[i], dtype=float)), dtype=float)
            positive = self.positive
            try:
                zyx = self.world_to_voxel(world)
            except MedsegError as exc:
                self._error(str(exc))
                self._remove_last_points(len(layer.data) - i)
                return
            self._records.append((zyx, positive))
            self._enqueue(("point", zyx, positive))

    def add_box_world(self, corner0: Sequence[float], corner1: Sequence[float]) -> None:
        """Box prompt from two world corners; a flat box gets ``box depth`` mm across."""
        try:
            a = np.asarray(self.world_to_voxel(corner0), dtype=float)
            b = np.asarray(self.world_to_voxel(corner1), dtype=float)
        except MedsegError as exc:
            self._error(str(exc))
            return
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        volume_shape = np.asarray(self.image_layer.data.shape[-3:])
        spacing = self._spacing_zyx()
        for axis in range(3):
            if hi[axis] - lo[axis] < 1:
                half = max(1, int(round(self.box_depth.value() / 2.0 / spacing[axis])))
                lo[axis] = max(0, lo[axis] - half)
                hi[axis] = min(volume_shape[axis] - 1, hi[axis] + half)
        self._enqueue(("box", tuple(int(v) for v in lo), tuple(int(v) for v in hi)))

    def use_shapes_box(self) -> None:
        """Use the last rectangle drawn in the box Shapes layer."""
        if BOX_LAYER not in self.viewer.layers or not len(self.viewer.layers[BOX_LAYER].data):
            self._error(f"draw a rectangle in the '{BOX_LAYER}' layer first (Draw box)")
            return
        layer = self.viewer.layers[BOX_LAYER]
        vertices = np.asarray(layer.data[-1], dtype=float)
        world = np.asarray([layer.data_to_world(v) for v in vertices])
        self.add_box_world(world.min(axis=0), world.max(axis=0))

    def _spacing_zyx(self) -> np.ndarray:
        try:
            return np.asarray(layer_volume(self.image_layer).spacing_zyx, dtype=float)
        except MedsegError:
            return np.abs(np.asarray(self.image_layer.scale[-3:], dtype=float))

    # ------------------------------------------------------------------ actions
    def undo(self) -> None:
        """Undo the last click of the current object (``Ctrl+Z`` on the prompts layer)."""
        self._enqueue(("undo",))

    def reset(self) -> None:
        """Forget the current object's prompts and remove its voxels (key ``R``)."""
        self._enqueue(("reset",))

    def refine_existing(self) -> None:
        """Start from the current voxels of the label id: clicks then add or remove."""
        self._enqueue(("refine",))

    def next_object(self) -> None:
        """Finish the current object; the next clicks go to the next free label id (``M``)."""
        if self.busy:
            self._enqueue(("next",))
            return
        self._next_object_now()

    def _next_object_now(self) -> None:
        from ..editing.classes import next_free_id
        from ._layers import layer_table

        labels = self.labels_layer
        new = next_free_id(np.asarray(labels.data), layer_table(labels))
        if new > self.label_spin.maximum():
            self._error(f"no free label id left: '{labels.name}' already uses ids up to {new - 1}")
            return
        self._clear_prompts()
        self.name_edit.clear()  # the typed name was the finished object's
        self.label_spin.setValue(int(new))
        self._show(f"next object: label {new} (new colour; type a name before the first click)")

    def _on_label_id_changed(self, value: int) -> None:
        """Another id: the current object is finished; the Name field shows the id's name."""
        if self._compositor is not None and int(value) != self._compositor.label_id and not self.busy:
            self._clear_prompts()
        layer = self._labels_layer_or_none()
        name = ""
        if layer is not None:
            from ._layers import layer_table

            table = layer_table(layer)
            name = table.name_of(int(value)) if int(value) in table.ids else ""
        # a name typed for an id without one is kept; one filled in from the table is replaced
        if name or self.name_edit.text() == self._filled_name:
            self.name_edit.setText(name)
        self._filled_name = name

    def _on_target_changed(self, *_) -> None:
        """Another image or labels layer picked: the current object is finished."""
        if self._compositor is not None and not self.busy:
            self._clear_prompts()

    def object_name(self, label_id: Optional[int] = None) -> str:
        """The name the object gets: the Name field, else its table name, else ``object <id>``."""
        label_id = self.label_id if label_id is None else int(label_id)
        typed = self.name_edit.text().strip()
        if typed:
            return typed
        layer = self._labels_layer_or_none()
        if layer is not None:
            from ._layers import layer_table

            table = layer_table(layer)
            if label_id in table.ids:
                return table.name_of(label_id)
        return f"object {label_id}"

    def rename_object(self) -> None:
        """Give the current label id the Name field's text in the layer's class table."""
        layer = self._labels_layer_or_none()
        typed = self.name_edit.text().strip()
        if layer is None or not typed:
            return
        from ._layers import layer_table

        if self.label_id in layer_table(layer).ids or (np.asarray(layer.data) == self.label_id).any():
            self._name_in_table(layer, self.label_id)

    def _name_in_table(self, layer, label_id: int) -> None:
        """Make sure ``label_id`` is in the layer's class table: name, colour and provenance.

        Provenance (what DICOM-SEG writes as the segment's algorithm type): a new object
        is ``SEMIAUTOMATIC`` by the prompt backend; a model's (``AUTOMATIC``) label
        refined with clicks becomes ``SEMIAUTOMATIC`` keeping the model's name.
        """
        from ._layers import layer_table, set_layer_table

        table = layer_table(layer)
        # with_label keeps a listed id's colour and gives a new id its own distinct one
        new = table.with_label(label_id, self.object_name(label_id))
        kind = new.info_of(label_id).algorithm_type
        if kind == "AUTOMATIC":
            new = new.marked_edited([label_id])
        elif kind is None:
            backend = self.backend_combo.currentData() or "region-growing"
            new = new.with_provenance("SEMIAUTOMATIC", backend, ids=[label_id])
        if new.to_dict() != table.to_dict():
            set_layer_table(layer, new)

    def _clear_prompts(self) -> None:
        if self._session is not None:
            self._session.reset()
        self._compositor = None
        self._object_layer = None
        self._records.clear()
        if PROMPTS_LAYER in self.viewer.layers:
            layer = self.viewer.layers[PROMPTS_LAYER]
            self._adding = True
            try:
                layer.selected_data = set()
                layer.data = np.empty((0, 3))
            finally:
                self._adding = False

    def _remove_last_points(self, n: int = 1) -> None:
        if PROMPTS_LAYER not in self.viewer.layers or n <= 0:
            return
        layer = self.viewer.layers[PROMPTS_LAYER]
        self._adding = True
        try:
            layer.selected_data = set()
            layer.data = np.asarray(layer.data)[: max(0, len(layer.data) - n)]
        finally:
            self._adding = False

    def cancel(self) -> None:
        """Stop the running step and drop queued clicks; layers stay as they were."""
        dropped = [a for a in self._queue if a[0] == "point"]
        self._queue.clear()
        if dropped:
            self._remove_last_points(len(dropped))
            del self._records[len(self._records) - len(dropped):]
        if self._cancel is not None:
            self._cancel.cancel()
        if self._worker is not None:
            try:
                self._worker.quit()
            except Exception:  # pragma: no cover
                pass

    # ------------------------------------------------------------------ engine
    def _enqueue(self, action: tuple) -> None:
        self._queue.append(action)
        self._pump()

    def _session_for(self):
        """(key, maker) of the session needed for the current image + backend."""
        image = self.image_layer
        backend = self.backend_combo.currentData() or "region-growing"
        weights = self.weights_edit.text().strip() or None
        # unique_id, not id(): through the plugin's proxy viewer id() changes on every access
        return (layer_key(image), backend, weights), (image, backend, weights)

    def _pump(self) -> None:
        if self._worker is not None or not self._queue:
            return
        action = self._queue.pop(0)
        if action[0] == "next":
            self._next_object_now()
            self._pump()
            return
        try:
            key, (image, backend, weights) = self._session_for()
            labels = self.labels_layer
            if labels.data.shape[-3:] != image.data.shape[-3:]:
                raise InvalidInputError(
                    f"the labels layer '{labels.name}' {labels.data.shape} is not on the grid of the image "
                    f"'{image.name}' {image.data.shape}; pick matching layers or press New")
            needs_volume = self._session is None or self._session_key != key
            volume = layer_volume(image) if needs_volume else None
            initial = None
            if action[0] == "refine":
                initial = np.asarray(labels.data) == self.label_id
                if not initial.any():
                    raise InvalidInputError(f"label {self.label_id} has no voxels in '{labels.name}' to refine")
        except MedsegError as exc:
            self._fail(action, str(exc))
            return
        from napari.qt.threading import create_worker

        self._cancel = CancelToken()
        cancel = self._cancel
        session = self._session if not needs_volume else None

        def work():
            # superqt drops a RuntimeError raised in a worker (no errored/finished
            # signal), and torch reports CUDA out-of-memory as one: turn every
            # unexpected failure into a MedsegError the widget can show.
            try:
                return (yield from steps())
            except MedsegError:
                raise
            except Exception as exc:
                log.exception("interactive segmentation (%s) failed", backend)
                raise MedsegError(
                    f"the '{backend}' backend failed ({type(exc).__name__}: {exc}); "
                    "see the log for details"
                ) from exc

        def steps():
            nonlocal session
            from ..prompts.factory import make_session

            if session is None:
                yield (0.0, f"preparing {backend}")
                session = make_session(backend, weights=weights)
                session.set_volume(volume, progress=None, cancel=cancel)
            if cancel.is_set():
                raise Cancelled("cancelled by the user; nothing was changed")
            yield (0.5, "segmenting")
            kind = action[0]
            if kind == "point":
                update = session.add_point(action[1], positive=action[2])
            elif kind == "box":
                update = session.add_box(action[1], action[2])
            elif kind == "undo":
                update = session.undo() if session.can_undo else None
            elif kind == "reset":
                session.reset()
                update = None  # the compositor knows what the object's voxels were before it
            elif kind == "refine":
                session.reset()
                update = session.set_initial_mask(initial)
            else:  # pragma: no cover
                raise InvalidInputError(f"unknown action {kind}")
            if cancel.is_set():
                # Keep the session in step with the layers, which stay untouched.
                if kind in ("point", "box", "refine") and session.can_undo:
                    session.undo()
                raise Cancelled("cancelled by the user; nothing was changed")
            report = _plausibility(session) if kind in ("point", "box") else None
            return session, update, report

        worker = create_worker(work, _start_thread=False, _ignore_errors=True)
        self._worker = worker
        self._set_busy(True, "segmenting..." if not needs_volume else f"preparing {backend}...")
        worker.yielded.connect(lambda value: self._show(value[1]))
        worker.returned.connect(lambda result: self._done(action, key, result))
        worker.errored.connect(lambda exc: self._failed(action, exc))
        worker.aborted.connect(lambda: self._fail(action, "cancelled by the user; nothing was changed"))
        worker.finished.connect(self._worker_finished)
        worker.start()

    def _set_busy(self, busy: bool, text: str = "") -> None:
        self.progress.setVisible(busy)
        self.cancel_btn.setEnabled(busy)
        for w in (self.backend_combo, self.image_combo, self.labels_combo, self.refine_btn):
            w.setEnabled(not busy)
        if text:
            self._show(text)

    def _worker_finished(self) -> None:
        self._worker = None
        self._cancel = None
        self._set_busy(False)
        self.finished.emit()
        self._pump()

    def _done(self, action: tuple, key: tuple, result) -> None:
        session, update, report = result
        if session is not self._session:  # a core object, not a layer proxy: identity is stable
            self._session = session
            self._session_key = key
        kind = action[0]
        try:
            if kind == "reset":
                self._remove_object()
                self._records.clear()
                self._clear_prompts()
                self._show(f"label {self.label_id}: reset")
                return
            if kind == "refine":
                self._start_object(refine=True)
            elif kind in ("point", "box") and self._compositor is None:
                self._start_object(refine=False)
            if update is None:
                self._show("nothing to undo")
                return
            if kind == "undo":
                if self._records:
                    self._records.pop()
                    self._remove_last_points(1)
            note = self._write(update)
            n = int(np.count_nonzero(update.mask))
            label = self._compositor.label_id if self._compositor is not None else self.label_id
            text = f"label {label} '{self.object_name(label)}': {n} voxels ({update.timing_s * 1000:.0f} ms)"
            self.last_report = report.text() if report is not None else ""
            if report is not None:
                lines = report.text().splitlines()
                text += "\n" + lines[0] + "".join(f"\n<b>{line}</b>" for line in lines[1:])
            if note:
                text += "\n" + note
            self._show(text.replace("\n", "<br>"))
        except MedsegError as exc:
            self._error(str(exc))

    def _failed(self, action: tuple, exc: BaseException) -> None:
        if isinstance(exc, MedsegError):
            text = str(exc)
        else:
            log.exception("interactive segmentation failed", exc_info=exc)
            text = f"the backend failed ({type(exc).__name__}: {exc}); see the log for details"
        self._fail(action, text)

    def _fail(self, action: tuple, text: str) -> None:
        if action[0] == "point" and self._records:
            # The click was not applied: take its point back out.
            self._records.pop()
            self._remove_last_points(1)
        if "cancelled" in text.lower():
            self._show(text)
        else:
            self._error(text)
        if self._worker is None:
            self.finished.emit()
            self._pump()

    # ------------------------------------------------------------------ writing
    def _start_object(self, refine: bool) -> None:
        """A new object: its compositor remembers the labels as they are before its first write."""
        from ..prompts.compositing import ObjectCompositor

        self._compositor = ObjectCompositor(self.label_id, refine=refine)
        self._object_layer = layer_key(self.labels_layer)

    def _write(self, update) -> str:
        """Write the object's mask into the Labels layer (undoable, changed box only).

        Returns a note for the status line (e.g. that the layer was widened), or "".
        """
        from ._layers import widen_for

        layer = self.labels_layer
        if self._compositor is None or self._object_layer != layer_key(layer):
            self._start_object(refine=False)  # the target layer changed: a new object there
        label = self._compositor.label_id
        note = widen_for(layer, label) or ""  # 300 on uint8: widen (lossless), never overflow
        self._name_in_table(layer, label)
        write = self._compositor.compose(layer.data, update.mask, tuple(update.changed),
                                         allow_overwrite=self.overwrite_check.isChecked())
        if write.count:
            with layer.block_history():  # one interaction = one Ctrl+Z on the Labels layer
                layer.data_setitem(write.index, write.values)
        return note

    def _remove_object(self) -> None:
        """Reset: the object's voxels go back to what they were before it started."""
        layer = self._labels_layer_or_none()
        if self._compositor is None or layer is None or self._object_layer != layer_key(layer):
            return
        write = self._compositor.remove(layer.data)
        if write.count:
            with layer.block_history():
                layer.data_setitem(write.index, write.values)


def _world_to_layer(layer, world: np.ndarray) -> np.ndarray:
    """World (mm) -> ``layer``'s data coordinates (what ``Points.add`` takes)."""
    return np.asarray(layer.world_to_data(world), dtype=float)[-3:]


def _plausibility(session):
    """The click report (clicked value/position, warnings) for the session's first positive click.

    ``None`` when there is no positive click or the report is not available.
    """
    points = session.prompts.positive_points
    if not points:
        return None
    try:
        from ..prompts.plausibility import click_report
    except ImportError:  # pragma: no cover - the module is part of the package
        return None
    try:
        return click_report(session.volume, points[0], session.mask)
    except MedsegError as exc:
        log.warning("no plausibility report: %s", exc)
        return None
