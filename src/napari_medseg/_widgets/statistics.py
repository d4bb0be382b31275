"""Dock widget "Statistics": per-label table for a Labels layer over an image, CSV export.

The numbers come from :func:`napari_medseg.analysis.statistics.label_statistics` (the
same as ``medseg stats``). The table refreshes after edits: paint/data events of the
Labels layer start a short single-shot timer (debounce), so a brush stroke triggers
one computation, in a worker thread.

For an MR image, the *Bias-field correction (N4, MR)* option measures the intensities on the
image with its coil shading divided out (computed once per image, cached in the core;
disabled with the reason for CT). When the Labels layer has a confidence layer (added by the Automatic segmentation dock
with its confidence option; found with :func:`._confidence.confidence_layer_of`), the
table and its CSV gain the confidence columns
(:func:`napari_medseg.analysis.statistics.add_confidence_columns`).
"""

from __future__ import annotations

import logging
import weakref
from typing import Optional

import numpy as np
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..errors import InvalidInputError, MedsegError
from ._bias import BiasCorrectionOption
from ._jobs import JobRunner, StatusLine
from ._layers import LayerPicker, layer_key, layer_sources, layer_table, layer_volume
from ._layout import make_scrollable

log = logging.getLogger(__name__)

#: Columns shown: (header, key in the statistics dict, format)
COLUMNS = (
    ("id", "label", "{}"), ("name", "name", "{}"), ("voxels", "voxels", "{}"),
    ("volume (mL)", "volume_ml", "{:.3f}"), ("mean", "mean", "{:.1f}"), ("std", "std", "{:.1f}"),
    ("min", "min", "{:.0f}"), ("max", "max", "{:.0f}"), ("median", "median", "{:.1f}"),
    ("bbox z", "bbox", 0), ("bbox y", "bbox", 1), ("bbox x", "bbox", 2),
    ("centroid x,y,z (mm)", "centroid_xyz_mm", "xyz"),
)

#: Columns added when the labels have a confidence layer
CONFIDENCE_TABLE_COLUMNS = (
    ("mean confidence", "mean_confidence", "{:.3f}"), ("fraction below", "fraction_below", "{:.1%}"),
    ("boundary confidence", "boundary_confidence", "{:.3f}"), ("review", "review", "flag"),
)


def _image_token(layer):
    """``(layer_key, weak reference to its array)``; the reference is None for arrays without weakrefs."""
    try:
        ref = weakref.ref(layer.data)
    except TypeError:  # e.g. a dask array proxy: never considered unchanged
        ref = None
    return layer_key(layer), ref


def _same_image(token, last) -> bool:
    """Whether ``token`` names the same image layer and array as ``last`` (both may be None)."""
    if token is None or last is None:
        return token is None and last is None
    if token[0] != last[0] or token[1] is None or last[1] is None:
        return False
    array = token[1]()
    return array is not None and array is last[1]()


