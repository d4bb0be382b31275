"""Real CT (TotalSegmentator example) and DICOM (dcmqi) load with SimpleITK's geometry."""

import gzip
import re
import struct
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from napari_medseg.errors import GeometryMismatchError, UnsupportedFormatError
from napari_medseg.errors import (GeometryMismatchError, ImageReadError, InvalidInputError,  # noqa: E402
                                  MedsegError, UnsupportedFormatError)
from napari_medseg.io import read_labels, read_volume
from napari_medseg.io import MultiChannelError, Volume, read_labels, read_volume, write_labels, write_volume  # noqa: E402
from napari_medseg.io.dicom import DicomWarning  # noqa: E402
from napari_medseg.testing.volumes import oblique_volume, snapshot, write_dicom_series, write_dicom_slice


pytestmark = pytest.mark.shared_data


def _ct_series_files(folder):
    import pydicom

    out = []
    for p in sorted(folder.glob("*.dcm")):
        if pydicom.dcmread(p, stop_before_pixels=True).Modality == "CT":
            out.append(p)
    return out


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


# --- bad input and faults


def _good(folder: Path, ext: str) -> Path:
    path = folder / f"good{ext}"
    write_volume(oblique_volume(shape=(6, 7, 8)), path)
    return path


def _truncated(ext):
    def make(folder):
        src = _good(folder, ext)
        data = src.read_bytes()
        path = folder / f"cut{ext}"
        path.write_bytes(data[: len(data) * 2 // 3])
        src.unlink()
        return path
    return make


def _corrupt(ext, where=0.75):
    def make(folder):
        src = _good(folder, ext)
        data = bytearray(src.read_bytes())
        start = int(len(data) * where)
        for i in range(start, min(start + 16, len(data))):
            data[i] ^= 0xA5
        path = folder / f"bad{ext}"
        path.write_bytes(bytes(data))
        src.unlink()
        return path
    return make


def _text(name):
    def make(folder):
        path = folder / name
        path.write_text("patient notes: this is not an image\n" * 20)
        return path
    return make


def _empty_file(name):
    def make(folder):
        path = folder / name
        path.write_bytes(b"")
        return path
    return make


def _missing(folder):
    return folder / "nope" / "ct.nii.gz"


def _empty_folder(folder):
    d = folder / "dicom"
    d.mkdir()
    return d


def _folder_without_images(folder):
    d = folder / "docs"
    d.mkdir()
    (d / "report.txt").write_text("no images here")
    (d / "scan.tif").write_bytes(b"II*\x00" + bytes(100))
    return d


def _only_seg(folder):
    d = folder / "segonly"
    write_dicom_slice(d / "seg.dcm" if d.mkdir() is None else d, np.zeros((4, 4), np.int16), position=(0, 0, 0),
                      series_uid="1.2.3", modality="SEG", sop_class="1.2.840.10008.5.1.4.1.1.66.4")
    return d


def _mixed_orientation(folder):
    d = folder / "mixed"
    info = write_dicom_series(d, n=3, shuffle=False)
    write_dicom_slice(d / "zz_sag.dcm", np.zeros((6, 5), np.int16), position=(0, 0, 0),
                      orientation=(0, 1, 0, 0, 0, -1), series_uid=info["uid"])
    return d


def _duplicate_positions(folder):
    d = folder / "dup"
    write_dicom_series(d, positions=[0.0, 2.0, 2.0, 4.0])
    return d


def _no_position(folder):
    from pydicom import dcmread

    d = folder / "nopos"
    info = write_dicom_series(d, n=3)
    ds = dcmread(info["files"][1])
    del ds.ImagePositionPatient
    ds.save_as(info["files"][1])
    return d


def _damaged_dicom(folder):
    path = folder / "x.dcm"
    path.write_bytes(bytes(128) + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f" + bytes(20))
    return path


def _four_d(folder):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.zeros((3, 2, 4, 5), np.int16), isVector=False)
    path = folder / "dwi.nii.gz"
    sitk.WriteImage(img, str(path))
    return path


def _rgb(folder):
    import SimpleITK as sitk

    path = folder / "photo.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 4, 5, 3), np.uint8), isVector=True), str(path))
    return path


def _nrrd(folder, directions, name="geom.nrrd"):
    hdr = ("NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 2 2 2\n"
           f"space directions: {directions}\nkinds: domain domain domain\nendian: little\nencoding: raw\n"
           "space origin: (0,0,0)\n\n")
    path = folder / name
    path.write_bytes(hdr.encode() + bytes(16))
    return path


def _zero_pixdim_nifti(folder):
    import SimpleITK as sitk

    path = folder / "zero.nii"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16)), str(path))
    data = bytearray(path.read_bytes())
    data[80:84] = struct.pack("<f", 0.0)  # pixdim[1]
    data[280:296] = struct.pack("<4f", 0, 0, 0, 0)  # sform row x: no valid sform
    path.write_bytes(bytes(data))
    return path


