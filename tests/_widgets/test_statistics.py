"""Statistics and Export widgets in a real viewer, docked as the Plugins menu docks them (proxy viewer)."""


import csv
import numpy as np
import pytest
from napari_medseg._widgets.export import ExportWidget
from napari_medseg._widgets._layers import apply_to_layer
from napari_medseg._widgets.statistics import StatisticsWidget
from napari_medseg.analysis.statistics import label_statistics
from napari_medseg.io import LabelTable
from napari_medseg.io.layer_data import image_layer_tuple, labels_layer_tuple
from napari_medseg.io.volume import Volume
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from tests.napari_open import open_as_user, viewer_after_first_use  # noqa: F401  (fixture)


pytestmark = pytest.mark.gui


def dock(viewer, name):
    """The widget napari's Plugins menu gives: it holds a PublicOnlyProxy of the viewer."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-medseg", name)
    return widget


@pytest.fixture
def scene(make_napari_viewer):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    ct = Volume(rng.integers(-100, 200, (6, 20, 20)).astype(np.int16), spacing=(0.7, 0.7, 2.5),
                origin=(-5.0, 3.0, 40.0), direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1), modality="CT")
    arr = np.zeros(ct.shape, np.uint8)
    arr[1:4, 2:8, 2:9] = 1
    arr[5, 10:15, 10:12] = 3
    table = LabelTable.from_names({1: "liver", 3: "lesion"})
    d, kw, _ = image_layer_tuple(ct, "ct")
    image = viewer.add_image(d, **kw)
    d, kw, _ = labels_layer_tuple(arr, ct, table, "seg")
    labels = viewer.add_labels(d, **kw)
    return viewer, ct, image, labels, table


def test_statistics_widget_matches_core_and_follows_edits(qtbot, scene, tmp_path):
    viewer, ct, image, labels, table = scene
    widget = dock(viewer, "Statistics")
    assert isinstance(widget, StatisticsWidget)
    widget.labels_combo.set_layer(labels)
    widget.image_combo.set_layer(image)
    widget.debounce_ms = 10
    qtbot.waitUntil(lambda: len(widget.stats) == 2, timeout=20000)
    direct = label_statistics(ct, ct.with_array(np.asarray(labels.data)), table)
    assert [s["voxels"] for s in widget.stats] == [s["voxels"] for s in direct]
    assert widget.stats[0]["mean"] == pytest.approx(direct[0]["mean"])
    assert widget.table.rowCount() == 2 and widget.table.item(0, 1).text() == "liver"
    # an undoable edit through the Label tools path triggers a (debounced) refresh
    new = np.array(labels.data)
    new[0, 0, 0:4] = 3
    with qtbot.waitSignal(widget.updated, timeout=20000):
        apply_to_layer(labels, new)
    qtbot.waitUntil(lambda: widget.stats[1]["voxels"] == 14, timeout=20000)
    labels.undo()
    qtbot.waitUntil(lambda: widget.stats[1]["voxels"] == 10, timeout=20000)
    # a refresh that finds nothing changed shows the standing result, not "computing..."
    expected = widget.status.text()
    assert expected.startswith("2 label(s)")
    with qtbot.waitSignal(widget.updated, timeout=20000) as blocker:
        worker = widget.refresh(force=False)
        assert widget.status.text() == "computing..."
    assert blocker.args[0] == expected and widget.status.text() == expected
    assert worker is not None
    # a new image array in the same layer is a change: the means follow it
    image.data = np.asarray(image.data) + 1000
    with qtbot.waitSignal(widget.updated, timeout=20000):
        widget.refresh(force=False)
    assert widget.stats[0]["mean"] == pytest.approx(direct[0]["mean"] + 1000)
    out = widget.export_csv(tmp_path / "stats.csv")
    rows = list(csv.DictReader(open(out)))
    assert [r["name"] for r in rows] == ["liver", "lesion"] and rows[1]["voxels"] == "10"


def test_statistics_widget_wrong_image_shows_message(qtbot, scene):
    viewer, ct, image, labels, table = scene
    other = viewer.add_image(np.zeros((3, 4, 5), np.int16), name="other")
    widget = dock(viewer, "Statistics")
    widget.labels_combo.set_layer(labels)
    widget.image_combo.set_layer(image)
    with qtbot.waitSignal(widget.updated, timeout=20000):
        widget.refresh()
    assert widget.table.rowCount() == 2
    widget.image_combo.set_layer(other)
    with qtbot.waitSignal(widget.updated, timeout=20000) as blocker:
        widget.refresh()
    assert "shape" in blocker.args[0] and "pick the image" in blocker.args[0]
    # the previous table is not left under the error as if it answered this choice
    assert widget.table.rowCount() == 0 and widget.stats == []


def test_closed_widgets_do_not_break_the_viewer(qtbot, scene):
    viewer, ct, image, labels, table = scene
    stats = StatisticsWidget(viewer)
    export = ExportWidget(viewer)
    stats.labels_combo.set_layer(labels)
    stats.close()
    stats.deleteLater()
    export.deleteLater()
    qtbot.wait(50)
    from qtpy.QtCore import QCoreApplication, QEvent

    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    # layer list changes and edits after the widgets are gone must not raise
    viewer.add_labels(np.zeros(ct.shape, np.uint8), name="another")
    new = np.array(labels.data)
    new[0, 0, 0] = 1
    apply_to_layer(labels, new)
    labels.undo()
    viewer.layers.remove("another")


# --- bad input and faults


def _digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("guard")
    res = subprocess.run([sys.executable, "-m", "napari_medseg.cli", "sample", out, "--shape", "24,80,80"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture
def opened(viewer_after_first_use, sample_files, tmp_path):
    for name in ("ct.nii.gz", "labels.nii.gz", "labels.json"):
        shutil.copy(sample_files / name, tmp_path / name)
    viewer = viewer_after_first_use
    assert [layer.__class__.__name__ for layer in open_as_user(viewer, tmp_path / "ct.nii.gz")] == ["Image"]
    assert [layer.__class__.__name__ for layer in open_as_user(viewer, tmp_path / "labels.nii.gz")] == ["Labels"]
    return viewer, tmp_path


def _dock(viewer, name):
    _, widget = viewer.window.add_plugin_dock_widget("napari-medseg", name)
    return widget


def test_statistics_csv_refuses_open_files(qtbot, opened):
    from napari_medseg.errors import InvalidInputError

    viewer, folder = opened
    widget = _dock(viewer, "Statistics")
    widget.debounce_ms = 10
    widget.refresh()
    qtbot.waitUntil(lambda: bool(widget.stats), timeout=30000)
    before = _digest(folder / "labels.json")
    with pytest.raises(InvalidInputError, match="refusing to write the CSV"):
        widget.export_csv(folder / "labels.json")
    assert _digest(folder / "labels.json") == before
    assert Path(widget.export_csv(folder / "stats.csv")).is_file()
