"""Dock widget "Interactive segmentation": click inside a structure, get its 3D mask.

Wiring only: a :class:`~napari_medseg.prompts.base.PromptSession` (made by
:func:`napari_medseg.prompts.factory.make_session`) does the work, one
:class:`~napari_medseg.prompts.interaction.Interaction` at a time
(:func:`~napari_medseg.prompts.interaction.run_interaction`), in the widget's
:class:`~._jobs.JobRunner`; this widget turns clicks into voxel indices (the image's
:meth:`Volume.voxel_of <napari_medseg.io.volume.Volume.voxel_of>`), queues interactions,
and writes each result into the target Labels layer through napari's undoable path.

How it is wired
---------------
* **Clicks** go into a Points layer ("prompts") placed on the image's grid
  (:func:`~napari_medseg._widgets._layers.placement_of`: same scale, origin, affine and
  mm units). Each click's world position (physical millimetres, z, y, x) is converted
  to the image's data coordinates with ``image_layer.world_to_data`` and to its voxel
  with ``Volume.voxel_of`` - exact for anisotropic spacing, oblique affines, any
  slicing orientation, 2D or 3D display.
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
* **Where it runs** (Options): this computer, or a ``medseg serve`` machine (URL and
  token file, remembered between napari sessions). With a server the worker builds a
  :class:`~napari_medseg.serve.client.RemotePromptSession`
  (:func:`napari_medseg.serve.settings.prompt_session`): the image is uploaded once,
  each click sends a few bytes and gets the changed box back; everything after that
  (compositing, undo, next object, click report) is the same. A lost server is an error
  in the status line; the layers stay as they were.
* **nnInteractive on its own server**: the ``nninteractive-remote`` backend shows a
  Server field under Backend (the URL of a running ``nninteractive-server``; its API key
  comes from ``NN_INTERACTIVE_API_KEY``); the worker builds a
  :class:`~napari_medseg.prompts.nninteractive_remote.NnInteractiveRemoteSession`, which
  runs there whatever "Where it runs" says.
* **Bias-field correction (N4, MR)**: an option under Backend, off by default, offered
  for an MR image with the weights-free backend (disabled with the reason otherwise); the
  session then grows on :func:`~napari_medseg.inference.bias_field.correct_bias_field`'s
  cached output (``prompt_session(..., bias_correct=True)``).
* **CPU runtime** (Options; network backends only): what runs the backend's image encoder
  on this computer's CPU (``auto``, ``openvino``, ``torch``; a change starts a new
  session); the status line after a click says what ran it and why not OpenVINO after a
  fallback (:func:`~napari_medseg.inference.runtimes.describe_runtime`).
* **Box**: draw a rectangle in the "prompt box" Shapes layer on the current slice and
  press "Use box": the box covers the rectangle in-plane and ``box depth`` mm across
  the slice direction (``Volume.box_from_corners``; drawn in 3D, the corners' full
  extent is used).
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

from ..errors import InvalidInputError, MedsegError
from ..prompts.interaction import Interaction, object_table, run_interaction
from ._bias import BiasCorrectionOption
from ._jobs import JobRunner, StatusLine
from ._layers import (
    LayerPicker,
    layer_key,
    layer_table,
    layer_volume,
    placement_of,
    set_layer_table,
    widen_for,
    write_voxels,
)
from ._layout import collapsible, make_scrollable, runtime_combo
from ._server import ServerFields

log = logging.getLogger(__name__)

POSITIVE_COLOR = np.array([0.1, 0.9, 0.2, 1.0])
NEGATIVE_COLOR = np.array([0.95, 0.15, 0.15, 1.0])
PROMPTS_LAYER = "prompts"
BOX_LAYER = "prompt box"
DEFAULT_BACKEND = "region-growing"


def _is_3d(layer) -> bool:
    return layer.ndim == 3


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
        self._queue: list = []  # Interaction objects, or callables run on the main thread in turn
        self._records: list = []  # (zyx voxel, positive) per point in the prompts layer
        self._compositor = None  # ObjectCompositor of the current object, None between objects
        self._object_layer: Optional[str] = None  # layer_key of the labels layer it is drawn in
        self.last_report: str = ""  # the plausibility report of the last click, if any
        self._filled_name = ""  # the Name field's text when it was filled in from the class table
        self._adding = False
        self._retired: list = []  # replaced sessions, freed (on their server too) by the next job
        # the session's prompts are to be reset by the next job: a remote session's reset is a
        # request to its server, which never runs on the main thread
        self._stale = False
        self._build_ui()
        self.jobs = JobRunner(self.status, progress_bar=self.progress, cancel_button=self.cancel_btn,
                              busy=[self.backend_combo, self.image_combo, self.labels_combo, self.refine_btn])
        self.cancel_btn.clicked.connect(lambda: self.cancel())
        self.jobs.finished.connect(self._job_finished)

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        from napari.layers import Image, Labels

        from ..prompts.factory import backend_statuses

        form = QFormLayout()
        self.image_combo = LayerPicker(self.viewer, Image, predicate=_is_3d)
        self.labels_combo = LayerPicker(self.viewer, Labels, predicate=_is_3d)
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
        # the URL of an nninteractive-server: one row, shown only for a backend that needs it
        self.nni_server_edit = QLineEdit()
        self.nni_server_edit.setPlaceholderText("http://gpu-box:1527 (nninteractive-server)")
        self.nni_server_edit.setToolTip("URL of a running nninteractive-server; its API key, if "
                                        "any, from the NN_INTERACTIVE_API_KEY environment variable")
        self.nni_server_row = QWidget()
        row_layout = QHBoxLayout(self.nni_server_row)
        row_layout.setContentsMargins(0, 0, 0, 0)
        row_layout.addWidget(QLabel("Server"))
        row_layout.addWidget(self.nni_server_edit, 1)
        form.addRow(self.nni_server_row)
        self.backend_combo.currentIndexChanged.connect(self._on_backend_changed)
        self._on_backend_changed()
        # MR only, weights-free backend only: region growing on the N4-corrected intensities
        self.bias_check = BiasCorrectionOption("growing regions from the clicks")
        form.addRow("", self.bias_check)
        self.image_combo.currentIndexChanged.connect(self._update_bias_option)
        self.backend_combo.currentIndexChanged.connect(self._update_bias_option)
        self._update_bias_option()

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
        box_row.addWidget(self.box_btn)

        self.refine_btn = QPushButton("Refine existing label")
        self.refine_btn.setToolTip("start from the current voxels of this label id; clicks then add or remove")
        self.refine_btn.clicked.connect(lambda: self.refine_existing())
        self.overwrite_check = QCheckBox("Allow overwriting other labels")
        self.overwrite_check.setChecked(False)
        self.weights_edit = QLineEdit()
        self.weights_edit.setPlaceholderText("checkpoint (optional; default: installed weights)")
        self.runtime_combo = runtime_combo("a network backend's image encoder", "crop size",
                                           "Weights-free backends have no network.")
        # what most sessions leave alone, folded so that several docks fit one screen
        self.server = ServerFields()
        self.options = collapsible("Options (weights, box depth, overwriting, where it runs)", [
            ("Weights", self.weights_edit), ("CPU runtime", self.runtime_combo),
            ("Box depth", self.box_depth), ("", self.overwrite_check),
            *self.server.rows()])
        self._on_backend_changed()  # the CPU runtime applies to network backends only

        self.status = StatusLine("Pick an image, then click inside a structure.")
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # a busy indicator, shown while a step runs
        self.cancel_btn = QPushButton("Cancel")

        layout = QVBoxLayout()
        layout.addLayout(form)
        layout.addLayout(modes)
        layout.addWidget(self.start_btn)
        layout.addLayout(actions)
        layout.addLayout(box_row)
        layout.addWidget(self.refine_btn)
        layout.addWidget(self.options)
        layout.addWidget(self.progress)
        layout.addWidget(self.cancel_btn)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.setLayout(layout)
        make_scrollable(self)  # the dock shrinks and scrolls when several are docked

    def _update_bias_option(self, *_) -> None:
        backend = self.backend_combo.currentData() or DEFAULT_BACKEND
        self.bias_check.follow(self.image_combo.layer(), "" if backend == DEFAULT_BACKEND else (
            f"only for the weights-free {DEFAULT_BACKEND} backend; {backend} normalises the image itself"))

    def _on_backend_changed(self, *_) -> None:
        self.nni_server_row.setVisible(self._remote_backend())
        if hasattr(self, "runtime_combo"):
            self.runtime_combo.setEnabled(self._network_backend())

    def _network_backend(self) -> bool:
        """True when the chosen backend runs a torch network here (the CPU runtime applies)."""
        from ..prompts.factory import BACKENDS

        spec = BACKENDS.get(self.backend_combo.currentData() or DEFAULT_BACKEND)
        return bool(spec is not None and spec.weights_card is not None and not spec.remote)

    def set_runtime(self, name: str) -> None:
        """Choose what runs a network backend's encoder on the CPU (auto, openvino, torch)."""
        from ..inference.runtimes import check_runtime

        self.runtime_combo.setCurrentText(check_runtime(name))

    def _remote_backend(self) -> bool:
        """True when the chosen backend runs on a server of its own (its URL in the Server row)."""
        from ..prompts.factory import BACKENDS

        spec = BACKENDS.get(self.backend_combo.currentData() or DEFAULT_BACKEND)
        return bool(spec is not None and spec.remote)

    # ------------------------------------------------------------------ layers
    @property
    def image_layer(self):
        layer = self.image_combo.layer()
        if layer is None:
            raise InvalidInputError("no 3D image layer: open a CT/MR volume first")
        return layer

    @property
    def labels_layer(self):
        """The target Labels layer (a new one on the image's grid when none is picked)."""
        layer = self.labels_combo.layer()
        return self.create_labels_layer() if layer is None else layer

    def create_labels_layer(self, name: str = "segmentation"):
        """A new empty Labels layer on the image's grid (selected as the target)."""
        from ..io.label_table import LabelTable
        from ..io.layer_data import labels_layer_tuple

        volume = layer_volume(self.image_layer)
        data, kwargs, _ = labels_layer_tuple(
            np.zeros(volume.shape, dtype=np.uint8), volume, LabelTable.from_names({}), name=name
        )
        layer = self.viewer.add_labels(data, **kwargs)
        self.labels_combo.set_layer(layer.name)
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
        self.status.message(f"{'Positive' if self.positive else 'Negative'} clicks: T toggles, M next object, "
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
        return self.jobs.running or bool(self._queue)

    @property
    def last_error(self) -> str:
        """The last error shown ("" when the last message was not an error)."""
        return self.status.last_error

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
        self.status.message(f"{'positive' if self.positive else 'negative'} clicks")

    @property
    def label_id(self) -> int:
        return int(self.label_spin.value())

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
        try:
            return layer_volume(layer).voxel_of(data)
        except InvalidInputError as exc:
            raise InvalidInputError(
                f"the click at {tuple(round(float(w), 1) for w in world[-3:])} mm lies outside the image "
                f"'{layer.name}': {exc}") from None

    def add_point_world(self, world: Sequence[float], positive: Optional[bool] = None) -> None:
        """Add a click at a world coordinate (as napari gives it) and segment."""
        positive = self.positive if positive is None else bool(positive)
        try:
            zyx = self.world_to_voxel(world)
        except MedsegError as exc:
            self.status.error(exc)
            return
        layer = self._prompts_layer()
        self._adding = True
        try:
            layer.selected_data = set()
            layer.current_face_color = POSITIVE_COLOR if positive else NEGATIVE_COLOR
            layer.add(np.asarray(layer.world_to_data(np.asarray(world, dtype=float)[-3:]), dtype=float)[-3:])
        finally:
            self._adding = False
            layer.selected_data = set()
            layer.current_face_color = POSITIVE_COLOR if self.positive else NEGATIVE_COLOR
        self._records.append((zyx, positive))
        self._enqueue(Interaction.click(zyx, positive))

    def add_point_voxel(self, zyx: Sequence[float], positive: Optional[bool] = None) -> None:
        """Add a click at a voxel index of the image (z, y, x) and segment."""
        world = np.asarray(self.image_layer.data_to_world(np.asarray(zyx, dtype=float)), dtype=float)
        self.add_point_world(world[-3:], positive)

    def _on_points_changed(self, event) -> None:
        """A point placed with the mouse in the prompts layer: segment with it."""
        if self._adding:
            return
        action = str(getattr(event, "action", "")).lower()
        if "added" not in action:
            if "removed" in action and len(event.source.data) < len(self._records):
                self.status.message("points were deleted by hand; use Undo click / Reset to change prompts")
            return
        layer = event.source
        for i in range(len(self._records), len(layer.data)):
            world = np.asarray(layer.data_to_world(np.asarray(layer.data[i], dtype=float)), dtype=float)
            try:
                zyx = self.world_to_voxel(world)
            except MedsegError as exc:
                self.status.error(exc)
                self._remove_last_points(len(layer.data) - i)
                return
            self._records.append((zyx, self.positive))
            self._enqueue(Interaction.click(zyx, self.positive))

    def add_box_world(self, corner0: Sequence[float], corner1: Sequence[float]) -> None:
        """Box prompt from two world corners; a flat box gets ``box depth`` mm across."""
        try:
            a, b = self.world_to_voxel(corner0), self.world_to_voxel(corner1)
            lo, hi = layer_volume(self.image_layer).box_from_corners(a, b, self.box_depth.value())
        except MedsegError as exc:
            self.status.error(exc)
            return
        self._enqueue(Interaction.box_between(lo, hi))

    def use_shapes_box(self) -> None:
        """Use the last rectangle drawn in the box Shapes layer."""
        if BOX_LAYER not in self.viewer.layers or not len(self.viewer.layers[BOX_LAYER].data):
            self.status.error(f"draw a rectangle in the '{BOX_LAYER}' layer first (Draw box)")
            return
        layer = self.viewer.layers[BOX_LAYER]
        vertices = np.asarray(layer.data[-1], dtype=float)
        world = np.asarray([layer.data_to_world(v) for v in vertices])
        self.add_box_world(world.min(axis=0), world.max(axis=0))

    # ------------------------------------------------------------------ actions
    def undo(self) -> None:
        """Undo the last click of the current object (``Ctrl+Z`` on the prompts layer)."""
        self._enqueue(Interaction("undo"))

    def reset(self) -> None:
        """Forget the current object's prompts and remove its voxels (key ``R``)."""
        self._enqueue(Interaction("reset"))

    def refine_existing(self) -> None:
        """Start from the current voxels of the label id: clicks then add or remove."""
        self._enqueue("refine")  # the voxels are read when its turn comes

    def next_object(self) -> None:
        """Finish the current object; the next clicks go to the next free label id (``M``)."""
        if self.busy:
            self._enqueue(self._next_object_now)
            return
        self._next_object_now()

    def _next_object_now(self) -> None:
        from ..editing.classes import next_free_id

        labels = self.labels_layer
        new = next_free_id(np.asarray(labels.data), layer_table(labels))
        if new > self.label_spin.maximum():
            self.status.error(f"no free label id left: '{labels.name}' already uses ids up to {new - 1}")
            return
        self._clear_prompts()
        self.name_edit.clear()  # the typed name was the finished object's
        self.label_spin.setValue(int(new))
        self.status.message(f"next object: label {new} (new colour; type a name before the first click)")

    def _on_label_id_changed(self, value: int) -> None:
        """Another id: the current object is finished; the Name field shows the id's name."""
        if self._compositor is not None and int(value) != self._compositor.label_id and not self.busy:
            self._clear_prompts()
        layer = self.labels_combo.layer()
        name = ""
        if layer is not None:
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
        layer = self.labels_combo.layer()
        if layer is not None:
            table = layer_table(layer)
            if label_id in table.ids:
                return table.name_of(label_id)
        return f"object {label_id}"

    def rename_object(self) -> None:
        """Give the current label id the Name field's text in the layer's class table."""
        layer = self.labels_combo.layer()
        if layer is None or not self.name_edit.text().strip():
            return
        if self.label_id in layer_table(layer).ids or (np.asarray(layer.data) == self.label_id).any():
            self._name_in_table(layer, self.label_id)

    def _name_in_table(self, layer, label_id: int) -> None:
        """List ``label_id`` in the layer's class table (name, colour, provenance)."""
        table = layer_table(layer)
        new = object_table(table, label_id, self.object_name(label_id),
                           self.backend_combo.currentData() or DEFAULT_BACKEND)
        if new.to_dict() != table.to_dict():
            set_layer_table(layer, new)

    def _clear_prompts(self) -> None:
        if self._session is not None:
            self._stale = True
        self._compositor = None
        self._object_layer = None
        self._records.clear()
        if PROMPTS_LAYER in self.viewer.layers:
            self._remove_last_points(len(self.viewer.layers[PROMPTS_LAYER].data))

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
        dropped = [a for a in self._queue if isinstance(a, Interaction) and a.kind == "point"]
        self._queue.clear()
        if dropped:
            self._remove_last_points(len(dropped))
            del self._records[len(self._records) - len(dropped):]
        self.jobs.cancel()

    # ------------------------------------------------------------------ engine
    def _enqueue(self, item) -> None:
        self._queue.append(item)
        self._pump()

    def _pump(self) -> None:
        """Start the next queued interaction (main thread; one at a time)."""
        while not self.jobs.running and self._queue:
            item = self._queue.pop(0)
            if callable(item):
                item()
                continue
            try:
                self._start(item)
            except MedsegError as exc:
                self._take_back(item)
                self.status.error(exc)
                self.finished.emit()

    def _start(self, interaction) -> None:
        image = self.image_layer
        backend = self.backend_combo.currentData() or DEFAULT_BACKEND
        weights = self.weights_edit.text().strip() or None
        labels = self.labels_layer
        if labels.data.shape[-3:] != image.data.shape[-3:]:
            raise InvalidInputError(
                f"the labels layer '{labels.name}' {labels.data.shape} is not on the grid of the image "
                f"'{image.name}' {image.data.shape}; pick matching layers or press New")
        if interaction == "refine":
            initial = np.asarray(labels.data) == self.label_id
            if not initial.any():
                raise InvalidInputError(f"label {self.label_id} has no voxels in '{labels.name}' to refine")
            interaction = Interaction.refine(initial)
        setting = self.server.setting()
        own_server = self.nni_server_edit.text().strip() if self._remote_backend() else None
        # unique_id, not id(): through the plugin's proxy viewer id() changes on every access
        bias_correct = self.bias_check.wanted
        runtime = self.runtime_combo.currentText()
        key = (layer_key(image), backend, weights, setting.key if own_server is None else own_server,
               bias_correct, runtime)
        session = self._session if self._session_key == key else None
        volume = layer_volume(image) if session is None else None
        retired, self._retired = self._retired, []
        stale = self._stale and session is not None
        self._stale = False
        where = own_server if own_server is not None else (setting.where if setting.remote else "")
        preparing = f"preparing {backend}" + (f" on {where}" if where else "")

        def job(progress, cancel):
            nonlocal session
            from ..serve.settings import close_session, prompt_session

            for old in retired:
                close_session(old)
            try:
                if stale:
                    session.reset()
                if session is None:
                    progress(0.0, f"{preparing}...")
                    if own_server is not None:  # nnInteractive's own server, not `medseg serve`
                        from ..prompts.factory import make_session

                        session = make_session(backend, weights=weights, server=own_server)
                    else:
                        session = prompt_session(backend, setting, weights=weights,
                                                 bias_correct=bias_correct, runtime=runtime)
                    session.set_volume(volume, progress=None, cancel=cancel)
                progress(0.5, "segmenting...")
                return session, run_interaction(session, interaction, cancel)
            except MedsegError:
                raise
            except Exception as exc:  # torch's CUDA out-of-memory is a RuntimeError, among others
                log.exception("interactive segmentation (%s) failed", backend)
                raise MedsegError(f"the '{backend}' backend failed ({type(exc).__name__}: {exc}); "
                                  "see the log for details") from exc

        self.jobs.start(job, done=lambda result: self._done(interaction, key, *result),
                        failed=lambda exc: self._failed(interaction, exc, stale),
                        cancelled=lambda: self._failed(interaction, None, stale),
                        text="segmenting..." if session is not None else f"{preparing}...")

    def _job_finished(self, state: str) -> None:
        self.finished.emit()
        self._pump()

    def _failed(self, interaction, exc, stale: bool) -> None:
        """A step failed (its error is shown) or was cancelled: take its click back; a
        session the server no longer holds is forgotten, so that the next click uploads
        the image again."""
        from ..serve.settings import session_lost

        self._take_back(interaction)
        self._stale = self._stale or stale  # its pending reset may not have happened
        if exc is not None and session_lost(exc) and self._session is not None:
            self._retired.append(self._session)
            self._session, self._session_key = None, None

    def _take_back(self, interaction) -> None:
        """A click that was not applied: its point leaves the prompts layer."""
        if isinstance(interaction, Interaction) and interaction.kind == "point" and self._records:
            self._records.pop()
            self._remove_last_points(1)

    def _done(self, interaction: Interaction, key: tuple, session, result) -> None:
        if session is not self._session:  # a core object, not a layer proxy: identity is stable
            if self._session is not None:
                self._retired.append(self._session)  # freed by the next job, off this thread
            self._session, self._session_key = session, key
        kind, update, report = interaction.kind, result.update, result.report
        if kind == "reset":
            self._remove_object()
            self._clear_prompts()
            self.status.message(f"label {self.label_id}: reset")
            return
        if kind == "refine":
            self._start_object(refine=True)
        elif interaction.adds_prompt and self._compositor is None:
            self._start_object(refine=False)
        if update is None:
            self.status.message("nothing to undo")
            return
        if kind == "undo" and self._records:
            self._records.pop()
            self._remove_last_points(1)
        note = self._write(update)
        label = self._compositor.label_id if self._compositor is not None else self.label_id
        text = (f"label {label} '{self.object_name(label)}': {int(np.count_nonzero(update.mask))} voxels "
                f"({update.timing_s * 1000:.0f} ms)")
        self.last_report = report.text() if report is not None else ""
        if report is not None:
            lines = report.text().splitlines()
            text += "\n" + lines[0] + "".join(f"\n<b>{line}</b>" for line in lines[1:])
        if note:
            text += "\n" + note
        from ..inference.runtimes import describe_runtime

        ran = describe_runtime(getattr(session, "runtime_report", None)).strip()
        if ran:  # network backends: what ran the encoder, and why not OpenVINO after a fallback
            text += "\n" + ran
        said = getattr(session, "message", "")  # e.g. SAM-Med3D: the object was cut at its crop
        if said:
            text += f"\n<b>{said}</b>"
        self.status.message(text.replace("\n", "<br>"))

    # ------------------------------------------------------------------ writing
    def _start_object(self, refine: bool) -> None:
        """A new object: its compositor remembers the labels as they are before its first write."""
        from ..prompts.compositing import ObjectCompositor

        self._compositor = ObjectCompositor(self.label_id, refine=refine)
        self._object_layer = layer_key(self.labels_layer)

    def _write(self, update) -> str:
        """Write the object's mask into the Labels layer (one undo step, changed box only).

        Returns a note for the status line (e.g. that the layer was widened), or "".
        """
        layer = self.labels_layer
        if self._compositor is None or self._object_layer != layer_key(layer):
            self._start_object(refine=False)  # the target layer changed: a new object there
        label = self._compositor.label_id
        note = widen_for(layer, label) or ""  # 300 on uint8: widen (lossless), never overflow
        self._name_in_table(layer, label)
        write = self._compositor.compose(layer.data, update.mask, tuple(update.changed),
                                         allow_overwrite=self.overwrite_check.isChecked())
        write_voxels(layer, write.index, write.values)  # one interaction = one Ctrl+Z
        return note

    def _remove_object(self) -> None:
        """Reset: the object's voxels go back to what they were before it started."""
        layer = self.labels_combo.layer()
        if self._compositor is None or layer is None or self._object_layer != layer_key(layer):
            return
        write = self._compositor.remove(layer.data)
        write_voxels(layer, write.index, write.values)
