"""Statistics widget in a real viewer, docked as the Plugins menu docks it (proxy viewer)."""

import csv
from pathlib import Path

import numpy as np
import pytest

from napari_medseg._widgets._layers import apply_to_layer
from napari_medseg._widgets.export import ExportWidget
from napari_medseg._widgets.statistics import StatisticsWidget
from napari_medseg.analysis.statistics import label_statistics

from ._dock import digest, dock


pytestmark = pytest.mark.gui


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
    stats = dock(viewer, "Statistics")
    export = dock(viewer, "Export labels")
    assert isinstance(stats, StatisticsWidget) and isinstance(export, ExportWidget)
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


def test_statistics_csv_refuses_open_files(qtbot, opened):
    from napari_medseg.errors import InvalidInputError

    viewer, folder = opened
    widget = dock(viewer, "Statistics")
    widget.debounce_ms = 10
    widget.refresh()
    qtbot.waitUntil(lambda: bool(widget.stats), timeout=30000)
    before = digest(folder / "labels.json")
    with pytest.raises(InvalidInputError, match="refusing to write the CSV"):
        widget.export_csv(folder / "labels.json")
    assert digest(folder / "labels.json") == before
    assert Path(widget.export_csv(folder / "stats.csv")).is_file()


def test_statistics_headers_say_hu_for_ct_and_intensity_for_mr(qtbot, scene):
    from napari_medseg.io.layer_data import image_layer_tuple

    viewer, ct, image, labels, table = scene
    widget = dock(viewer, "Statistics")
    widget.labels_combo.set_layer(labels)
    widget.image_combo.set_layer(image)
    qtbot.waitUntil(lambda: len(widget.stats) == 2, timeout=20000)
    headers = [widget.table.horizontalHeaderItem(c).text() for c in range(widget.table.columnCount())]
    assert "mean (HU)" in headers and not any("intensity" in h for h in headers)
    # the same voxels as an MR image (the file said MR): intensity, never HU
    mr = ct.with_array(np.abs(ct.array).astype(np.float32) * 3.7, modality="MR")
    d, kw, _ = image_layer_tuple(mr, "t1")
    mr_layer = viewer.add_image(d, **kw)
    widget.image_combo.set_layer(mr_layer)
    with qtbot.waitSignal(widget.updated, timeout=20000):
        widget.refresh()
    headers = [widget.table.horizontalHeaderItem(c).text() for c in range(widget.table.columnCount())]
    assert "mean (intensity)" in headers and "std (intensity)" in headers
    assert not any("HU" in h for h in headers) and widget.unit == "intensity"
    expected = float(mr.array[np.asarray(labels.data) == 1].mean())
    assert widget.stats[0]["mean"] == pytest.approx(expected, rel=1e-5)


def test_statistics_bias_correction_on_mr_only(qtbot, scene, monkeypatch):
    """The N4 option: disabled with the reason for CT; for an MR image it is off by default,
    ticked it gives the core's bias-corrected numbers with "intensity, N4" headers, and a second
    refresh does not run N4 again."""
    from napari_medseg.inference import bias_field
    from napari_medseg.io.layer_data import image_layer_tuple
    from napari_medseg.phantom import make_phantom, mr_contrast

    viewer, ct, image, labels, table = scene
    widget = dock(viewer, "Statistics")
    widget.labels_combo.set_layer(labels)
    widget.image_combo.set_layer(image)
    assert not widget.bias.isEnabled() and "CT" in widget.bias.toolTip()
    flat = viewer.add_image(np.ones((8, 9), np.float32), name="a 2D image")
    widget.image_combo.set_layer(flat)  # not a volume: the option says so, nothing raises
    assert not widget.bias.isEnabled() and "3D" in widget.bias.toolTip()
    ph = make_phantom(seed=0, shape=(48, 128, 128), spacing_zyx=(4.0, 1.6, 1.6), n_lesions=2)
    t1 = mr_contrast(ph, "T1")
    d, kw, _ = image_layer_tuple(t1, "t1")
    mr_layer = viewer.add_image(d, **kw)
    d, kw, _ = _mr_labels_tuple(ph)
    mr_labels = viewer.add_labels(d, **kw)
    widget.labels_combo.set_layer(mr_labels)
    widget.image_combo.set_layer(mr_layer)
    assert widget.bias.isEnabled() and not widget.bias.isChecked()

    bias_field.clear_cache()
    fits = []
    real = bias_field._fit_and_divide
    monkeypatch.setattr(bias_field, "_fit_and_divide", lambda *a, **k: fits.append(1) or real(*a, **k))
    expected = label_statistics(t1, t1.with_array(ph.labels), bias_correct=True)  # N4 runs here
    plain = label_statistics(t1, t1.with_array(ph.labels))
    assert [s["mean"] for s in expected] != pytest.approx([s["mean"] for s in plain])
    widget.debounce_ms = 10
    widget.bias.setChecked(True)  # a (debounced) refresh with the option

    def corrected_shown():
        means = [s["mean"] for s in widget.stats]
        return len(means) == len(expected) and means == pytest.approx([s["mean"] for s in expected])

    qtbot.waitUntil(corrected_shown, timeout=60000)
    qtbot.waitUntil(lambda: not widget.jobs.running, timeout=60000)
    headers = [widget.table.horizontalHeaderItem(c).text() for c in range(widget.table.columnCount())]
    assert "mean (intensity, N4)" in headers
    assert [s["voxels"] for s in widget.stats] == [s["voxels"] for s in expected]
    with qtbot.waitSignal(widget.updated, timeout=60000):
        widget.refresh()
    assert len(fits) == 1  # one N4 run for the image, whatever the number of refreshes
    bias_field.clear_cache()


def _mr_labels_tuple(ph):
    from napari_medseg.io.label_table import LabelTable
    from napari_medseg.io.layer_data import labels_layer_tuple

    return labels_layer_tuple(ph.labels, ph.ct, LabelTable.from_names(ph.names), name="mr labels")
