"""export_labels: the writer follows the extension; names, colours and geometry survive."""

import numpy as np
import pytest

from napari_medseg.errors import GeometryMismatchError, InvalidInputError, UnsupportedFormatError
from napari_medseg.io import LabelTable, read_labels, read_volume
from napari_medseg.io.export import EXPORT_FORMATS, export_labels, format_of, is_dicom_reference
from napari_medseg.io.volume import Volume


@pytest.fixture
def case():
    ref = Volume(np.zeros((4, 5, 6), np.int16), spacing=(0.7, 0.8, 2.5), origin=(10.0, -20.0, 33.0),
                 direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1), modality="CT")
    arr = np.zeros(ref.shape, np.uint8)
    arr[1:3, 1:4, 2:5] = 5
    arr[3, 0, 0] = 52
    table = LabelTable.from_names({5: "liver", 52: "aorta"}, colors={5: (1, 0, 0)})
    return ref, ref.with_array(arr), table


@pytest.mark.parametrize("name", ["l.nii.gz", "l.nii", "l.nrrd", "l.mha", "l.seg.nrrd"])
def test_roundtrip_by_extension(tmp_path, case, name):
    ref, labels, table = case
    out = export_labels(labels, table, tmp_path / name, reference=ref)
    back, back_table = read_labels(out, reference=ref)
    np.testing.assert_array_equal(back.array, labels.array)
    assert back.same_grid(ref)
    assert back_table.name_of(5) == "liver" and back_table.name_of(52) == "aorta"
    np.testing.assert_allclose(back_table.color_of(5)[:3], (1, 0, 0), atol=1e-3)


def test_bare_array_takes_reference_geometry(tmp_path, case):
    ref, labels, table = case
    out = export_labels(labels.array, table, tmp_path / "a.nrrd", reference=ref)
    back, _ = read_labels(out)
    assert back.same_grid(ref)


def test_format_detection_and_errors(tmp_path, case):
    ref, labels, table = case
    assert format_of("x.SEG.NRRD") == "seg.nrrd" and format_of("x.dcm") == "dicom-seg"
    assert format_of("x.nii.gz") == "image" and set(EXPORT_FORMATS.values()) >= {".dcm", ".seg.nrrd"}
    with pytest.raises(UnsupportedFormatError, match="unknown extension"):
        export_labels(labels, table, tmp_path / "x.png", reference=ref)
    with pytest.raises(InvalidInputError, match="DICOM-SEG .*reference the DICOM series"):
        export_labels(labels, table, tmp_path / "x.dcm", reference=ref)
    other = Volume(np.zeros(ref.shape, np.int16), spacing=(1, 1, 1))
    with pytest.raises(GeometryMismatchError, match="do not lie on the image's voxel grid"):
        export_labels(labels, table, tmp_path / "x.nii.gz", reference=other)
    with pytest.raises(InvalidInputError, match="needs a reference"):
        export_labels(labels.array, table, tmp_path / "x.nii.gz")
    assert not list(tmp_path.iterdir())


def test_failed_export_keeps_old_file(tmp_path, case):
    ref, labels, table = case
    out = export_labels(labels, table, tmp_path / "keep.nrrd", reference=ref)
    before = out.read_bytes()
    with pytest.raises(InvalidInputError, match="integer ids"):
        export_labels(labels.with_array(labels.array.astype(float)), table, out, reference=ref)
    assert out.read_bytes() == before


def test_dicom_seg_export_from_dicom_reference(tmp_path, shared_data):
    from napari_medseg.io.dicom_seg import read_dicom_seg

    folder = shared_data / "dcmqi_ct3slice"
    ct = read_volume(folder)
    assert is_dicom_reference(ct)
    ref, _ = read_labels(folder / "liver_seg.nrrd", reference=ct)
    out = export_labels(ref, LabelTable.from_names({1: "liver"}), tmp_path / "liver.dcm", reference=ct)
    back, table = read_dicom_seg(out, reference=ct)
    np.testing.assert_array_equal(back.array, ref.array)
    assert table.names == {1: "liver"}
