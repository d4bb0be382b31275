"""Dock widget: CT window presets (soft tissue, lung, bone, liver, brain, full range).

Thin: the numbers live in :mod:`napari_medseg.io.windows`; this widget only applies
them to the selected (or first) Image layer.
"""

from __future__ import annotations

from typing import Optional

from qtpy.QtWidgets import QDoubleSpinBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..errors import InvalidInputError
from ..io.windows import PRESETS, contrast_limits_to_window, preset_contrast_limits, window_to_contrast_limits
from ._jobs import StatusLine
from ._layout import make_scrollable


class WindowPresetsWidget(QWidget):
    """Buttons that set the contrast limits of an Image layer to a CT window."""

    def __init__(self, napari_viewer, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        layout = QVBoxLayout(self)
        grid = QGridLayout()
        self.buttons = {}
        for i, name in enumerate(PRESETS):
            window = PRESETS[name]
            button = QPushButton(name.title() if name != "full range" else "Full range")
            button.setToolTip("min .. max of the data" if window is None else f"level {window[0]:g} HU, width {window[1]:g} HU")
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
            limits = preset_contrast_limits(name, layer.data if PRESETS.get(name.lower(), 0) is None else None)
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
