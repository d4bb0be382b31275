"""Statistics and Export widgets in a real viewer, docked as the Plugins menu docks them (proxy viewer)."""

import csv

import numpy as np
import pytest

from napari_medseg._widgets.export import DICOM_FORMAT, ExportWidget
from napari_medseg._widgets._layers import apply_to_layer
from napari_medseg._widgets.statistics import StatisticsWidget
from napari_medseg.analysis.statistics import label_statistics
from napari_medseg.io import LabelTable, read_labels, read_volume
from napari_medseg.io.layer_data import image_layer_tuple, labels_layer_tuple
from napari_medseg.io.volume import Volume


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


def test_export_widget_writes_formats(qtbot, scene, tmp_path):
    viewer, ct, image, labels, table = scene
    widget = dock(viewer, "Export labels")
    assert isinstance(widget, ExportWidget)
    widget.labels_combo.set_layer(labels)
    widget.image_combo.set_layer(image)
    assert DICOM_FORMAT not in widget.available_formats()  # the image is not from DICOM
    for name, fname in [("NIfTI (.nii.gz)", "a.nii.gz"), ("3D Slicer segmentation (.seg.nrrd)", "b.seg.nrrd"),
                        ("MetaImage (.mha)", "c")]:
        widget.set_format(name)
        with qtbot.waitSignal(widget.exported, timeout=30000) as blocker:
            widget.export(tmp_path / fname)
        assert blocker.args[0].startswith("wrote"), blocker.args[0]
        back, back_table = read_labels(widget.last_path, reference=ct)
        np.testing.assert_array_equal(back.array, labels.data)
        assert back_table.name_of(3) == "lesion"
    assert widget.last_path.endswith("c.mha")
    with pytest.raises(Exception, match="not available"):
        widget.set_format(DICOM_FORMAT)
    widget.path_edit.setText("")
    with qtbot.waitSignal(widget.exported, timeout=5000) as blocker:
        assert widget.export() is None
    assert "choose a file" in blocker.args[0]


def test_export_widget_dicom_seg(qtbot, make_napari_viewer, shared_data, tmp_path):
    from napari_medseg.io.dicom_seg import read_dicom_seg

    viewer = make_napari_viewer()
    folder = shared_data / "dcmqi_ct3slice"
    ct = read_volume(folder)
    ref, _ = read_labels(folder / "liver_seg.nrrd", reference=ct)
    d, kw, _ = image_layer_tuple(ct, "ct")
    image = viewer.add_image(d, **kw)
    d, kw, _ = labels_layer_tuple(ref.array, ct, LabelTable.from_names({1: "liver"}), "liver")
    labels = viewer.add_labels(d, **kw)
    widget = dock(viewer, "Export labels")
    widget.labels_combo.set_layer(labels)
    widget.image_combo.set_layer(image)
    assert DICOM_FORMAT in widget.available_formats()
    widget.set_format(DICOM_FORMAT)
    with qtbot.waitSignal(widget.exported, timeout=60000) as blocker:
        widget.export(tmp_path / "liver.dcm")
    assert blocker.args[0].startswith("wrote"), blocker.args[0]
    back, table = read_dicom_seg(tmp_path / "liver.dcm", reference=ct)
    np.testing.assert_array_equal(back.array, ref.array)
    assert table.names == {1: "liver"}


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


def test_dicom_seg_from_the_export_dock_records_how_each_segment_was_made(qtbot, make_napari_viewer,
                                                                          shared_data, tmp_path):
    """Model output exported untouched is AUTOMATIC; after a Label tools edit it is
    SEMIAUTOMATIC; a class painted by hand and cleaned with Label tools is MANUAL; a
    known structure name carries its anatomical code (SNOMED), not the generic one."""
    import pydicom

    viewer = make_napari_viewer()
    folder = shared_data / "dcmqi_ct3slice"
    ct = read_volume(folder)
    ref, _ = read_labels(folder / "liver_seg.nrrd", reference=ct)
    d, kw, _ = image_layer_tuple(ct, "ct")
    viewer.add_image(d, **kw)
    arr = ref.array.astype(np.uint8)
    original = arr.copy()  # the layer may share arr's memory
    table = LabelTable.from_names({1: "liver"}).with_provenance("AUTOMATIC", "total")
    d, kw, _ = labels_layer_tuple(arr, ct, table, "seg")
    labels = viewer.add_labels(d, **kw)
    _, tools = viewer.window.add_plugin_dock_widget("napari-medseg", "Label tools")
    export = dock(viewer, "Export labels")
    tools.labels_combo.set_layer("seg")
    export.labels_combo.set_layer("seg")
    export.image_combo.set_layer("ct")
    export.set_format(DICOM_FORMAT)

    def types(path):
        with qtbot.waitSignal(export.exported, timeout=60000) as blocker:
            export.export(path)
        assert blocker.args[0].startswith("wrote"), blocker.args[0]
        ds = pydicom.dcmread(str(path))
        return {int(s.SegmentNumber): (s.SegmentLabel, s.SegmentAlgorithmType,
                                       s.SegmentedPropertyTypeCodeSequence[0].CodeValue)
                for s in ds.SegmentSequence}

    first = types(tmp_path / "model.dcm")
    assert [v[:2] for v in first.values()] == [("liver", "AUTOMATIC")]
    liver_code = next(iter(first.values()))[2]
    assert liver_code != "85756007"  # the liver's own code, not the generic "Tissue"

    # a person edits the model's liver with Label tools: semi-automatic from now on
    with qtbot.waitSignal(tools.finished, timeout=30000):
        tools.set_operation("Grow margin", label=1, size=1.0)
        assert tools.run() is not None
    assert (np.asarray(labels.data) == 1).sum() > (original == 1).sum()
    # and paints a second class by hand, then cleans it with Label tools: manual
    painted = np.array(labels.data)
    painted[0, :4, :4] = 2
    apply_to_layer(labels, painted)
    tools.add_class(2, "marker")
    with qtbot.waitSignal(tools.finished, timeout=30000):
        tools.set_operation("Remove small islands", label=2, size=0.0001)
        assert tools.run() is not None
    second = types(tmp_path / "edited.dcm")
    by_label = {v[0]: v[1:] for v in second.values()}
    assert by_label["liver"] == ("SEMIAUTOMATIC", liver_code)
    assert by_label["marker"][0] == "MANUAL"
