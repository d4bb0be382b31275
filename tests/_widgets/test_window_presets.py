"""The CT window presets widget in a real napari viewer."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.gui
def test_window_presets_widget(make_napari_viewer, qtbot):
    from napari_medseg._widgets.window_presets import WindowPresetsWidget

    viewer = make_napari_viewer()
    widget = WindowPresetsWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.apply_preset("lung") is None
    assert "no image layer" in widget.status.text()
    layer = viewer.add_image(np.linspace(-1000, 1000, 64).reshape(4, 4, 4))
    widget.buttons["lung"].click()
    assert list(layer.contrast_limits) == [-1350.0, 150.0]
    assert widget.apply_preset("bone") == (-500.0, 1300.0)
    assert list(layer.contrast_limits) == [-500.0, 1300.0]
    assert widget.apply_preset("full range") == (-1000.0, 1000.0)
    assert widget.apply_preset("nonsense") is None and "unknown window preset" in widget.status.text()
    widget.apply_preset("liver")
    assert (widget.level.value(), widget.width.value()) == (60.0, 160.0)  # shows the preset's L/W
    widget.level.setValue(50)
    widget.width.setValue(350)
    widget.apply_button.click()
    assert list(layer.contrast_limits) == [-125.0, 225.0]
    assert widget.apply_window(0, 0) is None and "positive width" in widget.status.text()
