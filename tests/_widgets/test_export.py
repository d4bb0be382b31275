"""Export widget in a real viewer, docked as the Plugins menu docks it (proxy viewer)."""

import numpy as np
import pytest

from napari_medseg._widgets._layers import apply_to_layer
from napari_medseg._widgets.export import DICOM_FORMAT, ExportWidget
from napari_medseg.io import LabelTable, read_labels, read_volume
from napari_medseg.io.layer_data import image_layer_tuple, labels_layer_tuple
from tests.napari_open import open_as_user

from ._dock import digest, dock


pytestmark = pytest.mark.gui


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


def test_export_widget_dicom_seg(qtbot, viewer_after_first_use, shared_data, tmp_path):
    from napari_medseg.io.dicom_seg import read_dicom_seg

    viewer = viewer_after_first_use
    folder = shared_data / "dcmqi_ct3slice"
    ct = read_volume(folder)
    ref, _ = read_labels(folder / "liver_seg.nrrd", reference=ct)
    [image] = open_as_user(viewer, folder)  # the DICOM folder, as File > Open opens it
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

    # the same labels as a LABELMAP SEG (DICOM 2024+), chosen in the format list
    import pydicom

    widget.set_format("DICOM-SEG label map (.dcm)")
    with qtbot.waitSignal(widget.exported, timeout=60000) as blocker:
        widget.export(tmp_path / "liver_labelmap.dcm")
    assert blocker.args[0].startswith("wrote"), blocker.args[0]
    ds = pydicom.dcmread(tmp_path / "liver_labelmap.dcm", stop_before_pixels=True)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.7" and ds.SegmentationType == "LABELMAP"
    back, table = read_dicom_seg(tmp_path / "liver_labelmap.dcm", reference=ct)
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


def test_export_widget_refuses_open_files(qtbot, opened):
    viewer, folder = opened
    widget = dock(viewer, "Export labels")
    before = {n: digest(folder / n) for n in ("ct.nii.gz", "labels.nii.gz", "labels.json")}
    for target in ("labels.nii.gz", "ct.nii.gz", "sub/../ct.nii.gz"):
        assert widget.export(folder / target) is None
        assert "refusing to write the export" in widget.status.text()
    assert {n: digest(folder / n) for n in before} == before
    # a fresh name works
    worker = widget.export(folder / "labels_copy.nii.gz")
    assert worker is not None
    with qtbot.waitSignal(worker.finished, timeout=30000):
        pass
    assert (folder / "labels_copy.nii.gz").is_file()