def _unknown_ext(folder):
    path = folder / "scan.tif"
    path.write_bytes(b"II*\x00" + bytes(100))
    return path


def _mhd_missing_raw(folder):
    path = _good(folder, ".mhd")
    (folder / "good.zraw").unlink()
    return path


def _broken_gzip_header(folder):
    src = _good(folder, ".nii.gz")
    data = bytearray(src.read_bytes())
    data[12:40] = bytes(28)
    path = folder / "hdr.nii.gz"
    path.write_bytes(bytes(data))
    src.unlink()
    return path


READ_VOLUME_CASES = [
    ("missing path", _missing, ImageReadError, r"nope/ct.nii.gz: no such file or folder \(the folder .* does not exist either\)"),
    ("empty DICOM folder", _empty_folder, ImageReadError, r"dicom is an empty folder: no DICOM files to read"),
    ("folder without images", _folder_without_images, ImageReadError, r"docs holds no DICOM files \(it holds 2 other file\(s\): report.txt, scan.tif; open an image file directly\)"),
    ("folder with only a SEG", _only_seg, ImageReadError, r"segonly holds DICOM objects but no image series \(only: DICOM Segmentation \(SEG\)\)"),
    ("truncated .nii.gz", _truncated(".nii.gz"), ImageReadError, r"cut.nii.gz is truncated: its compressed pixel data ends early"),
    ("truncated .nii", _truncated(".nii"), ImageReadError, r"cut.nii is truncated: only \d+ of the \d+ bytes its header promises are there"),
    ("truncated .nrrd", _truncated(".nrrd"), ImageReadError, r"cut.nrrd is truncated"),
    ("truncated .mha", _truncated(".mha"), ImageReadError, r"cut.mha is truncated"),
    ("corrupt .nii.gz data", _corrupt(".nii.gz"), ImageReadError, r"bad.nii.gz (is corrupt: its compressed pixel data fails to decode|is not a readable NIfTI file)"),
    ("corrupt .nii.gz header", _broken_gzip_header, ImageReadError, r"hdr.nii.gz is not a valid NIfTI file: its gzip data is corrupt"),
    ("corrupt .nrrd data", _corrupt(".nrrd"), ImageReadError, r"bad.nrrd is corrupt: its compressed pixel data fails to decode \(.*incorrect data check"),
    ("corrupt .mha data", _corrupt(".mha"), ImageReadError, r"bad.mha is corrupt: its compressed pixel data fails to decode"),
    ("corrupt .nrrd header", _corrupt(".nrrd", where=0.0), ImageReadError, r"bad.nrrd is not a valid NRRD file: the NRRD magic line 'NRRD000x' is missing"),
    ("text as .nii.gz", _text("notes.nii.gz"), ImageReadError, r"notes.nii.gz is a text file, not a NIfTI image"),
    ("text as .nii", _text("notes.nii"), ImageReadError, r"notes.nii is not a valid NIfTI file: the first bytes are a text file"),
    ("text as .nrrd", _text("notes.nrrd"), ImageReadError, r"notes.nrrd is not a valid NRRD file: it is a text file without the NRRD magic line"),
    ("text as .mha", _text("notes.mha"), ImageReadError, r"notes.mha is not a valid MetaImage file: no 'NDims =' / 'ObjectType =' header lines"),
    ("text as .dcm", _text("notes.dcm"), ImageReadError, r"notes.dcm is not a DICOM file"),
    ("empty .nii.gz", _empty_file("e.nii.gz"), ImageReadError, r"e.nii.gz is an empty file \(0 bytes\)"),
    ("damaged DICOM", _damaged_dicom, ImageReadError, r"x.dcm is a DICOM file without an image \(no pixel matrix"),
    ("mhd without its data file", _mhd_missing_raw, ImageReadError, r"good.mhd: its pixel data file good.zraw is missing"),
    ("unknown extension", _unknown_ext, UnsupportedFormatError, r"scan.tif is not in a format napari-medseg reads \(NIfTI"),
    ("DICOM mixed orientations", _mixed_orientation, ImageReadError, r"mixed: CT series .* mixes slice orientations .* zz_sag.dcm.*not one volume"),
    ("DICOM duplicate positions", _duplicate_positions, ImageReadError, r"several slices at the same position \(2.00 mm along the slice normal.*several stacks"),
    ("DICOM slice without position", _no_position, ImageReadError, r"1 file\(s\) lack ImagePositionPatient/ImageOrientationPatient"),
    ("4D without channel", _four_d, MultiChannelError, r"dwi.nii.gz is a 4D image holding 3 volumes \(5x4x2 voxels each.*pass channel=0..2"),
    ("RGB without channel", _rgb, MultiChannelError, r"photo.mha is an RGB colour image \(3 values per voxel\).*pass channel=0..2"),
    ("zero spacing NRRD", lambda f: _nrrd(f, "(1,0,0) (0,0,0) (0,0,1)"), ImageReadError, r"geom.nrrd has a broken geometry header: Zero-valued spacing"),
    ("singular direction NRRD", lambda f: _nrrd(f, "(1,0,0) (1,0,0) (0,0,1)"), ImageReadError, r"geom.nrrd has a broken geometry header: .*determinant is 0"),
    ("zero pixdim NIfTI", _zero_pixdim_nifti, ImageReadError, r"zero.nii has a broken geometry header: voxel spacing \(pixdim\) \(0.0, 1.0, 1.0\) contains zero"),
]


