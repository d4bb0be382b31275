"""DICOM-SEG: read dcmqi's liver SEG, write our own for the same CT, read it back."""

import numpy as np
import pydicom
import pytest

from napari_medseg.errors import GeometryMismatchError, InvalidInputError, UnsupportedFormatError
from napari_medseg.io import LabelTable, read_labels, read_volume
from napari_medseg.io.dicom_seg import read_dicom_seg, write_dicom_seg
from napari_medseg.testing.dicom_seg import raw_segments, three_objects


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


def test_codes_and_provenance_per_segment(ct3, tmp_path):
    from napari_medseg.models.totalseg_classes import automatic_table

    folder, ct, _ = ct3
    arr = three_objects(ct)
    table = automatic_table({5: "liver", 2: "kidney_right", 23: "kidney_cyst_left", 6: "stomach"}, "total")
    table = (table.with_label(40, "tumour A").with_provenance("SEMIAUTOMATIC", "nnInteractive", ids=[40])
             .with_label(41, "my marker").marked_edited([41]))
    out = write_dicom_seg(ct.with_array(arr, metadata={}), table, ct, tmp_path / "coded.dcm")
    raw = raw_segments(out)
    # stomach is in the table but not in the labels: not written
    assert list(raw) == ["kidney_right", "liver", "kidney_cyst_left", "tumour A", "my marker"]
    liver = raw["liver"]
    assert liver["category"] == ("SCT", "123037004", "Anatomical Structure")
    assert liver["type"] == ("SCT", "10200004", "Liver") and liver["modifier"] is None
    assert liver["algorithm_type"] == "AUTOMATIC" and liver["algorithm_name"] == "total"
    assert liver["algorithm_ident"] == "total"
    assert raw["kidney_right"]["type"] == ("SCT", "64033007", "Kidney")
    assert raw["kidney_right"]["modifier"] == ("SCT", "24028007", "Right")
    cyst = raw["kidney_cyst_left"]
    assert cyst["category"][1:] == ("49755003", "Morphologically Altered Structure")
    assert cyst["type"][1:] == ("367643001", "Cyst") and cyst["region"] == ("64033007", "Kidney")
    # interactive object: semi-automatic, named by its model; no known structure: generic code
    assert raw["tumour A"]["algorithm_type"] == "SEMIAUTOMATIC"
    assert raw["tumour A"]["algorithm_name"] == "nnInteractive"
    assert raw["tumour A"]["type"] == ("SCT", "85756007", "Tissue")
    # drawn by hand: manual, no algorithm, generic code
    assert raw["my marker"]["algorithm_type"] == "MANUAL" and raw["my marker"]["algorithm_ident"] is None
    assert raw["my marker"]["type"] == ("SCT", "85756007", "Tissue")

    # our reader restores codes and provenance, and writing that table again keeps them
    back, back_table = read_dicom_seg(out, reference=ct)
    np.testing.assert_array_equal(back.array, arr)
    for i in (5, 2, 23, 40, 41):
        assert back_table.algorithm_of(i) == table.algorithm_of(i), i
        assert back_table.code_of(i) == table.code_of(i), i
    again = write_dicom_seg(back, back_table, ct, tmp_path / "again.dcm")
    assert raw_segments(again) == raw


def test_edited_automatic_label_becomes_semiautomatic(ct3, tmp_path):
    from napari_medseg.models.totalseg_classes import automatic_table

    folder, ct, ref = ct3
    arr = (ref.array > 0).astype(np.uint8) * 5
    table = automatic_table({5: "liver"}, "total")
    assert raw_segments(write_dicom_seg(ct.with_array(arr, metadata={}), table, ct, tmp_path / "a.dcm"))[
        "liver"]["algorithm_type"] == "AUTOMATIC"
    edited = table.marked_edited([5])
    raw = raw_segments(write_dicom_seg(ct.with_array(arr, metadata={}), edited, ct, tmp_path / "b.dcm"))
    assert raw["liver"]["algorithm_type"] == "SEMIAUTOMATIC" and raw["liver"]["algorithm_name"] == "total"
    assert raw["liver"]["type"] == ("SCT", "10200004", "Liver")  # still the liver
    # renaming drops the code (it named the old structure), provenance stays
    renamed = edited.with_label(5, "spleen?")
    raw = raw_segments(write_dicom_seg(ct.with_array(arr, metadata={}), renamed, ct, tmp_path / "c.dcm"))
    assert raw["spleen?"]["type"] == ("SCT", "85756007", "Tissue")
    assert raw["spleen?"]["algorithm_type"] == "SEMIAUTOMATIC"


def test_dcmqi_codes_survive_a_round_trip(ct3, tmp_path):
    folder, ct, _ = ct3
    labels, table = read_dicom_seg(folder / "liver.dcm", reference=ct)
    info = table.info_of(1)
    assert info.algorithm_type == "SEMIAUTOMATIC" and info.algorithm_name == "SlicerEditor"
    assert (info.code.type.scheme, info.code.type.value, info.code.type.meaning) == ("SRT", "T-62000", "Liver")
    raw = raw_segments(write_dicom_seg(labels, table, ct, tmp_path / "rt.dcm"))
    assert raw["Liver"]["type"] == ("SRT", "T-62000", "Liver")
    assert raw["Liver"]["category"] == ("SRT", "T-D0050", "Tissue")
    assert raw["Liver"]["algorithm_type"] == "SEMIAUTOMATIC" and raw["Liver"]["algorithm_name"] == "SlicerEditor"


def test_anonymised_series_without_patient_and_study_attributes(tmp_path):
    """Anonymised series often lack type-2 patient/study attributes: the SEG is written with them empty."""
    from napari_medseg.testing.volumes import write_dicom_series

    missing = ("PatientBirthDate", "PatientSex", "StudyID", "AccessionNumber", "ReferringPhysicianName",
               "StudyDate", "StudyTime")
    info = write_dicom_series(tmp_path / "anon", n=4)
    for f in info["files"]:
        ds = pydicom.dcmread(f)
        assert not any(k in ds for k in missing)  # the series really lacks them
    ct = read_volume(tmp_path / "anon")
    arr = np.zeros(ct.shape, np.uint8)
    arr[1:3, 1:4, 1:3] = 1
    arr[3, 2:5, 2:4] = 4
    table = LabelTable.from_names({1: "liver", 4: "tumour"})
    out = write_dicom_seg(ct.with_array(arr), table, ct, tmp_path / "anon_seg.dcm")

    ds = pydicom.dcmread(out)  # a valid SEG, read by an independent reader
    assert ds.Modality == "SEG" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    for keyword in missing:
        assert keyword in ds and not ds[keyword].value, keyword  # present (type 2), empty
    assert ds.PatientID == "TEST" and str(ds.PatientName) == "Test^Phantom"  # what existed is copied
    assert ds.StudyInstanceUID == pydicom.dcmread(info["files"][0]).StudyInstanceUID
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["liver", "tumour"]

    labels, names = read_labels(out, reference=ct)  # and by the project's reader
    np.testing.assert_array_equal(labels.array, arr)
    assert names.name_of(4) == "tumour"
