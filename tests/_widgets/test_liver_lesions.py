"""GUI tests of the "Liver & lesions" widget, docked as users get it (napari's plugin proxy)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_medseg._widgets._jobs import CANCELLED
from napari_medseg._widgets.liver_lesions import AXES_LAYER, MODE_HYBRID, MODE_MEASURE


pytestmark = pytest.mark.gui


FLIPPED = (-1, 0, 0, 0, -1, 0, 0, 0, 1)  # LPS-style in-plane flips: the layers get an affine


@pytest.fixture(scope="module")
def phantom():
    from napari_medseg.phantom import make_phantom

    return make_phantom(seed=2, shape=(48, 128, 128), spacing_zyx=(2.5, 1.6, 1.6), n_lesions=3)


def _add_phantom(viewer, ph, with_labels=True, direction=None):
    from napari_medseg.io.label_table import LabelTable
    from napari_medseg.io.layer_data import image_layer_tuple, labels_layer_tuple

    ct = ph.ct if direction is None else ph.ct.with_array(ph.ct.array, direction=direction)
    data, kwargs, _ = image_layer_tuple(ct, name="ct")
    viewer.add_image(data, **kwargs)
    if with_labels:
        data, kwargs, _ = labels_layer_tuple(ph.labels, ct, LabelTable.from_names(ph.names), name="truth")
        viewer.add_labels(data, **kwargs)
    return ct


def _dock(viewer):
    """The widget as the Plugins menu docks it: it gets napari's PublicOnlyProxy viewer."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-medseg", "Liver & lesions")
    return widget


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.is_running, timeout=60000)


@pytest.fixture
def notifications():
    """Texts of the napari notifications (warnings pop-ups) emitted during the test."""
    from napari.utils.notifications import notification_manager

    seen = []

    def keep(notification):
        seen.append(str(notification.message))

    notification_manager.notification_ready.connect(keep)
    yield seen
    notification_manager.notification_ready.disconnect(keep)


def _assert_axes_on_shown_slice(viewer, lesion):
    """The axes layer draws both lines on the slice the view shows, which is the lesion's."""
    axes = viewer.layers[AXES_LAYER]
    assert len(axes.data) == 2 and all(s.shape == (2, 3) for s in axes.data)
    # the image shows the slice the long axis was measured on
    shown = viewer.layers["ct"].world_to_data(viewer.dims.point)
    assert round(float(shown[0])) == lesion.axial_slice
    # the axes layer slices at that same plane, and both lines lie on it (napari draws a
    # shape when its z is within half a data unit of the slice point)
    point_z = float(axes.world_to_data(viewer.dims.point)[0])
    for line in axes.data:
        assert np.ptp(line[:, 0]) == 0
        assert abs(float(line[0, 0]) - point_z) < 0.5, (line[0, 0], point_z)
    assert int(np.count_nonzero(axes._data_view._displayed)) == 2  # what napari will draw


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    import torch

    from napari_medseg.models.hybrid_liver import (
        DEFAULT_PREPROCESSING,
        build_model,
        make_checkpoint,
        save_checkpoint,
    )

    torch.manual_seed(0)
    cfg = {"features": 4, "levels": 3, "transformer_layers": 1, "heads": 2}
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    pre = dict(DEFAULT_PREPROCESSING, stage1_spacing_xyz=[4.0, 4.0, 5.0], stage2_spacing_xyz=[2.0, 2.0, 5.0])
    save_checkpoint(make_checkpoint(build_model(cfg), build_model(cfg), preprocessing=pre), path)
    # one torch thread: on a busy CI machine OpenMP spin-waiting makes 2 threads ~10x slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield path
    torch.set_num_threads(threads)


@pytest.mark.parametrize("direction", [None, FLIPPED], ids=["axis-aligned", "flipped-affine"])
def test_measure_select_every_row_draws_axes_on_shown_slice(make_napari_viewer, qtbot, phantom, tmp_path,
                                                            notifications, direction):
    viewer = make_napari_viewer()
    ct = _add_phantom(viewer, phantom, direction=direction)
    widget = _dock(viewer)
    widget.mode_combo.setCurrentText(MODE_MEASURE)
    widget.labels_combo.setCurrentText("truth")
    n_layers = len(viewer.layers)
    widget.run()
    _wait(qtbot, widget)
    assert widget.report is not None, widget.status.text()
    assert widget.table.rowCount() == len(phantom.lesions) == 3
    assert len(viewer.layers) == n_layers  # measuring adds no labels layer
    by_id = {lesion.id: lesion for lesion in widget.report.lesions}

    # every row in turn, in two sort orders (rows and lesions no longer coincide)
    for column, order in ((1, Qt.AscendingOrder), (7, Qt.DescendingOrder)):
        widget.table.sortItems(column, order)
        for row in range(widget.table.rowCount()):
            widget.select_row(row)
            qtbot.wait(10)
            lesion = by_id[int(widget.table.item(row, 0).text())]
            _assert_axes_on_shown_slice(viewer, lesion)
            centre = ct.index_to_physical(lesion.centroid_vox)[::-1]
            assert np.allclose(viewer.scene.camera.center[-2:], centre[-2:], atol=1e-3)

    # the smallest lesion's drawn long axis matches the analytic one (found by centroid)
    widget.table.sortItems(1)
    widget.select_row(0)
    smallest = min(widget.report.lesions, key=lambda l: l.volume_ml)
    axes = viewer.layers[AXES_LAYER]
    long_mm = np.linalg.norm(np.diff(axes.data[0], axis=0) * np.asarray(ct.spacing_zyx))
    assert long_mm == pytest.approx(smallest.long_axis_mm, rel=1e-5)
    spec = min(phantom.lesions, key=lambda s: np.linalg.norm(np.subtract(s.center_zyx_vox, smallest.centroid_vox)))
    assert abs(long_mm - spec.longest_axial_diameter_mm) <= 1.6

    # every layer is in the image's physical units and grid: no "Inconsistent units" pop-up
    for layer in viewer.layers:
        assert [str(u) for u in layer.units] == ["millimeter"] * 3, layer.name
        np.testing.assert_allclose(layer.scale, viewer.layers["ct"].scale)
    assert viewer.layers.extent.units is not None
    assert viewer.dims.range[0].step == pytest.approx(ct.spacing_zyx[0])
    assert not [m for m in notifications if "nconsistent units" in m], notifications

    widget.export_csv(tmp_path / "t.csv")
    widget.export_json(tmp_path / "t.json")
    assert len(list(csv.DictReader(open(tmp_path / "t.csv")))) == 3
    assert json.loads((tmp_path / "t.json").read_text())["n_lesions"] == 3


