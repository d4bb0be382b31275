"""GUI tests of the "Liver & lesions" widget (driven through its public methods)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from napari_medseg._widgets.liver_lesions import AXES_LAYER, MODE_HYBRID, MODE_MEASURE, LiverLesionWidget


@pytest.fixture(scope="module")
def phantom():
    from napari_medseg.phantom import make_phantom

    return make_phantom(seed=2, shape=(48, 128, 128), spacing_zyx=(2.5, 1.6, 1.6), n_lesions=3)


def _add_phantom(viewer, ph, with_labels=True):
    from napari_medseg.io.label_table import LabelTable
    from napari_medseg.io.layer_data import image_layer_tuple, labels_layer_tuple

    data, kwargs, _ = image_layer_tuple(ph.ct, name="ct")
    viewer.add_image(data, **kwargs)
    if with_labels:
        data, kwargs, _ = labels_layer_tuple(ph.labels, ph.ct, LabelTable.from_names(ph.names), name="truth")
        viewer.add_labels(data, **kwargs)


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.is_running, timeout=60000)


def test_measure_existing_labels_table_select_export(make_napari_viewer, qtbot, phantom, tmp_path):
    viewer = make_napari_viewer()
    _add_phantom(viewer, phantom)
    widget = LiverLesionWidget(viewer)
    qtbot.addWidget(widget)
    widget.mode_combo.setCurrentText(MODE_MEASURE)
    widget.labels_combo.setCurrentText("truth")
    n_layers = len(viewer.layers)
    widget.run()
    _wait(qtbot, widget)
    assert widget.report is not None, widget.status.text()
    assert widget.table.rowCount() == len(phantom.lesions) == 3
    assert len(viewer.layers) == n_layers  # measuring adds no labels layer

    # sorting by volume ascending, then selecting the first row picks the smallest lesion
    widget.table.sortItems(1)
    widget.select_row(0)
    smallest = min(widget.report.lesions, key=lambda l: l.volume_ml)
    axes = viewer.layers[AXES_LAYER]
    assert len(axes.data) == 2 and all(s.shape == (2, 3) for s in axes.data)
    assert np.allclose(axes.data[0], np.asarray(smallest.long_axis_xyz)[:, ::-1])
    z_world = viewer.dims.point[0]
    expected_z = phantom.ct.index_to_physical([smallest.axial_slice, 0, 0])[2]
    assert z_world == pytest.approx(expected_z, abs=phantom.ct.spacing[2] / 2 + 1e-6)
    assert np.allclose(viewer.camera.center[-2:], np.asarray(smallest.centroid_xyz)[::-1][-2:], atol=1e-3)

    # the drawn long axis matches the analytic lesion (same lesion, found by centroid)
    spec = min(phantom.lesions, key=lambda s: np.linalg.norm(np.subtract(s.center_xyz_mm, smallest.centroid_xyz)))
    assert abs(np.linalg.norm(np.diff(axes.data[0], axis=0)) - spec.longest_axial_diameter_mm) <= 1.6

    widget.export_csv(tmp_path / "t.csv")
    widget.export_json(tmp_path / "t.json")
    assert len(list(csv.DictReader(open(tmp_path / "t.csv")))) == 3
    assert json.loads((tmp_path / "t.json").read_text())["n_lesions"] == 3


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


def test_run_hybrid_adds_labels_layer_and_cancel_leaves_layers(make_napari_viewer, qtbot, phantom, tiny_checkpoint):
    viewer = make_napari_viewer()
    _add_phantom(viewer, phantom, with_labels=False)
    widget = LiverLesionWidget(viewer)
    qtbot.addWidget(widget)
    widget.mode_combo.setCurrentText(MODE_HYBRID)
    widget.weights_edit.setText(str(tiny_checkpoint))
    widget.device_combo.setCurrentText("cpu")

    # cancel straight away: nothing added, widget usable again
    before = [layer.name for layer in viewer.layers]
    widget.run()
    widget.cancel()
    _wait(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == before
    assert "cancel" in widget.status.text()
    assert widget.run_button.isEnabled()

    widget.run()
    _wait(qtbot, widget)
    assert widget.result_layer is not None, widget.status.text()
    layer = widget.result_layer
    assert layer.data.shape == phantom.ct.shape and layer.data.dtype.kind in "ui"
    assert set(np.unique(layer.data)) <= {0, 1, 2}
    assert np.allclose(layer.scale, phantom.ct.spacing_zyx)
    names = dict(zip(layer.features["index"], layer.features["name"]))
    assert names[1] == "liver" and names[2] == "liver_lesion"
    assert len(viewer.layers) == len(before) + 1


def test_bad_checkpoint_shows_error_and_recovers(make_napari_viewer, qtbot, phantom, tmp_path):
    viewer = make_napari_viewer()
    _add_phantom(viewer, phantom, with_labels=False)
    widget = LiverLesionWidget(viewer)
    qtbot.addWidget(widget)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    widget.weights_edit.setText(str(bad))
    widget.device_combo.setCurrentText("cpu")
    n = len(viewer.layers)
    widget.run()
    _wait(qtbot, widget)
    assert widget.status.text().startswith("Error:") and "bad.pt" in widget.status.text()
    assert len(viewer.layers) == n and widget.run_button.isEnabled()