LABEL_CASES = [
    ("negative labels", lambda f: (Volume(np.array([[[-1, 0], [1, 2]]], np.int16)), "neg.nrrd"), InvalidInputError,
     r"neg.nrrd is not a label map: it holds negative values \(min -1\)"),
    ("fractional labels", lambda f: (Volume(np.array([[[0.5, 0], [1, 2]]], np.float32)), "frac.nii.gz"), InvalidInputError,
     r"frac.nii.gz is not a label map: it holds non-integer values \(e.g. 0.5\); open it as an image instead"),
    ("NaN labels", lambda f: (Volume(np.array([[[np.nan, 0], [1, 2]]], np.float32)), "nan.mha"), InvalidInputError,
     r"nan.mha is not a label map: it holds NaN/Inf values"),
]


# ------------------------------------------------------------- property tests
READER_ERRORS = (ImageReadError,)  # UnsupportedFormatError and MultiChannelError included


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _must_fail_cleanly_or_read(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            vol = read_volume(path)
        except READER_ERRORS as exc:
            assert str(exc) and "\n" not in str(exc)
            assert path.name in str(exc) or path.parent.name in str(exc)
            return
    assert isinstance(vol, Volume)


finite_or_not = st.one_of(st.floats(-1e4, 1e4), st.sampled_from([0.0, float("nan"), float("inf"), -1e30]))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 300) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(["labels", "id", "name", "color", "geometry", "x"]), children, max_size=4),
    max_leaves=20,
)


