"""Dock widget "Automatic segmentation": pick an image and a model, run, get one Labels layer.

Thin: the work is :func:`napari_medseg.inference.segment.segment_with_info`; this widget
gathers the inputs, runs the core in a napari generator worker (which yields the core's
progress), cancels through a :class:`~napari_medseg.progress.CancelToken`, and on the main
thread adds the result as a *new* Labels layer (names in ``features``, colours, physical
placement of the image). Errors become a message in the widget; the widget is usable again
after any outcome.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..errors import Cancelled, InvalidInputError, MedsegError, user_message
from ..progress import CancelToken, iterate_progress
from ._layout import collapsible, make_scrollable

log = logging.getLogger(__name__)

CUSTOM = "custom nnU-Net folder…"
DEVICES = ("auto", "cpu", "cuda", "mps")


def _segment_job(volume, model, kwargs: dict, token: CancelToken):
    """Generator: run :func:`segment_with_info` and yield its ``(fraction, text)`` reports.

    Returns the :class:`SegmentResult`; re-raises the core's exception. Cancelling is done
    through ``token`` (the core stops at its next check).
    """
    from ..inference.segment import segment_with_info

    return (yield from iterate_progress(
        lambda progress: segment_with_info(volume, model, progress=progress, cancel=token, **kwargs),
        name="medseg-segment"))


def _download_job(name: str, token: CancelToken):
    """Generator twin of :func:`_segment_job` for :func:`weights.download`."""
    from ..models.weights import download

    return (yield from iterate_progress(
        lambda progress: download(name, progress=progress, cancel=token), name="medseg-download"))


class AutoSegmentationWidget(QWidget):
    """Run an automatic model (weights-free tissue model, TotalSegmentator, nnU-Net folder).

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (napari passes it).

    Public methods for scripts and tests: :meth:`run`, :meth:`cancel`, :meth:`set_model`,
    :meth:`set_custom_folder`, :meth:`select_structures`, :meth:`selected_structures`,
    :meth:`set_image_layer`, :meth:`download_weights`. The ``finished`` signal is emitted
    with ``"done"``, ``"cancelled"`` or ``"error"`` when a run ends.
    """

    finished = Signal(str)

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self._token: Optional[CancelToken] = None
        self.last_layer = None
        self.last_result = None

        self.image_combo = QComboBox()
        self.model_combo = QComboBox()
        self.model_info = QLabel()
        self.model_info.setWordWrap(True)
        self.custom_edit = QLineEdit()
        self.custom_edit.setPlaceholderText("path of an nnU-Net v2 trained-model folder")
        self.custom_browse = QPushButton("Browse…")
        self.weights_edit = QLineEdit()
        self.weights_edit.setPlaceholderText("optional: folder holding the weights")
        self.download_btn = QPushButton("Download weights")
        self.roi_filter = QLineEdit()
        self.roi_filter.setPlaceholderText("search structures…")
        self.roi_list = QListWidget()
        self.roi_list.setSelectionMode(QAbstractItemView.MultiSelection)
        self.roi_list.setMinimumHeight(120)
        self.roi_clear = QPushButton("Clear selection (all structures)")
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.run_btn = QPushButton("Run")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.status = QLabel("Ready.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)

        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        form.addRow("Model", self.model_combo)
        custom_row = QHBoxLayout()
        custom_row.addWidget(self.custom_edit)
        custom_row.addWidget(self.custom_browse)
        form.addRow("Folder", custom_row)
        # what most runs leave alone, folded away so that several docks fit one screen
        self.options = collapsible("Options (weights folder, device)",
                                   [("Weights", self.weights_edit), ("Device", self.device_combo)])
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_btn)
        buttons.addWidget(self.cancel_btn)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.options)
        layout.addWidget(self.model_info)
        layout.addWidget(self.download_btn)
        layout.addWidget(QLabel("Structures to keep (none selected: all)"))
        layout.addWidget(self.roi_filter)
        layout.addWidget(self.roi_list)
        layout.addWidget(self.roi_clear)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addStretch(1)
        make_scrollable(self)

        self.run_btn.clicked.connect(self.run)
        self.cancel_btn.clicked.connect(self.cancel)
        self.download_btn.clicked.connect(self.download_weights)
        self.model_combo.currentIndexChanged.connect(self._on_model_changed)
        self.roi_filter.textChanged.connect(self._filter_structures)
        self.roi_clear.clicked.connect(self.roi_list.clearSelection)
        self.custom_browse.clicked.connect(self._browse_custom)
        self.viewer.layers.events.inserted.connect(self.refresh_layers)
        self.viewer.layers.events.removed.connect(self.refresh_layers)

        self.refresh_models()
        self.refresh_layers()

    # ------------------------------------------------------------------ pickers
    def refresh_layers(self, event=None) -> None:
        """Refill the image picker with the viewer's Image layers (keeps the selection)."""
        from napari.layers import Image

        current = self.image_combo.currentText()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        self.image_combo.blockSignals(False)

    def refresh_models(self) -> None:
        """Refill the model picker, marking which models have their weights installed."""
        from ..models.registry import automatic_cards
        from ..models.weights import installed

        current = self.model_combo.currentData()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for card in automatic_cards():
            ok = installed(card)
            mark = "" if not card.needs_weights else (" (installed)" if ok else " (not installed)")
            self.model_combo.addItem(f"{card.name}{mark}", card.name)
        self.model_combo.addItem(CUSTOM, CUSTOM)
        index = self.model_combo.findData(current) if current else 0
        self.model_combo.setCurrentIndex(max(0, index))
        self.model_combo.blockSignals(False)
        self._on_model_changed()

    def set_image_layer(self, name: str) -> None:
        self.refresh_layers()
        index = self.image_combo.findText(name)
        if index < 0:
            raise InvalidInputError(f"no image layer named {name!r}")
        self.image_combo.setCurrentIndex(index)

    def set_model(self, name: str) -> None:
        """Select a registry model by name."""
        index = self.model_combo.findData(name)
        if index < 0:
            raise InvalidInputError(f"model {name!r} is not offered here")
        self.model_combo.setCurrentIndex(index)

    def set_custom_folder(self, path) -> None:
        """Select "custom nnU-Net folder" with ``path``."""
        self.model_combo.setCurrentIndex(self.model_combo.findData(CUSTOM))
        self.custom_edit.setText(str(path))

    def _browse_custom(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "nnU-Net v2 trained-model folder")
        if path:
            self.set_custom_folder(path)

    def _on_model_changed(self, *_) -> None:
        from ..models.registry import get_card
        from ..models.weights import installed

        name = self.model_combo.currentData()
        custom = name == CUSTOM
        self.custom_edit.setEnabled(custom)
        self.custom_browse.setEnabled(custom)
        self.roi_list.clear()
        if custom or not name:
            self.model_info.setText("Any nnU-Net v2 trained-model folder; structure names come "
                                    "from its dataset.json.")
            self.download_btn.setEnabled(False)
            self._set_roi_enabled(False)
            return
        card = get_card(name)
        text = card.description
        if card.needs_weights and not installed(card):
            text += (f"\nWeights not installed: click Download (or run `medseg weights download "
                     f"{card.name}`), or give the folder under Weights.")
        self.model_info.setText(text)
        self.download_btn.setEnabled(card.needs_weights and card.downloadable)
        for idx in sorted(card.classes):
            item = QListWidgetItem(card.classes[idx])
            item.setData(Qt.UserRole, idx)
            self.roi_list.addItem(item)
        self._set_roi_enabled(True)
        self._filter_structures(self.roi_filter.text())

    def _set_roi_enabled(self, enabled: bool) -> None:
        for w in (self.roi_filter, self.roi_list, self.roi_clear):
            w.setEnabled(enabled)

    def _filter_structures(self, text: str) -> None:
        needle = text.strip().lower()
        for i in range(self.roi_list.count()):
            item = self.roi_list.item(i)
            item.setHidden(bool(needle) and needle not in item.text().lower())

    def select_structures(self, names) -> None:
        """Select structures by name (others are deselected)."""
        wanted = {n.lower() for n in names}
        self.roi_list.clearSelection()
        found = set()
        for i in range(self.roi_list.count()):
            item = self.roi_list.item(i)
            if item.text().lower() in wanted:
                item.setSelected(True)
                found.add(item.text().lower())
        missing = wanted - found
        if missing:
            raise InvalidInputError(f"not a structure of this model: {', '.join(sorted(missing))}")

    def selected_structures(self) -> list:
        return [item.text() for item in self.roi_list.selectedItems()]

    # --------------------------------------------------------------------- run
    @property
    def running(self) -> bool:
        return self.worker is not None

    def _image_volume(self):
        from ._layers import layer_volume

        name = self.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise InvalidInputError("no image selected: open a CT/MR volume first")
        layer = self.viewer.layers[name]
        if getattr(layer, "rgb", False):
            raise InvalidInputError(f"{name!r} is an RGB image; automatic models need a "
                                    "greyscale CT/MR volume")
        data = np.asarray(layer.data)
        if data.ndim != 3:
            raise InvalidInputError(
                f"{name!r} has {data.ndim} dimensions (shape {data.shape}); automatic models need "
                "a 3D volume (open the whole series, or pick one channel/time point)")
        return layer, layer_volume(layer)

    def _model_choice(self):
        name = self.model_combo.currentData()
        if name == CUSTOM:
            path = self.custom_edit.text().strip()
            if not path:
                raise InvalidInputError("give the folder of the nnU-Net model (Browse…)")
            from pathlib import Path

            return Path(path), Path(path).name
        return name, name

    def run(self) -> None:
        """Start a run with the current choices (no-op while one is running)."""
        if self.running:
            return
        from napari.qt.threading import create_worker

        try:
            layer, volume = self._image_volume()
            model, label = self._model_choice()
        except MedsegError as exc:
            self._show_error(exc)
            self.finished.emit("error")
            return
        kwargs = {
            "weights": self.weights_edit.text().strip() or None,
            "device": self.device_combo.currentText(),
            "roi_subset": self.selected_structures() or None,
        }
        self._token = CancelToken()
        self._source = (layer, volume, label)
        # Errors are handled by _on_error (message in the widget), not re-raised in Qt's loop.
        self.worker = create_worker(_segment_job, volume, model, kwargs, self._token,
                                    _start_thread=False, _ignore_errors=True)
        self.worker.yielded.connect(self._on_progress)
        self.worker.returned.connect(self._on_returned)
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_finished)
        self._set_running(True)
        self.status.setText(f"Running {label} on {layer.name}…")
        self.progress_bar.setValue(0)
        self.worker.start()

    def cancel(self) -> None:
        """Ask the running job to stop; the result is discarded and no layer changes."""
        if self._token is not None:
            self._token.cancel()
            self.status.setText("Cancelling…")

    def download_weights(self) -> None:
        """Download the selected model's weights (https, checksum-verified) in the background."""
        if self.running:
            return
        from napari.qt.threading import create_worker

        name = self.model_combo.currentData()
        if not name or name == CUSTOM:
            return
        self._token = CancelToken()
        self._source = None
        self.worker = create_worker(_download_job, name, self._token, _start_thread=False,
                                    _ignore_errors=True)
        self.worker.yielded.connect(self._on_progress)
        self.worker.returned.connect(lambda path: self._on_downloaded(name, path))
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_finished)
        self._set_running(True)
        self.status.setText(f"Downloading {name}…")
        self.worker.start()

    # ---------------------------------------------------------------- handlers
    def _set_running(self, running: bool) -> None:
        self.run_btn.setEnabled(not running)
        self.download_btn.setEnabled(not running and self.download_btn.isEnabled())
        self.cancel_btn.setEnabled(running)
        for w in (self.image_combo, self.model_combo, self.device_combo):
            w.setEnabled(not running)

    def _on_progress(self, item) -> None:
        fraction, text = item
        self.progress_bar.setValue(int(round(1000 * fraction)))
        if text:
            self.status.setText(text)

    def _unique_name(self, base: str) -> str:
        names = {layer.name for layer in self.viewer.layers}
        if base not in names:
            return base
        i = 2
        while f"{base} [{i}]" in names:
            i += 1
        return f"{base} [{i}]"

    def _on_returned(self, result) -> None:
        from ..io.layer_data import labels_layer_tuple

        self._outcome = "done"
        layer, volume, label = self._source
        name = self._unique_name(f"{layer.name} {label}")
        from ._layers import placement_of

        data, kwargs, _ = labels_layer_tuple(result.labels, volume, result.table, name)
        # exactly the image layer's grid and units, whichever reader opened the image
        kwargs.pop("affine", None)
        kwargs.update(placement_of(layer))
        kwargs["metadata"] = dict(kwargs.get("metadata", {}), medseg_model=label,
                                  medseg_source_layer=layer.name)
        self.last_layer = self.viewer.add_labels(data, **kwargs)
        self.last_result = result
        present = int(np.count_nonzero(np.bincount(result.labels.ravel())[1:]))
        seconds = result.timings.get("total_s", 0.0)
        text = f"Done: {present} structure(s) in {name!r} ({seconds:.1f} s)."
        if result.notes:
            text += " " + " ".join(result.notes)
        self.status.setText(text)
        self.progress_bar.setValue(1000)

    def _on_downloaded(self, name: str, path) -> None:
        self._outcome = "done"
        self.status.setText(f"{name}: weights installed at {path}")
        self.refresh_models()

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, Cancelled):
            self._outcome = "cancelled"
            self.status.setText("Cancelled; no layer was changed.")
            self.progress_bar.setValue(0)
            return
        self._outcome = "error"
        self._show_error(exc)

    def _show_error(self, exc: BaseException) -> None:
        if isinstance(exc, MedsegError):
            log.info("automatic segmentation: %s", exc)
        else:
            log.error("automatic segmentation failed", exc_info=exc)
        message = user_message(exc, "gui")  # this widget's buttons and fields, not CLI flags
        self.status.setText(f"Error: {message}")
        self.progress_bar.setValue(0)

    def _on_finished(self) -> None:
        self.worker = None
        self._token = None
        self._set_running(False)
        self._on_model_changed()  # re-enables Download where it applies
        self.finished.emit(getattr(self, "_outcome", "error"))
        self._outcome = None
