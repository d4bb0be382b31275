"""Dock widget "Export labels": a Labels layer to NIfTI / NRRD / MetaImage / .seg.nrrd / DICOM-SEG.

Wiring only: :func:`napari_medseg.io.export.export_labels` does the work (atomic writes)
in the widget's :class:`~._jobs.JobRunner`; the widget picks the layers, the format and
the file, and offers DICOM-SEG only when the reference image came from a DICOM series.
Known structure names get their published anatomical codes
(:func:`napari_medseg.models.totalseg_classes.with_anatomical_codes`, as ``medseg export``
does); each segment's algorithm type is the provenance recorded in the layer's table. A file that is the source file of any open
layer (or lies inside a DICOM source folder) is refused by
:func:`napari_medseg.io.paths.check_outputs` before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..errors import InvalidInputError, MedsegError
from ..io.export import DICOM_SEG_TYPES, EXPORT_FORMATS, is_dicom_reference
from ..io.formats import WRITABLE_LABELS, strip_extension
from ._jobs import JobRunner, StatusLine
from ._layers import LayerPicker, layer_sources, layer_table, layer_volume
from ._layout import make_scrollable

#: the default DICOM-SEG flavour's format name (binary segments)
DICOM_FORMAT = "DICOM-SEG (.dcm)"

class ExportWidget(QWidget):
    """Export the selected Labels layer with its geometry and class names.

    Public API: :meth:`set_format`, :meth:`available_formats`, :meth:`export`
    (returns the worker), the ``exported`` signal (status text, success or error).
    """

    exported = Signal(str)

    def __init__(self, napari_viewer, parent: Optional[QWidget] = None) -> None:
        from napari.layers import Image, Labels

        super().__init__(parent)
        self.viewer = napari_viewer
        self.last_path: Optional[str] = None
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.labels_combo = LayerPicker(napari_viewer, Labels)
        self.image_combo = LayerPicker(napari_viewer, Image, allow_none=True)
        self.image_combo.currentIndexChanged.connect(self._update_formats)
        self.format_combo = QComboBox()
        self.format_combo.currentTextChanged.connect(self._fix_extension)
        form.addRow("Labels layer", self.labels_combo)
        form.addRow("Reference image", self.image_combo)
        form.addRow("Format", self.format_combo)
        row = QHBoxLayout()
        self.path_edit = QLineEdit()
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        row.addWidget(self.path_edit)
        row.addWidget(browse)
        form.addRow("File", row)
        layout.addLayout(form)
        self.export_button = QPushButton("Export")
        self.export_button.clicked.connect(lambda: self.export())
        layout.addWidget(self.export_button)
        self.status = StatusLine("")
        layout.addWidget(self.status)
        self.jobs = JobRunner(self.status, busy=[self.export_button])
        # the widget's signal carries the status text, whatever the outcome
        self.jobs.finished.connect(lambda state: self.exported.emit(self.status.text()))
        layout.addStretch(1)
        make_scrollable(self)  # the dock shrinks and scrolls when several are docked
        self._update_formats()

    def _reference(self):
        layer = self.image_combo.layer()
        return None if layer is None else layer_volume(layer)

    def available_formats(self) -> list:
        """Format names offered now (DICOM-SEG only with a DICOM reference image)."""
        try:
            dicom = is_dicom_reference(self._reference())
        except MedsegError:
            dicom = False
        return [name for name in EXPORT_FORMATS if name not in DICOM_SEG_TYPES or dicom]

    def _update_formats(self, *_):
        current = self.format_combo.currentText()
        self.format_combo.blockSignals(True)
        self.format_combo.clear()
        self.format_combo.addItems(self.available_formats())
        idx = self.format_combo.findText(current)
        self.format_combo.setCurrentIndex(max(idx, 0))
        self.format_combo.blockSignals(False)

    def set_format(self, name: str) -> None:
        """Pick a format by its display name (see :data:`EXPORT_FORMATS`)."""
        self._update_formats()
        idx = self.format_combo.findText(name)
        if idx < 0:
            raise InvalidInputError(
                f"format {name!r} is not available now"
                + (" (DICOM-SEG needs a reference image opened from DICOM)" if name in DICOM_SEG_TYPES else "")
            )
        self.format_combo.setCurrentIndex(idx)

    def _fix_extension(self, name: str) -> None:
        text = self.path_edit.text().strip()
        ext = EXPORT_FORMATS.get(name)
        if not text or not ext:
            return
        p = Path(text)
        base = strip_extension(p.name, set(EXPORT_FORMATS.values()) | set(WRITABLE_LABELS))
        self.path_edit.setText(str(p.with_name(base + ext)))

    def _browse(self) -> None:
        ext = EXPORT_FORMATS.get(self.format_combo.currentText(), ".nii.gz")
        path, _ = QFileDialog.getSaveFileName(self, "Export labels", f"labels{ext}", f"*{ext}")
        if path:
            self.path_edit.setText(path)

    def export(self, path=None):
        """Export in a worker; returns the worker (None when refused, reason shown)."""
        from ..io.export import export_labels, format_of
        from ..io.paths import check_outputs
        from ..models.totalseg_classes import with_anatomical_codes

        if path is not None:
            self.path_edit.setText(str(path))
        text = self.path_edit.text().strip()
        layer = self.labels_combo.layer()
        try:
            if layer is None:
                raise InvalidInputError("no Labels layer to export")
            if not text:
                raise InvalidInputError("choose a file to export to")
            ext = EXPORT_FORMATS.get(self.format_combo.currentText())
            if ext and not text.lower().endswith(ext) and not (ext == ".nii.gz" and text.lower().endswith(".nii")):
                text = text + ext
                self.path_edit.setText(text)
            format_of(text)
            # Any open layer's file counts as an input: exporting over the CT shown
            # beside the labels would lose it as surely as over the labels' own file.
            check_outputs([text], layer_sources(*self.viewer.layers), what="the export")
            labels = layer_volume(layer)
            labels = labels.with_array(labels.array.copy())
            table = with_anatomical_codes(layer_table(layer))  # known structures get their codes
            reference = self._reference()
            seg_type = DICOM_SEG_TYPES.get(self.format_combo.currentText(), "binary")
        except MedsegError as exc:
            self.status.error(exc, notify=False)
            self.exported.emit(self.status.text())
            return None

        def job(progress, cancel):
            return export_labels(labels, table, text, reference=reference, dicom_seg_type=seg_type)

        return self.jobs.start(job, done=self._written, text="exporting...")

    def _written(self, out) -> None:
        self.last_path = str(out)
        self.status.message(f"wrote {out}")
