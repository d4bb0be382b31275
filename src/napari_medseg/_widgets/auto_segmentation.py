"""Dock widget "Automatic segmentation": pick an image and a model, run, get one Labels layer.

Wiring only: the work is :func:`napari_medseg.inference.segment.segment_with_info` (and
:func:`napari_medseg.models.weights.download`), run by the widget's :class:`~._jobs.JobRunner`
(progress, cancel); on the main thread the result becomes a *new* Labels layer (names in
``features``, colours, physical placement of the image). Errors become a message in the
widget's words; the widget is usable again after any outcome.

"Where it runs" (Options): this computer, or a ``medseg serve`` machine (URL and token
file, remembered between napari sessions); the job is then
:func:`napari_medseg.serve.settings.run_segment`, which calls
:func:`~napari_medseg.serve.client.remote_segment` (the server's progress shows in the bar,
Cancel cancels the server's job, the result is the same as a local run's).

"CPU runtime" (Options): what runs the network on this computer's CPU (``auto``,
``openvino``, ``torch``; :mod:`napari_medseg.inference.runtimes`); after a run the status
line says which ran and, after a fallback, why.
"""

from __future__ import annotations

import logging

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
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

from ..errors import InvalidInputError, MedsegError
from ._jobs import JobRunner, StatusLine
from ._layers import LayerPicker, layer_volume, placement_of, unique_name
from ._layout import collapsible, make_scrollable, runtime_combo
from ._server import ServerFields

log = logging.getLogger(__name__)

CUSTOM = "custom nnU-Net folder…"
DEVICES = ("auto", "cpu", "cuda", "mps")


