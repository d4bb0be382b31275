"""Real CT (TotalSegmentator example) and DICOM (dcmqi) load with SimpleITK's geometry."""

import warnings

import numpy as np
import pytest

from napari_medseg.errors import GeometryMismatchError, UnsupportedFormatError
from napari_medseg.io import read_labels, read_volume

pytestmark = pytest.mark.shared_data


def test_nifti_ct_matches_simpleitk(shared_data):
    import SimpleITK as sitk

    path = shared_data / "totalseg_example" / "example_ct_sm.nii.gz"
    ref = sitk.ReadImage(str(path))
    vol = read_volume(path)
    assert vol.shape == (30, 101, 122)
    np.testing.assert_array_equal(vol.array, sitk.GetArrayFromImage(ref))
    assert vol.spacing == ref.GetSpacing() and vol.origin == ref.GetOrigin()
    assert vol.direction == ref.GetDirection()
    np.testing.assert_allclose(vol.direction, (-1, 0, 0, 0, -1, 0, 0, 0, 1))
    assert vol.modality is None  # NIfTI does not say; never guessed
    # index -> physical agrees with SimpleITK for a far corner voxel
    np.testing.assert_allclose(vol.index_to_physical((29, 100, 121)),
                               ref.TransformIndexToPhysicalPoint((121, 100, 29)))


def test_totalsegmentator_xml_names(shared_data):
    ct = read_volume(shared_data / "totalseg_example" / "example_ct_sm.nii.gz")
    labels, table = read_labels(shared_data / "totalseg_example" / "example_seg.nii.gz", reference=ct)
    assert labels.metadata["label_names_source"] == "nifti-xml"
    assert table.name_of(5) == "liver" and table.name_of(52) == "aorta"
    assert table.name_of(1) == "spleen" and table.name_of(2) == "kidney_right"
    assert len(table) >= 117
    assert table.color_of(5) == (0.0, 1.0, 1.0, 1.0)  # colours come from the XML too
    assert labels.array.dtype == np.uint8
    assert 5 in np.unique(labels.array)


def test_labels_on_wrong_grid_are_refused(shared_data):
    big = read_volume(shared_data / "totalseg_example" / "example_ct.nii.gz")
    # example_ct_sm holds slices 82..111 of example_ct but kept example_ct's origin (its
    # header was not updated when it was cut), so its labels must not be padded onto
    # the full scan by geometry: refuse and say why.
    with pytest.raises(GeometryMismatchError, match=r"labels in example_seg.nii.gz .*shape \(30, 101, 122\) vs \(112, 101, 122\)"):
        read_labels(shared_data / "totalseg_example" / "example_seg.nii.gz", reference=big)
    dicom_ct = read_volume(shared_data / "dcmqi_ct3slice")
    with pytest.raises(GeometryMismatchError, match=r"shape \(30, 101, 122\) vs \(3, 512, 512\).*spacing .*origin .*direction matrices differ"):
        read_labels(shared_data / "totalseg_example" / "example_seg.nii.gz", reference=dicom_ct)


def _ct_series_files(folder):
    import pydicom

    out = []
    for p in sorted(folder.glob("*.dcm")):
        if pydicom.dcmread(p, stop_before_pixels=True).Modality == "CT":
            out.append(p)
    return out


def test_dicom_folder_picks_ct_not_seg(shared_data):
    import pydicom
    import SimpleITK as sitk

    folder = shared_data / "dcmqi_ct3slice"
    # Naive SimpleITK series reading of this folder would pick the SEG object.
    naive = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))
    assert any(n.endswith("liver.dcm") for n in naive)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a SEG next to the CT is normal: no warning
        vol = read_volume(folder)
    assert vol.shape == (3, 512, 512) and vol.modality == "CT"
    files = _ct_series_files(folder)
    series_uid = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
    ordered = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid)
    ref = sitk.ReadImage(ordered)
    np.testing.assert_array_equal(vol.array, sitk.GetArrayFromImage(ref))
    np.testing.assert_allclose(vol.spacing, ref.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(vol.origin, ref.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(vol.direction, ref.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(vol.spacing, (0.810547, 0.810547, 1.0))
    # HU: rescale intercept -1024 applied (air outside the scan field is -3024)
    ds = pydicom.dcmread(ordered[0])
    np.testing.assert_array_equal(vol.array[0], ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    assert vol.array.dtype == np.int16
    dicom = vol.metadata["dicom"]
    assert dicom["SeriesInstanceUID"] == series_uid
    assert dicom["StudyInstanceUID"] == ds.StudyInstanceUID
    assert dicom["FrameOfReferenceUID"] == ds.FrameOfReferenceUID
    assert dicom["SOPInstanceUIDs"] == [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in ordered]
    assert dicom["ignored_objects"] == ["DICOM Segmentation (SEG): liver.dcm"]


def test_one_file_of_the_series_loads_the_series(shared_data):
    folder = shared_data / "dcmqi_ct3slice"
    a = read_volume(folder)
    b = read_volume(folder / "ct-3slice_02.dcm")
    np.testing.assert_array_equal(a.array, b.array)
    assert a.origin == b.origin and a.metadata["dicom"]["SOPInstanceUIDs"] == b.metadata["dicom"]["SOPInstanceUIDs"]


def test_the_seg_file_itself_is_refused(shared_data):
    with pytest.raises(UnsupportedFormatError, match=r"liver.dcm is a DICOM Segmentation \(SEG\), not an image"):
        read_volume(shared_data / "dcmqi_ct3slice" / "liver.dcm")


def test_liver_nrrd_lies_on_the_dicom_grid(shared_data):
    ct = read_volume(shared_data / "dcmqi_ct3slice")
    labels, table = read_labels(shared_data / "dcmqi_ct3slice" / "liver_seg.nrrd", reference=ct)
    assert table.ids == [1] and labels.array.sum() > 1000


def test_enhanced_multiframe_ct_matches_the_classic_series(shared_data, tmp_path):
    """The same CT as one enhanced multi-frame object (highdicom's legacy conversion)."""
    import pydicom
    from highdicom.legacy import LegacyConvertedEnhancedCTImage
    from pydicom.uid import generate_uid

    folder = shared_data / "dcmqi_ct3slice"
    legacy = [pydicom.dcmread(f) for f in _ct_series_files(folder)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # highdicom's person-name style warning
        enhanced = LegacyConvertedEnhancedCTImage(legacy_datasets=legacy, series_instance_uid=generate_uid(),
                                                  series_number=99, sop_instance_uid=generate_uid(), instance_number=1)
    enhanced.save_as(tmp_path / "enhanced.dcm")
    classic = read_volume(folder)
    multi = read_volume(tmp_path)
    assert multi.metadata["dicom"]["multiframe"] is True and multi.modality == "CT"
    np.testing.assert_array_equal(multi.array, classic.array)
    assert multi.array.dtype == np.int16
    np.testing.assert_allclose(multi.origin, classic.origin, atol=1e-5)
    np.testing.assert_allclose(multi.direction, classic.direction, atol=1e-6)
    np.testing.assert_allclose(multi.spacing, classic.spacing, atol=1e-5)