@pytest.mark.parametrize("case,make,exc_type,pattern", READ_VOLUME_CASES, ids=[c[0] for c in READ_VOLUME_CASES])
def test_read_volume_bad_input(tmp_path, case, make, exc_type, pattern):
    path = make(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(exc_type) as info:
        read_volume(path)
    message = str(info.value)
    assert re.search(pattern, message), message
    assert "\n" not in message and ".cxx" not in message and ".hxx" not in message
    assert snapshot(tmp_path) == before


def test_channel_out_of_range(tmp_path):
    path = _four_d(tmp_path)
    with pytest.raises(InvalidInputError, match=r"channel 3 is out of range for .*dwi.nii.gz: it holds 3 volumes \(0..2\)"):
        read_volume(path, channel=3)
    with pytest.raises(InvalidInputError, match=r"has a single channel; channel=2 does not exist"):
        read_volume(_good(tmp_path, ".nrrd"), channel=2)


def test_negative_determinant_is_a_valid_mirror(tmp_path):
    """A left-handed direction (det -1) is legal (e.g. NIfTI qfac -1): loaded, not refused."""
    vol = read_volume(_nrrd(tmp_path, "(1,0,0) (0,-1,0) (0,0,1)"))
    assert np.linalg.det(vol.direction_matrix) == pytest.approx(-1.0)
    assert "affine" in vol.layer_kwargs()


def test_dicom_several_series_warns(tmp_path):
    write_dicom_series(tmp_path, n=4, prefix="a", series_description="AXIAL")
    write_dicom_series(tmp_path, n=2, prefix="b", series_description="LOCALIZER")
    before = snapshot(tmp_path)
    with pytest.warns(DicomWarning, match=r"holds 2 image series; loading the one with the most slices, CT series #1 'AXIAL' \(4 slices.*Ignored: CT series #1 'LOCALIZER' \(2 slices"):
        assert read_volume(tmp_path).shape[0] == 4
    assert snapshot(tmp_path) == before


def test_dicom_missing_slice_warns_where(tmp_path):
    write_dicom_series(tmp_path, positions=[0.0, 1.5, 3.0, 4.5, 9.0, 10.5])
    with pytest.warns(DicomWarning, match=r"2 missing slice\(s\) between 4.50 and 9.00 mm"):
        read_volume(tmp_path)


@pytest.mark.parametrize("case,make,exc_type,pattern", LABEL_CASES, ids=[c[0] for c in LABEL_CASES])
def test_read_labels_bad_values(tmp_path, case, make, exc_type, pattern):
    vol, name = make(tmp_path)
    write_volume(vol, tmp_path / name)
    before = snapshot(tmp_path)
    with pytest.raises(exc_type, match=pattern):
        read_labels(tmp_path / name)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("change,pattern", [
    (dict(spacing=(0.8, 0.8, 3.5)), r"spacing \(0.8, 0.8, 3.5\) vs \(0.8, 0.8, 3.0\) mm"),
    (dict(origin=(10.0, -20.0, 35.0)), r"origin \(10.0, -20.0, 35.0\) vs \(10.0, -20.0, 30.5\) mm"),
    (dict(direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1)), r"direction matrices differ"),
])
def test_label_geometry_mismatch(tmp_path, change, pattern):
    image = Volume(np.zeros((3, 4, 5), np.int16), spacing=(0.8, 0.8, 3.0), origin=(10.0, -20.0, 30.5))
    labels = Volume(np.ones((3, 4, 5), np.uint8), **{**dict(spacing=image.spacing, origin=image.origin), **change})
    write_labels(labels, tmp_path / "l.nrrd")
    before = snapshot(tmp_path)
    with pytest.raises(GeometryMismatchError, match=r"labels in l.nrrd do not lie on the image's voxel grid: " + pattern):
        read_labels(tmp_path / "l.nrrd", reference=image)
    assert snapshot(tmp_path) == before


def test_label_shape_mismatch(tmp_path):
    write_labels(Volume(np.ones((3, 4, 6), np.uint8)), tmp_path / "l.nii.gz")
    with pytest.raises(GeometryMismatchError, match=r"shape \(3, 4, 6\) vs \(3, 4, 5\) \(z, y, x\)"):
        read_labels(tmp_path / "l.nii.gz", reference=Volume(np.zeros((3, 4, 5))))


def test_multilayer_slicer_segmentation_refused(tmp_path):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.zeros((3, 4, 5, 2), np.uint8), isVector=True)
    for i, layer in enumerate((0, 1)):
        img.SetMetaData(f"Segment{i}_Name", f"seg{i}")
        img.SetMetaData(f"Segment{i}_LabelValue", "1")
        img.SetMetaData(f"Segment{i}_Layer", str(layer))
    path = tmp_path / "over.seg.nrrd"
    sitk.WriteImage(img, str(path))
    before = snapshot(tmp_path)
    with pytest.raises(UnsupportedFormatError, match=r"over.seg.nrrd is a 3D Slicer segmentation with 2 layers \(overlapping segments\).*Overwrite all"):
        read_labels(path)
    assert snapshot(tmp_path) == before


