"""The Window presets widget (CT HU windows, MR percentile windows) in a real napari viewer."""

from __future__ import annotations

import numpy as np
import pytest

from tests.napari_open import open_as_user, viewer_after_first_use  # noqa: F401  (fixture)


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


@pytest.mark.gui
def test_window_presets_offer_mr_windows_for_an_mr_file_and_follow_the_override(
        viewer_after_first_use, qtbot, tmp_path):
    import SimpleITK as sitk

    from ._dock import dock

    rng = np.random.default_rng(2)
    mr = rng.gamma(2.0, 200.0, (10, 32, 32)).astype(np.float32)
    path = tmp_path / "t2.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(mr), str(path))  # NIfTI states no modality
    viewer = viewer_after_first_use
    widget = dock(viewer, "Window presets")
    layer = open_as_user(viewer, path)[0]
    widget.refresh()
    assert widget.layer_modality() == "MR" and "MR" in widget.modality_label.text()
    visible = {n for n, b in widget.buttons.items() if not b.isHidden()}
    assert "lung" not in visible and "soft tissue" not in visible
    assert {"robust (1-99 %)", "wide (0.5-99.5 %)", "full range"} <= visible
    lo, hi = widget.apply_preset("robust (1-99 %)")
    assert list(layer.contrast_limits) == [lo, hi] and 0 < lo < hi < float(mr.max())
    # an HU preset typed on MR is refused with the reason; the limits stay
    assert widget.apply_preset("lung") is None and "MR" in widget.status.text()
    assert list(layer.contrast_limits) == [lo, hi]
    # the user says it is CT after all: HU presets appear and apply
    widget.modality.setCurrentText("CT")
    assert layer.metadata["medseg_modality"] == "CT"
    assert not widget.buttons["lung"].isHidden() and widget.buttons["robust (1-99 %)"].isHidden()
    assert widget.apply_preset("lung") == (-1350.0, 150.0)
    widget.modality.setCurrentText("auto")
    assert widget.layer_modality() == "MR"


@pytest.mark.gui
def test_an_mr_dicom_series_is_mr_from_its_tag_and_the_override_wins(
        viewer_after_first_use, qtbot, tmp_path):
    """A DICOM folder opened as users do: the Modality tag (MR) decides the windows offered,
    and the user's CT/MR choice beats the tag."""
    from napari_medseg.testing.volumes import write_pydicom_mr_series

    from ._dock import dock

    write_pydicom_mr_series(tmp_path / "series", n=5)
    viewer = viewer_after_first_use
    widget = dock(viewer, "Window presets")
    layer = open_as_user(viewer, tmp_path / "series")[0]
    widget.refresh()
    assert widget.layer_modality() == "MR"
    assert widget.buttons["lung"].isHidden() and not widget.buttons["robust (1-99 %)"].isHidden()
    widget.modality.setCurrentText("CT")
    assert layer.metadata["medseg_modality"] == "CT" and widget.layer_modality() == "CT"
    assert not widget.buttons["lung"].isHidden()
    widget.modality.setCurrentText("auto")
    assert widget.layer_modality() == "MR"
