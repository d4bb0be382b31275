"""DICOM-SEG: read dcmqi's liver SEG, write our own for the same CT, read it back."""

import numpy as np
import pydicom
import pytest

from napari_medseg.errors import GeometryMismatchError, InvalidInputError, UnsupportedFormatError
from napari_medseg.io import LabelTable, read_labels, read_volume
from napari_medseg.io.dicom_seg import read_dicom_seg, write_dicom_seg


@pytest.fixture(scope="module")
def ct3(shared_data):
    folder = shared_data / "dcmqi_ct3slice"
    ct = read_volume(folder)
    ref, _ = read_labels(folder / "liver_seg.nrrd", reference=ct)
    return folder, ct, ref


def test_read_dcmqi_liver_matches_nrrd(ct3):
    folder, ct, ref = ct3
    labels, table = read_dicom_seg(folder / "liver.dcm", reference=ct)
    assert labels.same_grid(ct)
    np.testing.assert_array_equal(labels.array > 0, ref.array > 0)
    assert (labels.array > 0).sum() == 107098
    assert table.names == {1: "Liver"}
    # dcmqi's recommended colour (CIELab 41661, 41167, 40792) ~ rgb(221, 130, 101)
    np.testing.assert_allclose(np.array(table.color_of(1)[:3]) * 255, [221, 130, 101], atol=1)
    # without a reference the grid comes from the frames themselves and is the same
    alone, _ = read_dicom_seg(folder / "liver.dcm")
    assert alone.same_grid(ct, atol=1e-3)
    np.testing.assert_array_equal(alone.array, labels.array)


def test_write_and_read_back_same_masks_and_geometry(ct3, tmp_path):
    folder, ct, ref = ct3
    arr = (ref.array > 0).astype(np.uint8)
    arr[1, 100:150, 100:200] = 52  # a second, non-contiguous id
    arr[2, :8, :8] = 7
    labels = ct.with_array(arr, metadata={})
    table = LabelTable.from_names({1: "liver", 7: "marker", 52: "aorta"})
    out = write_dicom_seg(labels, table, ct, tmp_path / "ours.dcm")
    back, back_table = read_dicom_seg(out, reference=ct)
    np.testing.assert_array_equal(back.array, arr)
    assert back_table.names == {1: "liver", 7: "marker", 52: "aorta"}
    for i in (1, 7, 52):
        np.testing.assert_allclose(back_table.color_of(i), table.color_of(i), atol=0.01)
    alone, _ = read_dicom_seg(out)
    assert alone.same_grid(ct, atol=1e-3)
    np.testing.assert_array_equal(alone.array, arr)
    # it references the source series and shares study and frame of reference
    ds = pydicom.dcmread(out)
    info = ct.metadata["dicom"]
    assert ds.Modality == "SEG" and ds.StudyInstanceUID == info["StudyInstanceUID"]
    assert ds.FrameOfReferenceUID == info["FrameOfReferenceUID"]
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == info["SeriesInstanceUID"]
    refd = {i.ReferencedSOPInstanceUID for i in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert refd == set(info["SOPInstanceUIDs"])
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["liver", "marker", "aorta"]
    assert ds.SegmentSequence[0].SegmentedPropertyCategoryCodeSequence[0].CodingSchemeDesignator == "SCT"
    # the source folder works as well as the Volume
    out2 = write_dicom_seg(labels, table, folder, tmp_path / "ours2.dcm")
    np.testing.assert_array_equal(read_dicom_seg(out2, reference=ct)[0].array, arr)


def test_bad_inputs(ct3, tmp_path):
    folder, ct, ref = ct3
    with pytest.raises(InvalidInputError, match="empty"):
        write_dicom_seg(ct.with_array(np.zeros(ct.shape, np.uint8)), None, ct, tmp_path / "x.dcm")
    shifted = ct.with_array((ref.array > 0).astype(np.uint8), origin=(ct.origin[0], ct.origin[1], ct.origin[2] + 7))
    with pytest.raises(GeometryMismatchError, match="no source DICOM slice"):
        write_dicom_seg(shifted, None, ct, tmp_path / "x.dcm")
    nodicom = ct.with_array(ct.array, metadata={})
    with pytest.raises(InvalidInputError, match="did not come from DICOM"):
        write_dicom_seg(ct.with_array((ref.array > 0).astype(np.uint8)), None, nodicom, tmp_path / "x.dcm")
    with pytest.raises(UnsupportedFormatError, match="not a DICOM Segmentation"):
        read_dicom_seg(folder / "ct-3slice_01.dcm")
    assert not list(tmp_path.iterdir())


def test_many_segments_roundtrip(ct3, tmp_path):
    folder, ct, ref = ct3
    arr = np.zeros(ct.shape, np.uint16)
    for k in range(30):  # 30 classes with sparse ids, some above 255
        arr[k % 3, 16 * k:16 * k + 12, 40:60 + k] = 3 + 9 * k
    labels = ct.with_array(arr, metadata={})
    out = write_dicom_seg(labels, None, ct, tmp_path / "many.dcm")
    back, table = read_dicom_seg(out, reference=ct)
    np.testing.assert_array_equal(back.array, arr)
    assert len(table) == 30 and table.name_of(264) == "label 264"
