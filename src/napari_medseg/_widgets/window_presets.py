"""Dock widget: window presets, CT (HU level/width) or MR (percentile windows).

Thin: the numbers and the modality rules live in :mod:`napari_medseg.io.windows`; this
widget shows the presets that fit the selected (or first) Image layer's modality, lets the
user override that modality, and applies a window to the layer.
"""

from __future__ import annotations

from typing import Optional

from qtpy.QtWidgets import (QComboBox, QDoubleSpinBox, QGridLayout, QHBoxLayout, QLabel, QPushButton,
                            QVBoxLayout, QWidget)

from ..errors import InvalidInputError
from ..io.windows import (MODALITY_CHOICES, MR_PRESETS, PRESETS, contrast_limits_to_window, image_modality,
                          preset_contrast_limits, presets_for, window_to_contrast_limits)
from ._jobs import StatusLine
from ._layout import make_scrollable


class WindowPresetsWidget(QWidget):
    """Buttons that set the contrast limits of an Image layer to a CT or MR window."""

    def __init__(self, napari_viewer, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(QLabel("Modality"))
        self.modality = QComboBox()
        self.modality.addItems(list(MODALITY_CHOICES))
        self.modality.setToolTip("auto: from the file (DICOM tag, header, sidecar) or the values; "
                                 "CT or MR: override it for this layer")
        self.modality.currentTextChanged.connect(self._override_modality)
        row.addWidget(self.modality)
        self.modality_label = QLabel("")
        row.addWidget(self.modality_label, 1)
        layout.addLayout(row)
        grid = QGridLayout()
        self.buttons = {}
        for i, name in enumerate(dict.fromkeys(list(PRESETS) + list(MR_PRESETS))):
            window = PRESETS.get(name) if name in PRESETS else None
            pct = MR_PRESETS.get(name)
            button = QPushButton(name[:1].upper() + name[1:])
            if name == "full range":
                button.setToolTip("min .. max of the data")
            elif pct is not None:
                button.setToolTip(f"{pct[0]:g}th to {pct[1]:g}th percentile of this image (MR)")
            else:
                button.setToolTip(f"level {window[0]:g} HU, width {window[1]:g} HU (CT)")
            button.clicked.connect(lambda _checked=False, n=name: self.apply_preset(n))
            grid.addWidget(button, i // 3, i % 3)
            self.buttons[name] = button
        layout.addLayout(grid)
        custom = QHBoxLayout()
        self.level = QDoubleSpinBox()
        self.width = QDoubleSpinBox()
        for box, label, value, lo in ((self.level, "L", 40.0, -5000.0), (self.width, "W", 400.0, 1.0)):
            box.setRange(lo, 10000.0)
            box.setDecimals(0)
            box.setValue(value)
            custom.addWidget(QLabel(label))
            custom.addWidget(box)
        self.apply_button = QPushButton("Apply")
        self.apply_button.setToolTip("apply this level / width (HU)")
        self.apply_button.clicked.connect(lambda _checked=False: self.apply_window(self.level.value(), self.width.value()))
        custom.addWidget(self.apply_button)
        layout.addLayout(custom)
        self.status = StatusLine("")
        layout.addWidget(self.status)
        layout.addStretch(1)
        make_scrollable(self)  # the dock shrinks and scrolls when several are docked
        self.viewer.layers.selection.events.active.connect(self.refresh)
        self.viewer.layers.events.inserted.connect(self.refresh)
        self.viewer.layers.events.removed.connect(self.refresh)
        self.refresh()

    def layer_modality(self, layer=None) -> Optional[str]:
        """The modality of ``layer`` (default: :meth:`target_layer`) by the core's rules."""
        from ._layers import layer_volume

        layer = layer if layer is not None else self.target_layer()
        return None if layer is None else image_modality(layer_volume(layer))

    def refresh(self, *_event) -> None:
        """Show the presets that fit the target layer's modality (all when unknown)."""
        layer = self.target_layer()
        modality = self.layer_modality(layer)
        offered = set(presets_for(modality))
        for name, button in self.buttons.items():
            button.setVisible(name in offered)
        override = str((layer.metadata or {}).get("medseg_modality") or "auto") if layer is not None else "auto"
        self.modality.blockSignals(True)
        self.modality.setCurrentText(override.upper() if override.lower() != "auto" else "auto")
        self.modality.blockSignals(False)
        self.modality_label.setText("" if layer is None else f"{layer.name}: {modality or 'unknown'}")

    def _override_modality(self, text: str) -> None:
        layer = self.target_layer()
        if layer is None:
            return
        meta = dict(layer.metadata or {})
        meta["medseg_modality"] = text if text != "auto" else None
        layer.metadata = meta
        self.refresh()

    def target_layer(self):
        """The active Image layer, else the top-most Image layer, else None."""
        from napari.layers import Image

        active = self.viewer.layers.selection.active
        if isinstance(active, Image):
            return active
        for layer in reversed(list(self.viewer.layers)):
            if isinstance(layer, Image):
                return layer
        return None

    def apply_window(self, level: float, width: float, layer=None) -> Optional[tuple]:
        """Apply a custom window (level, width in HU); returns the contrast limits or None."""
        layer = layer if layer is not None else self.target_layer()
        if layer is None:
            self.status.error("there is no image layer to window: open an image first", notify=False)
            return None
        try:
            limits = window_to_contrast_limits(level, width)
        except InvalidInputError as exc:
            self.status.error(exc, notify=False)
            return None
        self._set_limits(layer, limits)
        self.status.message(f"{layer.name}: L {level:g}, W {width:g}")
        return limits

    def _set_limits(self, layer, limits: tuple) -> None:
        lo, hi = limits
        rng = layer.contrast_limits_range
        # Widen the slider range so windows beyond the data range (e.g. bone on MR) still apply.
        layer.contrast_limits_range = (min(float(rng[0]), lo), max(float(rng[1]), hi))
        layer.contrast_limits = [lo, hi]

    def apply_preset(self, name: str, layer=None) -> Optional[tuple]:
        """Apply preset ``name`` to ``layer`` (default: :meth:`target_layer`).

        Returns the contrast limits set, or None (with a message in the widget) when
        there is no image layer or the preset is unknown.
        """
        layer = layer if layer is not None else self.target_layer()
        if layer is None:
            self.status.error("there is no image layer to window: open an image first", notify=False)
            return None
        try:
            limits = preset_contrast_limits(name, layer.data, modality=self.layer_modality(layer))
        except InvalidInputError as exc:
            self.status.error(exc, notify=False)
            return None
        lo, hi = limits
        self._set_limits(layer, limits)
        level, width = contrast_limits_to_window(limits)
        self.level.setValue(level)
        self.width.setValue(width)
        self.status.message(f"{layer.name}: {name} (L {level:g}, W {width:g})")
        return (lo, hi)