def test_run_hybrid_adds_labels_layer_and_cancel_leaves_layers(make_napari_viewer, qtbot, phantom, tiny_checkpoint,
                                                              notifications):
    viewer = make_napari_viewer()
    _add_phantom(viewer, phantom, with_labels=False)
    widget = _dock(viewer)
    widget.mode_combo.setCurrentText(MODE_HYBRID)
    widget.weights_edit.setText(str(tiny_checkpoint))
    widget.device_combo.setCurrentText("cpu")

    # cancel straight away: nothing added, widget usable again
    before = [layer.name for layer in viewer.layers]
    widget.run()
    widget.cancel()
    _wait(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == before
    assert widget.status.text() == CANCELLED and widget.report is None
    assert widget.run_button.isEnabled()

    widget.run()
    _wait(qtbot, widget)
    assert widget.result_layer is not None, widget.status.text()
    layer = widget.result_layer
    assert layer.data.shape == phantom.ct.shape and layer.data.dtype.kind in "ui"
    assert set(np.unique(layer.data)) <= {0, 1, 2}
    assert np.allclose(layer.scale, phantom.ct.spacing_zyx)
    np.testing.assert_allclose(layer.translate, viewer.layers["ct"].translate)
    assert [str(u) for u in layer.units] == ["millimeter"] * 3
    names = dict(zip(layer.features["index"], layer.features["name"]))
    assert names[1] == "liver" and names[2] == "liver_lesion"
    assert len(viewer.layers) == len(before) + 1
    assert viewer.layers.extent.units is not None
    assert not [m for m in notifications if "nconsistent units" in m], notifications


def test_failed_run_clears_previous_table_and_recovers(make_napari_viewer, qtbot, phantom, tmp_path):
    viewer = make_napari_viewer()
    _add_phantom(viewer, phantom)
    widget = _dock(viewer)
    # a first, successful measurement fills the table and draws axes
    widget.mode_combo.setCurrentText(MODE_MEASURE)
    widget.labels_combo.setCurrentText("truth")
    widget.run()
    _wait(qtbot, widget)
    assert widget.table.rowCount() == 3
    widget.select_row(0)
    assert len(viewer.layers[AXES_LAYER].data) == 2

    # then a run with a broken checkpoint fails: its error is not shown over the old table
    widget.mode_combo.setCurrentText(MODE_HYBRID)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    widget.weights_edit.setText(str(bad))
    widget.device_combo.setCurrentText("cpu")
    n = len(viewer.layers)
    widget.run()
    _wait(qtbot, widget)
    assert widget.status.text().startswith("Error:") and "bad.pt" in widget.status.text()
    assert widget.table.rowCount() == 0 and widget.summary.text() == "" and widget.report is None
    assert not widget.csv_button.isEnabled() and not widget.json_button.isEnabled()
    assert len(viewer.layers[AXES_LAYER].data) == 0
    assert len(viewer.layers) == n and widget.run_button.isEnabled()

    # the widget works again afterwards
    widget.mode_combo.setCurrentText(MODE_MEASURE)
    widget.run()
    _wait(qtbot, widget)
    assert widget.table.rowCount() == 3 and widget.csv_button.isEnabled()


def test_missing_weights_message_speaks_the_widget_language(make_napari_viewer, qtbot, phantom, tmp_path,
                                                            monkeypatch):
    monkeypatch.setenv("MEDSEG_WEIGHTS_DIR", str(tmp_path / "empty-cache"))
    viewer = make_napari_viewer()
    _add_phantom(viewer, phantom, with_labels=False)
    widget = _dock(viewer)
    widget.mode_combo.setCurrentText(MODE_HYBRID)
    widget.weights_edit.setText("")
    widget.device_combo.setCurrentText("cpu")
    widget.run()
    _wait(qtbot, widget)
    text = widget.status.text()
    assert text.startswith("Error:") and "hybrid-liver" in text
    assert "--" not in text and "medseg weights import" not in text, text  # no command-line flags
    assert "Checkpoint" in text, text  # names the widget's own field