class StatisticsWidget(QWidget):
    """Table of label statistics that follows the edits of a Labels layer.

    Public API: :meth:`refresh` (returns the worker), :attr:`stats` (last result),
    :meth:`export_csv`, the ``updated`` signal (emitted with a status text after each
    refresh, success or error) and :attr:`debounce_ms`.
    """

    updated = Signal(str)

    def __init__(self, napari_viewer, parent: Optional[QWidget] = None) -> None:
        from napari.layers import Image, Labels

        super().__init__(parent)
        self.viewer = napari_viewer
        self.stats: list = []
        self.debounce_ms = 400
        self._watched = None  # the Labels layer whose edit events we follow
        self._watched_key = None  # its layer_key (proxies are new objects on every access)
        self._pending = False
        self._message = ""  # the text of the last result (shown again when nothing changed)

        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.labels_combo = LayerPicker(napari_viewer, Labels)
        self.image_combo = LayerPicker(napari_viewer, Image, allow_none=True)
        form.addRow("Labels layer", self.labels_combo)
        form.addRow("Image layer", self.image_combo)
        self.bias = BiasCorrectionOption("measuring the intensities")
        self.bias.toggled.connect(lambda _on: self.schedule_refresh())
        form.addRow("", self.bias)
        layout.addLayout(form)
        self.auto = QCheckBox("refresh after edits")
        self.auto.setChecked(True)
        layout.addWidget(self.auto)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([c[0] for c in COLUMNS])
        self.unit = None  # "HU" or "intensity" once an image is measured
        self.table.setSortingEnabled(False)
        layout.addWidget(self.table)
        buttons = QHBoxLayout()
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(lambda: self.refresh())
        export = QPushButton("Export CSV...")
        export.clicked.connect(self._ask_export)
        buttons.addWidget(refresh)
        buttons.addWidget(export)
        layout.addLayout(buttons)
        self.status = StatusLine("")
        layout.addWidget(self.status)
        self.jobs = JobRunner(self.status)
        self.jobs.finished.connect(self._worker_done)
        make_scrollable(self)  # the dock shrinks and scrolls when several are docked

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(lambda: self.refresh(force=False))
        self._last_key = None
        self._last_image = None  # (layer_key, weak reference to the image array) of the last result
        self.labels_combo.currentIndexChanged.connect(self._on_layers_changed)
        self.image_combo.currentIndexChanged.connect(self._on_layers_changed)
        self._on_layers_changed()

    # ----------------------------------------------------------------- events
    def _on_layers_changed(self, *_):
        self.bias.follow(self.image_combo.layer())
        layer = self.labels_combo.layer()
        key = None if layer is None else layer_key(layer)
        if key != self._watched_key:
            if self._watched is not None:
                for ev in (self._watched.events.paint, self._watched.events.data, self._watched.events.set_data):
                    try:
                        ev.disconnect(self.schedule_refresh)
                    except (TypeError, ValueError, RuntimeError):
                        pass
            if layer is not None:
                layer.events.paint.connect(self.schedule_refresh)
                layer.events.data.connect(self.schedule_refresh)
                # undo/redo only emit set_data (also emitted when the slice changes: the
                # worker skips the computation when the data digest is unchanged)
                layer.events.set_data.connect(self.schedule_refresh)
            self._watched, self._watched_key = layer, key
        self.schedule_refresh()

    def schedule_refresh(self, event=None) -> None:
        """Refresh after :attr:`debounce_ms` without further edits (if auto-refresh is on)."""
        try:
            if self.auto.isChecked():
                self._timer.start(self.debounce_ms)
        except RuntimeError:  # the widget was closed
            pass

    # ----------------------------------------------------------------- compute
    def refresh(self, force: bool = True):
        """Recompute the statistics in a worker; returns the worker (None if refused).

        With ``force=False`` (automatic refreshes) nothing is recomputed when the
        labels, the image and the names are unchanged since the last result.
        """
        from ..analysis.statistics import add_confidence_columns, label_statistics
        from ..io.arrays import fingerprint

        if self.jobs.running:
            self._pending = True  # one more run when the current one ends
            return self.jobs.worker
        labels_layer = self.labels_combo.layer()
        try:
            if labels_layer is None:
                raise InvalidInputError("no Labels layer to measure: open or add labels first")
            labels = layer_volume(labels_layer)
            labels = labels.with_array(np.array(labels.array, copy=True))
            table = layer_table(labels_layer)
            image = None
            conf, conf_key = self._confidence_of(labels_layer, labels.shape)
            image_layer = self.image_combo.layer()
            if image_layer is not None:
                image = layer_volume(image_layer)
                if image.shape != labels.shape:
                    raise InvalidInputError(
                        f"image {image_layer.name!r} has shape {image.shape}, the labels {labels.shape}; "
                        "pick the image the labels were drawn on")
        except MedsegError as exc:
            self._show_error(exc)
            return None

        # The image is the same when it is the same layer holding the same array object
        # (compared by identity through a weak reference: no digest of a large CT on every
        # slice change, and a freed array never matches a new one at the same address).
        image_token = None if image_layer is None else _image_token(image_layer)
        bias_correct = image is not None and self.bias.wanted
        self._set_intensity_unit(image, bias_correct)
        same_image = _same_image(image_token, self._last_image)
        last_key = self._last_key
        have_stats = bool(self.stats)

        def job(progress, cancel):
            key = (fingerprint(labels.array), repr(table.to_dict()), conf_key, bias_correct)
            if not force and same_image and key == last_key and have_stats:
                return None
            # N4 is cached per image in the core: after the first refresh only the labels cost
            stats = label_statistics(image, labels, table, bias_correct=bias_correct)
            if conf is not None:
                stats = add_confidence_columns(stats, labels.array, conf)
            return key, image_token, stats

        return self.jobs.start(job, done=self._show, failed=lambda exc: self._clear(), text="computing...")

    def _confidence_of(self, labels_layer, shape) -> tuple:
        """``(map, key)`` of the labels' confidence layer (``(None, None)`` without one)."""
        from ._confidence import confidence_layer_of

        layer = confidence_layer_of(self.viewer, labels_layer)
        if layer is None or tuple(np.shape(layer.data)) != tuple(shape):
            return None, None
        return np.asarray(layer.data), layer_key(layer)

    @property
    def columns(self) -> tuple:
        """The columns shown now: (header, key, format)."""
        has = bool(self.stats) and "mean_confidence" in self.stats[0]
        return COLUMNS + (CONFIDENCE_TABLE_COLUMNS if has else ())

    #: columns whose numbers are image intensities (their header names the unit)
    _INTENSITY_KEYS = ("mean", "std", "min", "max", "median")

    def _set_intensity_unit(self, image, bias_correct: bool = False) -> None:
        """Headers say "HU" for a CT image and "intensity" for MR (or any other image);
        "intensity, N4" when the MR image's bias field is corrected."""
        from ..io.windows import image_modality, intensity_unit

        self.unit = None if image is None else intensity_unit(image_modality(image))
        if self.unit is not None and bias_correct:
            self.unit = f"{self.unit}, N4"
        for col, (header, key, _fmt) in enumerate(COLUMNS):
            if key in self._INTENSITY_KEYS:
                self.table.setHorizontalHeaderItem(
                    col, QTableWidgetItem(header if self.unit is None else f"{header} ({self.unit})"))

    def _worker_done(self, state: str) -> None:
        if state != "done":
            self.updated.emit(self.status.text())
        if self._pending:
            self._pending = False
            self.refresh(force=False)

    def _show(self, result) -> None:
        if result is None:  # unchanged: the last result stands, and says so again
            self.status.message(self._message)
            self.updated.emit(self._message)
            return
        self._last_key, self._last_image, stats = result
        self.stats = stats
        columns = self.columns
        if self.table.columnCount() != len(columns):
            self.table.setColumnCount(len(columns))
            for col in range(len(COLUMNS), len(columns)):
                self.table.setHorizontalHeaderItem(col, QTableWidgetItem(columns[col][0]))
        self.table.setRowCount(len(stats))
        for row, s in enumerate(stats):
            for col, (_, key, fmt) in enumerate(columns):
                value = s.get(key)
                if value is None:
                    text = "-"
                elif fmt == "flag":
                    text = "review" if value else ""
                elif isinstance(fmt, int):
                    text = f"{value[fmt][0]}..{value[fmt][1] - 1}"
                elif fmt == "xyz":
                    text = ", ".join(f"{v:.1f}" for v in value)
                else:
                    text = fmt.format(value)
                self.table.setItem(row, col, QTableWidgetItem(text))
        total = sum(s["volume_ml"] for s in stats)
        msg = f"{len(stats)} label(s), {total:.2f} mL in total"
        self._message = msg
        self.status.message(msg)
        self.updated.emit(msg)

    def _clear(self) -> None:
        # a table left under an error would read as the answer for the current choice
        self.stats = []
        self._last_key = self._last_image = None
        self._message = ""
        self.table.setRowCount(0)

    def _show_error(self, exc) -> None:
        self._clear()
        self.status.error(exc, notify=False)
        self.updated.emit(self.status.text())

    # ----------------------------------------------------------------- export
    def export_csv(self, path) -> str:
        """Write the current statistics to ``path`` as CSV (atomic); returns the path."""
        from ..analysis.statistics import to_csv
        from ..io.paths import check_outputs

        if not self.stats:
            raise InvalidInputError("no statistics to export yet: refresh first")
        check_outputs([path], layer_sources(*self.viewer.layers), what="the CSV")
        out = to_csv(self.stats, path)
        self.status.message(f"wrote {out}")
        return str(out)

    def _ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export statistics", "statistics.csv", "CSV (*.csv)")
        if path:
            try:
                self.export_csv(path)
            except MedsegError as exc:
                self.status.error(exc, notify=False)
