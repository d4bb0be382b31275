"""Confidence in napari as users reach it: the Automatic segmentation dock's confidence
option adds an aligned, hidden confidence layer and lists the structures to review (a click
goes there); the Statistics dock gains the confidence columns for those labels (and its
CSV); models without probabilities and server runs say why there is no map."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_medseg.analysis.confidence import flagged, summarise_confidence
from napari_medseg.io.volume import Volume

from ._dock import dock
from .test_auto_segmentation import (add_image, layer_names, make_model_folder_in_subprocess,
                                     run_and_wait, use_server)

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_WEIGHTS_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "no-totalseg"))


def test_confidence_layer_review_list_and_statistics_columns(make_napari_viewer, qtbot, tmp_path,
                                                             one_torch_thread):
    from napari_medseg.inference.segment import segment_with_info

    folder = make_model_folder_in_subprocess(tmp_path / "Dataset556_conf")
    rng = np.random.default_rng(3)
    vol = Volume(rng.normal(0, 200, (12, 24, 28)).astype(np.float32), spacing=(4.0, 3.0, 5.0),
                 origin=(-20.0, 10.0, 5.0), modality="CT")
    viewer = make_napari_viewer()
    image = add_image(viewer, vol, "scan")
    widget = dock(viewer, "Automatic segmentation")
    widget.set_custom_folder(folder)
    widget.device_combo.setCurrentText("cpu")
    assert widget.confidence_check.isChecked()  # a network model: on by default
    # without confidence first: the labels to compare with
    widget.set_confidence(False)
    assert run_and_wait(qtbot, widget) == "done"
    plain = np.array(viewer.layers[f"scan {folder.name}"].data)
    assert widget.confidence_layer is None and not widget.review_list.isVisibleTo(widget)
    widget.set_confidence(True)
    assert run_and_wait(qtbot, widget) == "done", widget.status.text()
    labels_name = f"scan {folder.name} [2]"
    labels = viewer.layers[labels_name]
    assert np.array_equal(labels.data, plain)  # confidence changes no label voxel
    conf = viewer.layers[f"{labels_name} confidence"]
    assert conf.data.dtype == np.float32 and conf.data.shape == vol.shape
    assert not conf.visible and tuple(conf.contrast_limits) == (0.0, 1.0)
    assert conf.colormap.name == "magma"
    np.testing.assert_allclose(conf.scale, image.scale)
    np.testing.assert_allclose(conf.translate, image.translate)
    assert conf.metadata["medseg_confidence_of"] == str(labels.unique_id)
    # the same map as the core's, and the same flagged structures
    ref = segment_with_info(vol, folder, device="cpu", confidence=True)
    np.testing.assert_allclose(conf.data, ref.confidence.max_prob, atol=1e-5)
    expected = flagged(summarise_confidence(ref.labels, ref.confidence.max_prob, ref.table.names))
    assert [s.name for s in widget.review] == [s.name for s in expected]
    # a random-weight model hesitates: something is flagged, and listed with its reason
    assert widget.review and widget.review_list.count() == len(widget.review)
    assert widget.review_list.isVisibleTo(widget)
    first = widget.review_list.item(0).text()
    assert first.startswith(widget.review[0].name) and "<" in first
    # clicking a flagged structure goes to it: its slice, centred, its label selected
    for k in range(widget.review_list.count()):
        target = widget.review[k]
        widget.review_list.itemClicked.emit(widget.review_list.item(k))
        z_world = float(image.data_to_world(np.asarray(target.view_point_vox, float))[0])
        assert viewer.dims.point[0] == pytest.approx(z_world)
        assert labels.selected_label == target.id
        z, y, x = target.view_point_vox
        assert labels.data[z, y, x] == target.id
    # the Statistics dock of these labels gains the confidence columns
    stats = dock(viewer, "Statistics")
    stats.labels_combo.set_layer(labels_name)
    with qtbot.waitSignal(stats.updated, timeout=60000):
        stats.refresh()
    headers = [stats.table.horizontalHeaderItem(c).text() for c in range(stats.table.columnCount())]
    assert "mean confidence" in headers and "review" in headers
    by_id = {s.id: s for s in summarise_confidence(labels.data, conf.data)}
    rows = [r for r in stats.stats if r["label"] in by_id]
    assert rows
    for r in rows:
        assert r["mean_confidence"] == pytest.approx(by_id[r["label"]].mean_confidence)
        assert r["review"] == by_id[r["label"]].review
    out = stats.export_csv(tmp_path / "stats.csv")
    with open(out, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert {"mean_confidence", "fraction_below", "boundary_confidence", "review"} <= set(table[0])
    flagged_ids = {s.id for s in widget.review}
    assert {int(r["label"]) for r in table if r["review"] == "True"} == flagged_ids
    # labels without a confidence layer: the plain columns only
    stats.labels_combo.set_layer(f"scan {folder.name}")
    with qtbot.waitSignal(stats.updated, timeout=60000):
        stats.refresh()
    assert stats.table.columnCount() == len(headers) - 4
    assert "mean_confidence" not in stats.stats[0]


def test_model_without_probabilities_says_so(make_napari_viewer, qtbot):
    from napari_medseg.phantom import make_phantom

    ph = make_phantom(seed=1, shape=(16, 48, 48))
    viewer = make_napari_viewer()
    add_image(viewer, ph.ct, "CT")
    widget = dock(viewer, "Automatic segmentation")
    assert widget.model_combo.currentData() == "hu-tissue"
    assert not widget.confidence_check.isChecked()  # off by default: no probabilities
    widget.set_confidence(True)
    assert "hu-tissue" in widget.status.text() and "probabilities" in widget.status.text()
    assert run_and_wait(qtbot, widget) == "done"
    assert "no confidence map" in widget.status.text()
    assert layer_names(viewer) == ["CT", "CT hu-tissue"] and widget.confidence_layer is None
    assert widget.review_list.count() == 0


def test_server_run_says_it_has_no_confidence_map(make_napari_viewer, qtbot, medseg_server):
    from napari_medseg.phantom import make_phantom

    ph = make_phantom(seed=1, shape=(16, 48, 48))
    viewer = make_napari_viewer()
    add_image(viewer, ph.ct, "CT")
    widget = dock(viewer, "Automatic segmentation")
    widget.set_confidence(True)
    use_server(widget, medseg_server.url, medseg_server.token_file)
    assert run_and_wait(qtbot, widget) == "done", widget.status.text()
    assert "returns labels only" in widget.status.text()
    assert layer_names(viewer) == ["CT", "CT hu-tissue"] and widget.confidence_layer is None