class AutoSegmentationWidget(QWidget):
    """Run an automatic model (weights-free tissue model, TotalSegmentator, nnU-Net folder).

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (napari passes it).

    Public methods for scripts and tests: :meth:`run`, :meth:`cancel`, :meth:`set_model`,
    :meth:`set_custom_folder`, :meth:`select_structures`, :meth:`selected_structures`,
    :meth:`set_image_layer`, :meth:`download_weights`, :meth:`set_confidence`,
    :meth:`set_runtime`, :meth:`show_flagged` (:attr:`review`, :attr:`confidence_layer`). The ``finished`` signal is emitted
    with ``"done"``, ``"cancelled"`` or ``"error"`` when a run ends.
    """

    finished = Signal(str)

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.last_layer = None
        self.last_result = None
        self.confidence_layer = None  # the confidence Image layer of the last run (if asked)
        self.review: list = []  # StructureConfidence of the flagged structures, least sure first
        self._review_pending = None  # the summary the worker computed for the run in flight

        from napari.layers import Image

        self.image_combo = LayerPicker(napari_viewer, Image)
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
        self.runtime_combo = runtime_combo("the network", "model and patch size",
                                           "GPUs always use PyTorch.")
        self.run_btn = QPushButton("Run")
        self.cancel_btn = QPushButton("Cancel")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.status = StatusLine("Ready.")
        self.jobs = JobRunner(self.status, progress_bar=self.progress_bar, cancel_button=self.cancel_btn,
                              busy=[self.run_btn, self.download_btn, self.image_combo, self.model_combo,
                                    self.device_combo, self.runtime_combo])
        self.jobs.finished.connect(self._on_finished)

        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        form.addRow("Model", self.model_combo)
        custom_row = QHBoxLayout()
        custom_row.addWidget(self.custom_edit)
        custom_row.addWidget(self.custom_browse)
        form.addRow("Folder", custom_row)
        # a multi-sequence model folder: one more image picker per channel after the first,
        # named from its dataset.json (the Image picker above is the first channel)
        self.channel_pickers = {}
        self.channel_names = []
        self.channel_form = QFormLayout()
        form.addRow(self.channel_form)
        self.form = form
        # what most runs leave alone, folded away so that several docks fit one screen
        self.server = ServerFields()
        self.confidence_check = QCheckBox("confidence map and review flags")
        self.confidence_check.setToolTip(
            "Also add the model's confidence (probability of each voxel's class; hidden layer, "
            "magma: dark = unsure) and list the structures to review. Network models only.")
        self.review_label = QLabel("")
        self.review_label.setWordWrap(True)
        self.review_list = QListWidget()
        self.review_list.setMaximumHeight(120)
        self.review_list.setVisible(False)
        self.options = collapsible("Options (weights folder, device, where it runs)",
                                   [("Weights", self.weights_edit), ("Device", self.device_combo),
                                    ("CPU runtime", self.runtime_combo),
                                    ("Confidence", self.confidence_check),
                                    *self.server.rows()])
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
        layout.addWidget(self.review_label)
        layout.addWidget(self.review_list)
        layout.addStretch(1)
        make_scrollable(self)

        self.run_btn.clicked.connect(self.run)
        self.review_list.itemClicked.connect(lambda item: self.show_flagged(item.data(Qt.UserRole)))
        self.confidence_check.toggled.connect(self._on_confidence_toggled)
        self.download_btn.clicked.connect(self.download_weights)
        self.model_combo.currentIndexChanged.connect(self._on_model_changed)
        self.roi_filter.textChanged.connect(self._filter_structures)
        self.roi_clear.clicked.connect(self.roi_list.clearSelection)
        self.custom_browse.clicked.connect(self._browse_custom)
        self.custom_edit.textChanged.connect(self._update_channels)
        self.refresh_models()

    # ------------------------------------------------------------------ pickers
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
        self.image_combo.set_layer(name)

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

    def set_runtime(self, name: str) -> None:
        """Choose what runs the network on the CPU (``auto``, ``openvino``, ``torch``)."""
        from ..inference.runtimes import check_runtime

        self.runtime_combo.setCurrentText(check_runtime(name))

    def _update_channels(self, *_) -> None:
        """One image picker per extra input channel of the chosen model folder."""
        from ..inference.segment import model_channels

        names = []
        if self.model_combo.currentData() == CUSTOM and self.custom_edit.text().strip():
            try:
                names = list(model_channels(self._model_choice()[0]).values())
            except MedsegError:
                names = []  # not (yet) a model folder: the run says why
        if names == self.channel_names:
            return
        while self.channel_form.rowCount():
            self.channel_form.removeRow(0)
        self.channel_pickers = {}
        self.channel_names = names
        from napari.layers import Image

        for name in names[1:]:
            picker = LayerPicker(self.viewer, Image)
            self.channel_form.addRow(f"{name} image", picker)
            self.channel_pickers[name] = picker
        label = self.form.labelForField(self.image_combo)
        if label is not None:
            label.setText(f"Image ({names[0]})" if len(names) > 1 else "Image")

    def set_channel_layer(self, channel: str, name: str) -> None:
        """Pick the image layer ``name`` for input channel ``channel`` of the model."""
        if channel not in self.channel_pickers:
            raise InvalidInputError(f"the model has no extra channel {channel!r}; its channels: "
                                    + ", ".join(self.channel_names or ["one image"]))
        self.channel_pickers[channel].set_layer(name)

    def _channel_volumes(self, volume):
        """``{channel: Volume}`` for a multi-sequence model, else ``volume`` itself."""
        if not self.channel_pickers:
            return volume
        out = {self.channel_names[0]: volume}
        for name, picker in self.channel_pickers.items():
            layer = picker.layer()
            if layer is None:
                raise InvalidInputError(f"the model needs a {name} image: pick it under "
                                        f"'{name} image'")
            out[name] = layer_volume(layer)
        return out

    def _browse_custom(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "nnU-Net v2 trained-model folder")
        if path:
            self.set_custom_folder(path)

    def _on_model_changed(self, *_) -> None:
        from ..models.registry import get_card
        from ..models.weights import installed

        name = self.model_combo.currentData()
        custom = name == CUSTOM
        self._update_channels()
        self.custom_edit.setEnabled(custom)
        self.custom_browse.setEnabled(custom)
        self.roi_list.clear()
        self._sync_confidence(name)
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
        return self.jobs.running

    def _image_volume(self):
        layer = self.image_combo.layer()
        if layer is None:
            raise InvalidInputError("no image selected: open a CT/MR volume first")
        name = layer.name
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
        from ..serve.settings import run_segment

        if self.running:
            return
        try:
            layer, volume = self._image_volume()
            model, label = self._model_choice()
            inputs = self._channel_volumes(volume)
        except MedsegError as exc:
            self.status.error(exc)
            self.finished.emit("error")
            return
        kwargs = {
            "weights": self.weights_edit.text().strip() or None,
            "device": self.device_combo.currentText(),
            "roi_subset": self.selected_structures() or None,
            "confidence": self.confidence_check.isChecked(),
            "runtime": self.runtime_combo.currentText(),
        }
        setting = self.server.setting()

        def job(progress, cancel):
            return run_segment(inputs, model, setting, progress=progress, cancel=cancel, **kwargs)

        job = self._with_review(job)
        where = "" if not setting.remote else f" on {setting.where}"
        self.jobs.start(job, done=lambda result: self._on_returned(layer, volume, label, result),
                        text=f"Running {label} on {layer.name}{where}…")

    def cancel(self) -> None:
        """Ask the running job to stop; the result is discarded and no layer changes."""
        self.jobs.cancel()

    def download_weights(self) -> None:
        """Download the selected model's weights (https, checksum-verified) in the background."""
        from ..models.weights import download

        name = self.model_combo.currentData()
        if self.running or not name or name == CUSTOM:
            return
        self.jobs.start(lambda progress, cancel: download(name, progress=progress, cancel=cancel),
                        done=lambda path: self._on_downloaded(name, path), text=f"Downloading {name}…")

    # ---------------------------------------------------------------- handlers
    def _on_returned(self, layer, volume, label: str, result) -> None:
        from ..inference.runtimes import describe_runtime
        from ..io.layer_data import labels_layer_tuple

        name = unique_name(self.viewer, f"{layer.name} {label}")
        data, kwargs, _ = labels_layer_tuple(result.labels, volume, result.table, name)
        # exactly the image layer's grid and units, whichever reader opened the image
        kwargs.pop("affine", None)
        kwargs.update(placement_of(layer))
        kwargs["metadata"] = dict(kwargs.get("metadata", {}), medseg_model=label,
                                  medseg_source_layer=layer.name)
        self.last_layer = self.viewer.add_labels(data, **kwargs)
        self.last_result = result
        self._show_confidence(layer, result)
        present = int(np.count_nonzero(np.bincount(result.labels.ravel())[1:]))
        seconds = result.timings.get("total_s", 0.0)
        text = f"Done: {present} structure(s) in {name!r} ({seconds:.1f} s)."
        text += describe_runtime(getattr(result, "runtime", None))
        if result.notes:
            text += " " + " ".join(result.notes)
        self.status.message(text)

    # -------------------------------------------------------------- confidence
    def _confidence_reason(self, name) -> str:
        """Why the chosen model has no confidence map (``""``: it has one)."""
        from ..analysis.calibration import confidence_unavailable

        if not name or name == CUSTOM:
            return ""
        try:
            return confidence_unavailable(name)
        except MedsegError:
            return ""

    def _sync_confidence(self, name) -> None:
        # on for network models, off for those without probabilities (hu-tissue, deepbet)
        self.confidence_check.blockSignals(True)
        self.confidence_check.setChecked(not self._confidence_reason(name))
        self.confidence_check.blockSignals(False)

    def _on_confidence_toggled(self, checked: bool) -> None:
        why = self._confidence_reason(self.model_combo.currentData())
        if checked and why:
            self.status.message(f"{why}: the run will give labels only.")

    def set_confidence(self, on: bool) -> None:
        """Ask for (or not) the confidence map and review flags of the next run."""
        self.confidence_check.setChecked(bool(on))

    def _with_review(self, job):
        """``job`` that also sums the confidence up per structure, in the worker thread."""
        def reviewed(progress, cancel):
            from ..analysis.confidence import summarise_confidence

            result = job(progress, cancel)
            self._review_pending = None
            if getattr(result, "confidence", None) is not None:
                self._review_pending = summarise_confidence(
                    result.labels, result.confidence.max_prob, result.table.names)
            return result
        return reviewed

    def _show_confidence(self, image_layer, result) -> None:
        """Add the confidence layer and list the flagged structures (main thread)."""
        from ..analysis.confidence import flagged
        from ._confidence import add_confidence_layer

        summary, self._review_pending = self._review_pending, None
        self.review_list.clear()
        self.review = []
        self.confidence_layer = None
        if result.confidence is None or summary is None:
            self.review_label.setText("")
            self.review_list.setVisible(False)
            return
        self.confidence_layer = add_confidence_layer(self.viewer, image_layer, self.last_layer,
                                                     result.confidence)
        self.review = flagged(summary)
        self.review_list.setVisible(bool(self.review))
        self.review_label.setText(
            f"To review ({len(self.review)} of {len(summary)} structures; click one to go "
            "there):" if self.review else
            f"No structure flagged for review ({len(summary)} checked; confidence is not accuracy).")
        for k, s in enumerate(self.review):
            item = QListWidgetItem(f"{s.name}: {'; '.join(s.reasons)}")
            item.setData(Qt.UserRole, k)
            self.review_list.addItem(item)
        # the layer moves behind the labels so that, shown, it does not hide them
        layers = self.viewer.layers
        names = [l.name for l in layers]
        if self.last_layer is not None and self.last_layer.name in names:
            layers.move(names.index(self.confidence_layer.name), names.index(self.last_layer.name))

    def show_flagged(self, index: int) -> None:
        """Go to flagged structure ``index`` (in :attr:`review` order): its least sure slice,
        centred, with its label selected in the labels layer."""
        from ._confidence import show_structure

        if not 0 <= int(index) < len(self.review) or self.last_layer is None:
            return
        image = self.image_combo.layer()
        source = (self.last_layer.metadata or {}).get("medseg_source_layer")
        names = [l.name for l in self.viewer.layers]
        if source in names:
            image = self.viewer.layers[source]
        show_structure(self.viewer, image if image is not None else self.last_layer,
                       self.last_layer, self.review[int(index)])

    def _on_downloaded(self, name: str, path) -> None:
        self.status.message(f"{name}: weights installed at {path}")
        self.refresh_models()

    def _on_finished(self, state: str) -> None:
        self._on_model_changed()  # re-enables Download where it applies
        self.finished.emit(state)