def test_broken_sidecar_is_reported(tmp_path):
    write_labels(Volume(np.ones((2, 2, 2), np.uint8)), tmp_path / "l.nii.gz")
    (tmp_path / "l.json").write_text('{"labels": [')
    with pytest.raises(InvalidInputError, match=r"l.json is not valid JSON .*fix or delete it"):
        read_labels(tmp_path / "l.nii.gz")


def test_dicom_image_refused_by_read_labels(shared_data):
    with pytest.raises(UnsupportedFormatError, match="this is a DICOM image \\(series\\), not a segmentation"):
        read_labels(shared_data / "dcmqi_ct3slice" / "ct-3slice_01.dcm")
    with pytest.raises(UnsupportedFormatError, match="dcmqi_ct3slice: read_labels reads label maps"):
        read_labels(shared_data / "dcmqi_ct3slice")


@SETTINGS
@given(data=st.binary(max_size=2048), ext=st.sampled_from([".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm"]))
def test_random_bytes_never_crash(tmp_path, data, ext):
    path = tmp_path / f"random{ext}"
    path.write_bytes(data)
    _must_fail_cleanly_or_read(path)


@SETTINGS
@given(
    sizes=st.lists(st.integers(-2, 6), min_size=1, max_size=5),
    type_=st.sampled_from(["short", "uchar", "float", "double", "int", "bogus"]),
    encoding=st.sampled_from(["raw", "gzip", "ascii", "weird"]),
    spacing=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=3, max_size=3),
    payload=st.binary(max_size=600),
)
def test_random_nrrd_headers(tmp_path, sizes, type_, encoding, spacing, payload):
    # one axis-aligned space direction per (up to 3) axes, lengths drawn at random (0, NaN, inf...)
    dirs = " ".join("(" + ",".join(str(spacing[i]) if k == i else "0" for k in range(3)) + ")"
                    for i in range(min(len(sizes), 3)))
    header = (f"NRRD0004\ntype: {type_}\ndimension: {len(sizes)}\nsizes: {' '.join(map(str, sizes))}\n"
              f"space dimension: 3\nspace directions: {dirs}\nencoding: {encoding}\nendian: little\n\n")
    path = tmp_path / "h.nrrd"
    path.write_bytes(header.encode() + (gzip.compress(payload) if encoding == "gzip" else payload))
    _must_fail_cleanly_or_read(path)


@SETTINGS
@given(
    dims=st.lists(st.integers(-1, 5), min_size=8, max_size=8),
    datatype=st.sampled_from([2, 4, 8, 16, 64, 256, 512, 768, 1, 32, 999]),
    bitpix=st.sampled_from([8, 16, 32, 64, 0, -8]),
    pixdim=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=8, max_size=8),
    vox_offset=st.sampled_from([352.0, 0.0, 348.0, 1e9, -5.0]),
    codes=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    payload=st.binary(max_size=400),
    compress=st.booleans(),
)
@example(dims=[2, 1, -1, 0, 0, 0, 0, 0], datatype=2, bitpix=8,
         pixdim=[0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0], vox_offset=0.0, codes=(0, 0),
         payload=b"", compress=False)  # a negative size: numpy's mmap raised OverflowError
def test_random_nifti_headers(tmp_path, dims, datatype, bitpix, pixdim, vox_offset, codes, payload, compress):
    hdr = bytearray(348)
    hdr[0:4] = struct.pack("<i", 348)
    hdr[40:56] = struct.pack("<8h", *dims)
    hdr[70:72] = struct.pack("<h", datatype)
    hdr[72:74] = struct.pack("<h", bitpix)
    hdr[76:108] = struct.pack("<8f", *pixdim)
    hdr[108:112] = struct.pack("<f", vox_offset)
    hdr[252:256] = struct.pack("<2h", *codes)
    hdr[344:348] = b"n+1\x00"
    data = bytes(hdr) + bytes(4) + payload
    path = tmp_path / ("h.nii.gz" if compress else "h.nii")
    path.write_bytes(gzip.compress(data) if compress else data)
    _must_fail_cleanly_or_read(path)


