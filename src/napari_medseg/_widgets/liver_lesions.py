"""Dock widget "Liver & lesions": run the liver cascade (or take a label map), list the lesions.

Thin: segmentation is :func:`napari_medseg.inference.liver_cascade.segment_liver`, measurement
:func:`napari_medseg.analysis.lesions.measure_lesions`; this widget gathers inputs from layers,
runs the core in a napari worker thread (progress + cancel), adds the result as a new Labels
layer on the main thread, fills a sortable table, draws the selected lesion's axes as a Shapes
layer and exports the table.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..errors import Cancelled, InvalidInputError, MedsegError, user_message
from ..progress import CancelToken
from ._layout import collapsible, make_scrollable

log = logging.getLogger(__name__)

MODE_HYBRID = "hybrid-liver (checkpoint)"
MODE_NNUNET = "nnU-Net liver model (folder or registry name)"
MODE_MEASURE = "measure existing labels"
MODES = (MODE_HYBRID, MODE_NNUNET, MODE_MEASURE)

#: Table columns: (header, row key)
COLUMNS = (
    ("#", "id"),
    ("volume mL", "volume_ml"),
    ("long axis mm", "long_axis_mm"),
    ("short axis mm", "short_axis_mm"),
    ("3D diameter mm", "diameter_3d_mm"),
    ("mean HU", "mean_hu"),
    ("std HU", "std_hu"),
    ("slice", "axial_slice"),
    ("slices", "slice_range"),
)
AXES_LAYER = "lesion axes"


def _same_placement(layer, placement: dict) -> bool:
    """Whether ``layer`` already sits on the grid ``placement`` describes."""
    affine = np.asarray(layer.affine.affine_matrix)
    wanted = placement.get("affine", np.eye(affine.shape[0]))
    return (np.allclose(layer.scale, placement.get("scale", np.ones(len(layer.scale))))
            and np.allclose(layer.translate, placement.get("translate", np.zeros(len(layer.translate))))
            and np.shape(wanted) == affine.shape and np.allclose(affine, wanted))


class _Bridge(QObject):
    """Carries progress from the worker thread to the GUI thread (queued signal)."""

    progress = Signal(float, str)


class _NumberItem(QTableWidgetItem):
    """A table cell that sorts by its number, not its text."""

    def __init__(self, value) -> None:
        super().__init__("" if value is None else (f"{value:g}" if isinstance(value, float) else str(value)))
        self._key = float("-inf") if value is None else (value if isinstance(value, (int, float)) else 0)
        self.setFlags(self.flags() & ~Qt.ItemIsEditable)

    def __lt__(self, other) -> bool:  # noqa: D105
        if isinstance(other, _NumberItem):
            return self._key < other._key
        return super().__lt__(other)


class LiverLesionWidget(QWidget):
    """Liver + lesion segmentation and measurement.

    Public methods for scripting and tests: :meth:`run`, :meth:`cancel`, :meth:`select_lesion`,
    :meth:`export_csv`, :meth:`export_json`; state: :attr:`report`, :attr:`result_layer`,
    :attr:`is_running`.
    """

    def __init__(self, napari_viewer, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.report = None
        self.result_layer = None
        self._reference = None  # the Volume the report's coordinates refer to
        self._placement = None  # placement_of() the layer the report's voxel indices refer to
        self._worker = None
        self._cancel: Optional[CancelToken] = None
        self._bridge = _Bridge()
        self._bridge.progress.connect(self._on_progress)

        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.image_combo = QComboBox()
        form.addRow("Image", self.image_combo)
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(MODES)
        self.mode_combo.currentTextChanged.connect(self._update_mode)
        form.addRow("Model", self.mode_combo)
        path_row = QHBoxLayout()
        self.weights_edit = QLineEdit()
        self.weights_edit.setPlaceholderText("checkpoint .pt (empty: installed hybrid-liver weights)")
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self._browse)
        path_row.addWidget(self.weights_edit)
        path_row.addWidget(self.browse_button)
        self.weights_label = QLabel("Weights")
        form.addRow(self.weights_label, path_row)
        self.labels_combo = QComboBox()
        self.labels_label = QLabel("Labels")
        form.addRow(self.labels_label, self.labels_combo)
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda", "mps"])
        layout.addLayout(form)
        # folded away so that several docks fit one screen
        self.options = collapsible("Options (device)", [("Device", self.device_combo)])
        layout.addWidget(self.options)

        buttons = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        layout.addWidget(self.progress_bar)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)

        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([c[0] for c in COLUMNS])
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setSortingEnabled(True)
        self.table.itemSelectionChanged.connect(self._on_table_selection)
        layout.addWidget(self.table)
        export = QHBoxLayout()
        self.csv_button = QPushButton("Export CSV…")
        self.csv_button.clicked.connect(lambda: self._export_dialog("csv"))
        self.json_button = QPushButton("Export JSON…")
        self.json_button.clicked.connect(lambda: self._export_dialog("json"))
        export.addWidget(self.csv_button)
        export.addWidget(self.json_button)
        layout.addLayout(export)
        make_scrollable(self)

        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self.viewer.layers.events.changed.connect(self._refresh_layers)
        self._refresh_layers()
        self._update_mode(self.mode_combo.currentText())
        self._set_export_enabled(False)

    # ------------------------------------------------------------------ layer pickers
    def _layers_of(self, kind):
        return [layer for layer in self.viewer.layers if isinstance(layer, kind)]

    def _refresh_layers(self, event=None) -> None:
        from napari.layers import Image, Labels

        for combo, kind in ((self.image_combo, Image), (self.labels_combo, Labels)):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            names = [layer.name for layer in self._layers_of(kind)]
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            combo.blockSignals(False)

    def _update_mode(self, mode: str) -> None:
        measure = mode == MODE_MEASURE
        self.labels_combo.setVisible(measure)
        self.labels_label.setVisible(measure)
        self.weights_edit.setVisible(not measure)
        self.browse_button.setVisible(not measure)
        self.weights_label.setVisible(not measure)
        self.weights_label.setText("Checkpoint" if mode == MODE_HYBRID else "Model")
        self.weights_edit.setPlaceholderText(
            "checkpoint .pt (empty: installed hybrid-liver weights)" if mode == MODE_HYBRID
            else "nnU-Net trained-model folder, or a registry model name")

    def _browse(self) -> None:
        if self.mode_combo.currentText() == MODE_HYBRID:
            path, _ = QFileDialog.getOpenFileName(self, "hybrid-liver checkpoint", "", "Checkpoints (*.pt *.pth)")
        else:
            path = QFileDialog.getExistingDirectory(self, "nnU-Net trained-model folder")
        if path:
            self.weights_edit.setText(path)

    def _layer_named(self, name: str):
        for layer in self.viewer.layers:
            if layer.name == name:
                return layer
        return None

    @staticmethod
    def _volume_of(layer):
        from ._layers import layer_volume

        return layer_volume(layer)

    # ------------------------------------------------------------------ run / cancel
    @property
    def is_running(self) -> bool:
        return self._worker is not None

    def run(self) -> None:
        """Start segmentation (or measurement) of the chosen image in a worker thread."""
        from napari.qt.threading import thread_worker

        if self.is_running:
            return
        try:
            job = self._make_job()
        except MedsegError as exc:
            self._show_error(exc)
            return
        self._cancel = CancelToken()
        cancel = self._cancel
        bridge = self._bridge

        def progress(fraction: float, text: str = "") -> None:
            try:
                bridge.progress.emit(float(fraction), str(text))
            except RuntimeError:  # the widget was closed: stop the job, nobody is listening
                cancel.cancel()

        # errors are shown by _on_errored; ignore_errors stops napari re-raising them in the GUI
        worker = thread_worker(job, start_thread=False, ignore_errors=True)(progress, cancel)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress_bar.setValue(0)
        self.status.setText("running…")
        worker.start()

    def cancel(self) -> None:
        """Ask the running job to stop; layers are left unchanged."""
        if self._cancel is not None:
            self._cancel.cancel()
            self.status.setText("cancelling…")

    def _make_job(self):
        """Collect the inputs on the main thread; return ``job(progress, cancel) -> result``."""
        image_layer = self._layer_named(self.image_combo.currentText())
        if image_layer is None:
            raise InvalidInputError("choose an image layer first (open a CT)")
        from ._layers import placement_of

        image = self._volume_of(image_layer)
        mode = self.mode_combo.currentText()
        if mode == MODE_MEASURE:
            labels_layer = self._layer_named(self.labels_combo.currentText())
            if labels_layer is None:
                raise InvalidInputError("choose a Labels layer to measure (or pick a model to run)")
            from ..analysis.lesions import liver_lesion_ids

            labels = self._volume_of(labels_layer)
            liver_id, lesion_id = liver_lesion_ids(self._names_of(labels_layer))
            placement = placement_of(labels_layer)

            def job(progress, cancel):
                from ..analysis.lesions import measure_lesions

                progress(0.1, "measuring")
                report = measure_lesions(image, labels, liver_id=liver_id, lesion_id=lesion_id)
                if cancel.is_set():
                    raise Cancelled("cancelled by the user; nothing was changed")
                return {"report": report, "labels": None, "reference": labels, "placement": placement}

            return job
        text = self.weights_edit.text().strip()
        if mode == MODE_HYBRID:
            model, weights = "hybrid-liver", (text or None)
        else:
            if not text:
                raise InvalidInputError("type an nnU-Net model folder or registry name in 'Model'")
            model, weights = text, None
        device = self.device_combo.currentText()
        source = image_layer.name
        placement = placement_of(image_layer)

        def job(progress, cancel):
            from ..analysis.lesions import measure_lesions
            from ..inference.liver_cascade import segment_liver
            from ..progress import sub_progress

            array, table = segment_liver(image, model, weights=weights, device=device,
                                         progress=sub_progress(progress, 0.0, 0.95), cancel=cancel)
            progress(0.96, "measuring lesions")
            labels = image.with_array(array, metadata={})
            report = measure_lesions(image, labels)
            if cancel.is_set():
                raise Cancelled("cancelled by the user; nothing was changed")
            return {"report": report, "labels": array, "table": table, "reference": image,
                    "placement": placement, "name": f"{source} liver & lesions"}

        return job

    @staticmethod
    def _names_of(layer) -> dict:
        from ..io.label_table import LabelTable

        meta = layer.metadata or {}
        if "medseg_label_table" in meta:
            try:
                return LabelTable.from_dict(meta["medseg_label_table"]).names
            except Exception:  # a hand-edited table: fall back to features
                log.debug("could not read medseg_label_table", exc_info=True)
        features = getattr(layer, "features", None)
        if features is not None and "name" in features and "index" in features:
            return {int(i): str(n) for i, n in zip(features["index"], features["name"])}
        return {}

    # ------------------------------------------------------------------ worker callbacks
    def _on_progress(self, fraction: float, text: str) -> None:
        self.progress_bar.setValue(int(round(1000 * fraction)))
        if text:
            self.status.setText(text)

    def _on_returned(self, result: dict) -> None:
        if self._cancel is not None and self._cancel.is_set():
            self.status.setText("cancelled; nothing was changed")
            return
        if result.get("labels") is not None:
            from ..io.layer_data import labels_layer_tuple

            data, kwargs, _ = labels_layer_tuple(result["labels"], result["reference"], result["table"],
                                                 name=result["name"])
            # exactly the image layer's grid and units, whoever read the image
            kwargs.pop("affine", None)
            kwargs.update(result["placement"])
            self.result_layer = self.viewer.add_labels(data, **kwargs)
        self._reference = result["reference"]
        self._placement = result["placement"]
        self.set_report(result["report"])
        self.progress_bar.setValue(1000)
        self.status.setText(f"done: {len(self.report.lesions)} lesion(s)")

    def _on_errored(self, exc: BaseException) -> None:
        if isinstance(exc, Cancelled):
            self.status.setText("cancelled; nothing was changed")
            self.progress_bar.setValue(0)
            return
        # the table and axes of an earlier run must not read as this run's result
        self.clear_report()
        self._show_error(exc)

    def _on_finished(self) -> None:
        self._worker = None
        self._cancel = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _show_error(self, exc: BaseException) -> None:
        if not isinstance(exc, MedsegError):
            log.error("liver & lesions failed", exc_info=exc)
        message = user_message(exc, "gui")  # this widget's fields, not command-line flags
        self.status.setText(f"Error: {message}")
        try:
            from napari.utils.notifications import show_error

            show_error(message)
        except Exception:  # pragma: no cover - notifications unavailable
            pass

    # ------------------------------------------------------------------ table and axes
    def set_report(self, report, layer=None) -> None:
        """Show ``report`` in the table (also usable directly from scripts).

        Parameters
        ----------
        report : LesionReport
            From :func:`napari_medseg.analysis.lesions.measure_lesions`.
        layer : napari layer, optional
            The layer whose voxel grid the report's indices refer to (the measured labels
            or their image); the lesion axes are drawn on its grid. Default: the grid of
            the last run, else the chosen image layer.
        """
        if layer is not None:
            from ._layers import placement_of

            self._placement = placement_of(layer)
        self.report = report
        self.table.setSortingEnabled(False)
        self.table.clearContents()
        self.table.setRowCount(len(report.lesions))
        for r, lesion in enumerate(report.lesions):
            row = lesion.to_row()
            for c, (_, key) in enumerate(COLUMNS):
                if key == "slice_range":
                    item = _NumberItem(lesion.slice_range[0])
                    item.setText(f"{lesion.slice_range[0]}–{lesion.slice_range[1]}")
                else:
                    item = _NumberItem(row[key])
                item.setData(Qt.UserRole, lesion.id)
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)
        burden = report.tumour_burden_percent
        self.summary.setText(
            f"liver {report.liver_volume_ml:.1f} mL · {len(report.lesions)} lesion(s) · "
            f"lesions {report.lesion_volume_ml:.2f} mL"
            + (f" · tumour burden {burden:.2f} %" if burden is not None else "")
        )
        self._set_export_enabled(True)

    def clear_report(self) -> None:
        """Empty the table, the summary and the drawn axes (no result is shown)."""
        self.report = None
        self.table.clearContents()
        self.table.setRowCount(0)
        self.summary.setText("")
        self._set_export_enabled(False)
        axes = self._layer_named(AXES_LAYER)
        if axes is not None:
            axes.data = []

    def _set_export_enabled(self, enabled: bool) -> None:
        self.csv_button.setEnabled(enabled)
        self.json_button.setEnabled(enabled)

    def _on_table_selection(self) -> None:
        items = self.table.selectedItems()
        if items:
            self.select_lesion(int(items[0].data(Qt.UserRole)))

    def select_row(self, row: int) -> None:
        """Select table row ``row`` (as a click would), which centres the viewer on it."""
        self.table.selectRow(row)

    def select_lesion(self, lesion_id: int) -> None:
        """Move the view to lesion ``lesion_id``'s axial slice and draw its long/short axes.

        The axes are drawn in voxel indices of the lesion's grid, on a Shapes layer that
        takes the image's placement (:func:`~._layers.placement_of`): the lines then lie
        exactly on a voxel-centre slice, and the dims point is set to that slice's world
        position, which is on napari's slider grid (every layer of the plugin shares the
        image's scale, translate and units), so the axes are drawn on the slice shown.
        """
        if self.report is None:
            return
        lesion = next((l for l in self.report.lesions if l.id == lesion_id), None)
        if lesion is None:
            return
        lines = [np.asarray(lesion.long_axis_vox, dtype=float), np.asarray(lesion.short_axis_vox, dtype=float)]
        axes = self._draw_axes(lines)
        centre = np.asarray(lesion.centroid_vox, dtype=float)
        centre[0] = lesion.axial_slice  # the slice the long axis was measured on
        world = np.asarray(axes.data_to_world(centre), dtype=float)[-3:]
        ndim = self.viewer.dims.ndim
        if ndim >= 3:
            self.viewer.dims.set_point(ndim - 3, float(world[0]))
        # napari >= 0.9 moved the camera to viewer.scene
        camera = self.viewer.scene.camera if hasattr(self.viewer, "scene") else self.viewer.camera
        camera.center = tuple(float(v) for v in world)

    def _draw_axes(self, lines):
        """Show ``lines`` (voxel indices z, y, x) on the "lesion axes" layer; returns the layer."""
        if self._placement is None:
            from ._layers import placement_of

            image_layer = self._layer_named(self.image_combo.currentText())
            self._placement = placement_of(image_layer) if image_layer is not None else {}
        placement = dict(self._placement)
        colors = ["red", "yellow"]
        layer = self._layer_named(AXES_LAYER)
        if layer is not None and not _same_placement(layer, placement):
            # drawn for another image (other grid): start afresh on this one
            self.viewer.layers.remove(layer)
            layer = None
        if layer is None:
            return self.viewer.add_shapes(lines, shape_type="line", edge_color=colors, edge_width=1.0,
                                          name=AXES_LAYER, **placement)
        layer.data = []
        layer.add_lines(lines, edge_color=colors, edge_width=1.0)
        return layer

    # ------------------------------------------------------------------ export
    def export_csv(self, path) -> Path:
        """Write the lesion table as CSV (atomic)."""
        if self.report is None:
            raise InvalidInputError("nothing to export yet: run or measure first")
        self._check_output(path)
        return self.report.to_csv(path)

    def export_json(self, path) -> Path:
        """Write the full report (incl. axis endpoints) as JSON (atomic)."""
        if self.report is None:
            raise InvalidInputError("nothing to export yet: run or measure first")
        self._check_output(path)
        return self.report.to_json(path)

    def _check_output(self, path) -> None:
        from ..io.paths import check_outputs
        from ._layers import layer_sources

        check_outputs([path], layer_sources(*self.viewer.layers), what="the lesion export")

    def _export_dialog(self, kind: str) -> None:
        path, _ = QFileDialog.getSaveFileName(self, f"Export lesions as {kind.upper()}", f"lesions.{kind}",
                                              f"{kind.upper()} (*.{kind})")
        if not path:
            return
        try:
            (self.export_csv if kind == "csv" else self.export_json)(path)
            self.status.setText(f"wrote {path}")
        except MedsegError as exc:
            self._show_error(exc)
