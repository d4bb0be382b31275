"""Statistics and Export widgets in a real viewer, docked as the Plugins menu docks them (proxy viewer)."""


import numpy as np
import pytest
from napari_medseg._widgets.export import DICOM_FORMAT, ExportWidget
from napari_medseg._widgets._layers import apply_to_layer
from napari_medseg.io import LabelTable, read_labels, read_volume
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


def test_export_widget_refuses_open_files(qtbot, opened):
    viewer, folder = opened
    widget = _dock(viewer, "Export labels")
    before = {n: _digest(folder / n) for n in ("ct.nii.gz", "labels.nii.gz", "labels.json")}
    for target in ("labels.nii.gz", "ct.nii.gz", "sub/../ct.nii.gz"):
        assert widget.export(folder / target) is None
        assert "refusing to write the export" in widget.status.text()
    assert {n: _digest(folder / n) for n in before} == before
    # a fresh name works
    worker = widget.export(folder / "labels_copy.nii.gz")
    assert worker is not None
    with qtbot.waitSignal(worker.finished, timeout=30000):
        pass
    assert (folder / "labels_copy.nii.gz").is_file()
