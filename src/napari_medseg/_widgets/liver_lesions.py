"""Dock widget "Liver & lesions": run the liver cascade (or take a label map), list the lesions.

Wiring only: the work is :func:`napari_medseg.analysis.liver.segment_and_measure` (the same
as ``medseg lesions``), run by the widget's :class:`~._jobs.JobRunner` (progress + cancel);
this widget gathers inputs from layers, adds the result as a new Labels layer on the main
thread, fills a sortable table, draws the selected lesion's axes (at the lesion's
``view_point_vox``) as a Shapes layer and exports the table.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
from qtpy.QtCore import Qt
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

from ..errors import InvalidInputError, MedsegError
from ._jobs import JobRunner, StatusLine
from ._layers import LayerPicker, layer_sources, layer_table, layer_volume, placement_of
from ._layout import collapsible, make_scrollable, runtime_combo

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

        layout = QVBoxLayout(self)
        form = QFormLayout()
        from napari.layers import Image, Labels

        self.image_combo = LayerPicker(napari_viewer, Image)
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
        self.labels_combo = LayerPicker(napari_viewer, Labels)
        self.labels_label = QLabel("Labels")
        form.addRow(self.labels_label, self.labels_combo)
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda", "mps"])
        layout.addLayout(form)
        self.runtime_combo = runtime_combo(
            "the liver networks (hybrid-liver stages or an nnU-Net model)",
            "stage and image size (hybrid-liver) or model and patch size (nnU-Net)")
        # folded away so that several docks fit one screen
        self.options = collapsible("Options (device, CPU runtime)",
                                   [("Device", self.device_combo),
                                    ("CPU runtime", self.runtime_combo)])
        layout.addWidget(self.options)

        buttons = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        layout.addWidget(self.progress_bar)
        self.status = StatusLine("")
        layout.addWidget(self.status)
        self.jobs = JobRunner(self.status, progress_bar=self.progress_bar, cancel_button=self.cancel_button,
                              busy=[self.run_button])

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

        self._update_mode(self.mode_combo.currentText())
        self._set_export_enabled(False)

    # ------------------------------------------------------------------ inputs
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
        return self.viewer.layers[name] if name in self.viewer.layers else None

    # ------------------------------------------------------------------ run / cancel
    @property
    def is_running(self) -> bool:
        return self.jobs.running

    def run(self) -> None:
        """Start segmentation (or measurement) of the chosen image in a worker thread."""
        if self.is_running:
            return
        try:
            job, placement, name = self._make_job()
        except MedsegError as exc:
            self.status.error(exc)
            return
        self.jobs.start(job, done=lambda result: self._on_returned(result, placement, name),
                        failed=lambda exc: self.clear_report())

    def cancel(self) -> None:
        """Ask the running job to stop; layers are left unchanged."""
        self.jobs.cancel()

    def _make_job(self):
        """Inputs gathered on the main thread: ``(job(progress, cancel), placement, layer name)``.

        ``placement`` is the grid of the layer the report's voxel indices refer to; the
        layer name is None when no labels layer is to be added (measuring given labels).
        """
        from ..analysis.liver import segment_and_measure

        image_layer = self.image_combo.layer()
        if image_layer is None:
            raise InvalidInputError("choose an image layer first (open a CT)")
        image = layer_volume(image_layer)
        mode = self.mode_combo.currentText()
        if mode == MODE_MEASURE:
            labels_layer = self.labels_combo.layer()
            if labels_layer is None:
                raise InvalidInputError("choose a Labels layer to measure (or pick a model to run)")
            labels, table = layer_volume(labels_layer), layer_table(labels_layer)

            def measure(progress, cancel):
                return segment_and_measure(image, labels=labels, table=table, progress=progress, cancel=cancel)

            return measure, placement_of(labels_layer), None
        text = self.weights_edit.text().strip()
        if mode == MODE_HYBRID:
            model, weights = "hybrid-liver", (text or None)
        else:
            if not text:
                raise InvalidInputError("type an nnU-Net model folder or registry name in 'Model'")
            model, weights = text, None
        device = self.device_combo.currentText()
        runtime = self.runtime_combo.currentText()

        def segment(progress, cancel):
            return segment_and_measure(image, model=model, weights=weights, device=device,
                                       progress=progress, cancel=cancel, runtime=runtime)

        return segment, placement_of(image_layer), f"{image_layer.name} liver & lesions"

    # ------------------------------------------------------------------ worker callbacks
    def _on_returned(self, result, placement: dict, name: Optional[str]) -> None:
        if result.segmented and name is not None:
            from ..io.layer_data import labels_layer_tuple

            data, kwargs, _ = labels_layer_tuple(result.labels.array, result.labels, result.table, name=name)
            # exactly the image layer's grid and units, whoever read the image
            kwargs.pop("affine", None)
            kwargs.update(placement)
            self.result_layer = self.viewer.add_labels(data, **kwargs)
        self._reference = result.labels
        self._placement = placement
        self.set_report(result.report)
        from ..inference.runtimes import describe_runtime

        ran = describe_runtime(result.report.metadata.get("runtime"))
        self.status.message(f"done: {len(self.report.lesions)} lesion(s).{ran}")

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
        world = np.asarray(axes.data_to_world(np.asarray(lesion.view_point_vox, dtype=float)), dtype=float)[-3:]
        ndim = self.viewer.dims.ndim
        if ndim >= 3:
            self.viewer.dims.set_point(ndim - 3, float(world[0]))
        # napari >= 0.9 moved the camera to viewer.scene
        camera = self.viewer.scene.camera if hasattr(self.viewer, "scene") else self.viewer.camera
        camera.center = tuple(float(v) for v in world)

    def _draw_axes(self, lines):
        """Show ``lines`` (voxel indices z, y, x) on the "lesion axes" layer; returns the layer."""
        if self._placement is None:
            image_layer = self.image_combo.layer()
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

        check_outputs([path], layer_sources(*self.viewer.layers), what="the lesion export")

    def _export_dialog(self, kind: str) -> None:
        path, _ = QFileDialog.getSaveFileName(self, f"Export lesions as {kind.upper()}", f"lesions.{kind}",
                                              f"{kind.upper()} (*.{kind})")
        if not path:
            return
        try:
            (self.export_csv if kind == "csv" else self.export_json)(path)
            self.status.message(f"wrote {path}")
        except MedsegError as exc:
            self.status.error(exc)