@SETTINGS
@given(
    lines=st.lists(st.sampled_from([
        "ObjectType = Image", "NDims = 3", "NDims = 2", "NDims = 7", "DimSize = 2 2 2", "DimSize = 0 2 2",
        "DimSize = -1 3", "ElementType = MET_SHORT", "ElementType = MET_NOPE", "ElementSpacing = 1 1 1",
        "ElementSpacing = 0 1 1", "ElementSpacing = nan 1 1", "TransformMatrix = 1 0 0 0 1 0 0 0 1",
        "TransformMatrix = 0 0 0 0 0 0 0 0 0", "CompressedData = True", "BinaryData = True",
        "ElementNumberOfChannels = 3", "Offset = 1 2 3",
    ]), max_size=10),
    payload=st.binary(max_size=100),
)
def test_random_metaimage_headers(tmp_path, lines, payload):
    path = tmp_path / "h.mha"
    path.write_bytes(("\n".join(lines) + "\nElementDataFile = LOCAL\n").encode() + payload)
    _must_fail_cleanly_or_read(path)


def test_every_reader_error_is_a_medseg_error():
    assert issubclass(ImageReadError, MedsegError) and issubclass(MultiChannelError, ImageReadError)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    orientations=st.lists(st.lists(finite_or_not, min_size=6, max_size=6), min_size=1, max_size=3),
    positions=st.lists(st.lists(finite_or_not, min_size=3, max_size=3), min_size=1, max_size=4),
    spacing=st.lists(finite_or_not, min_size=2, max_size=2),
    slope=finite_or_not,
)
def test_random_dicom_geometry_headers(tmp_path_factory, orientations, positions, spacing, slope):
    """Random ImageOrientation/Position/PixelSpacing/RescaleSlope values (incl. NaN, 0, inf)."""
    folder = tmp_path_factory.mktemp("rnd")
    for k, pos in enumerate(positions):
        orient = orientations[k % len(orientations)]
        try:
            write_dicom_slice(folder / f"{k}.dcm", np.full((3, 4), k, np.int16), position=pos, orientation=orient,
                              pixel_spacing=spacing, series_uid="1.2.3.4.5", slope=slope, intercept=0.0)
        except (ValueError, OverflowError):
            return  # pydicom refuses to encode this value at all; nothing to read
    _must_fail_cleanly_or_read(folder)


def test_reader_does_not_import_torch(tmp_path):
    """Opening a file through the plugin reader stays light (no torch/monai/napari import)."""
    import subprocess

    write_volume(oblique_volume(), tmp_path / "ct.nii.gz")
    code = ("import sys; from napari_medseg._reader import napari_get_reader; "
            f"napari_get_reader({str(tmp_path / 'ct.nii.gz')!r})({str(tmp_path / 'ct.nii.gz')!r}); "
            "print(sorted(m for m in ('torch', 'monai', 'napari') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@SETTINGS
@given(doc=json_values)
def test_random_sidecars(tmp_path, doc):
    """A random JSON document as a sidecar: ignored (not ours) or a clear InvalidInputError."""
    import json as _json

    from napari_medseg.io import read_sidecar

    path = tmp_path / "x.json"
    path.write_text(_json.dumps(doc))
    try:
        found = read_sidecar(path)
    except InvalidInputError as exc:
        assert "x.json" in str(exc)
        return
    assert found is None or found[0].names is not None


@SETTINGS
@given(xml=st.one_of(
    st.binary(max_size=300),
    st.builds(lambda key, r, name: f'<LabelTable><Label Key="{key}" Red="{r}" Green="0" Blue="1">{name}</Label></LabelTable>'.encode(),
              st.text(max_size=4), st.text(max_size=4), st.text(max_size=10)),
))
def test_random_xml_label_tables(xml):
    from napari_medseg.io.label_names import parse_label_table_xml

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = parse_label_table_xml(xml)
    assert table is None or all(isinstance(n, str) for n in table.names.values())
