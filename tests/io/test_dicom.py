"""DICOM series reading on synthetic series written with pydicom."""

import warnings

import numpy as np
import pytest

from napari_medseg.io import read_volume
from napari_medseg.io.dicom import DicomWarning
from napari_medseg.testing.volumes import rotation, write_dicom_series, write_dicom_slice


def test_sorted_by_position_not_file_name_and_hu(tmp_path):
    info = write_dicom_series(tmp_path, n=5, dz=2.5, slope=1.0, intercept=-1024, shuffle=True)
    vol = read_volume(tmp_path)
    np.testing.assert_array_equal(vol.array, info["stored"].astype(np.int32) - 1024)
    assert vol.spacing == (0.6, 0.5, 2.5)  # PixelSpacing is (row, column) = (y, x)
    assert vol.origin == (-50.0, -40.0, 10.0)
    assert vol.modality == "CT"
    assert vol.metadata["dicom"]["slice_positions_mm"] == [10.0, 12.5, 15.0, 17.5, 20.0]


def test_fractional_rescale_gives_float(tmp_path):
    info = write_dicom_series(tmp_path, n=3, slope=0.5, intercept=-10.25)
    vol = read_volume(tmp_path)
    assert vol.array.dtype == np.float32
    np.testing.assert_allclose(vol.array, info["stored"] * 0.5 - 10.25)


def test_oblique_orientation_geometry(tmp_path):
    r = rotation((0.2, 1.0, 0.3), 0.5)
    orientation = tuple(r[:, 0]) + tuple(r[:, 1])
    write_dicom_series(tmp_path, n=4, dz=3.0, orientation=orientation)
    vol = read_volume(tmp_path)
    d = vol.direction_matrix
    np.testing.assert_allclose(d[:, 0], r[:, 0], atol=1e-6)
    np.testing.assert_allclose(d[:, 1], r[:, 1], atol=1e-6)
    np.testing.assert_allclose(d[:, 2], np.cross(r[:, 0], r[:, 1]), atol=1e-6)
    assert vol.spacing[2] == pytest.approx(3.0, abs=1e-4)  # positions stored as 6-digit strings
    # slice k sits at origin + k * dz * normal
    np.testing.assert_allclose(vol.index_to_physical((3, 0, 0)) - vol.index_to_physical((0, 0, 0)),
                               9.0 * d[:, 2], atol=1e-3)


def test_several_series_picks_largest_and_names_the_others(tmp_path):
    big = write_dicom_series(tmp_path, n=5, prefix="a", series_description="AX 2.5")
    small = write_dicom_series(tmp_path, n=2, prefix="b", series_description="SCOUT")
    with pytest.warns(DicomWarning, match=r"holds 2 image series; loading the one with the most slices.*AX 2.5.*5 slices.*Ignored: .*SCOUT.*2 slices") as rec:
        vol = read_volume(tmp_path)
    assert small["uid"] in str(rec[0].message)
    assert vol.shape[0] == 5 and vol.metadata["dicom"]["SeriesInstanceUID"] == big["uid"]


def test_file_of_small_series_loads_that_series(tmp_path):
    write_dicom_series(tmp_path, n=5, prefix="a")
    small = write_dicom_series(tmp_path, n=2, prefix="b")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vol = read_volume(small["files"][0])
    assert vol.shape[0] == 2 and vol.metadata["dicom"]["SeriesInstanceUID"] == small["uid"]


def test_missing_slice_warns_with_positions(tmp_path):
    write_dicom_series(tmp_path, positions=[0.0, 2.0, 4.0, 8.0, 10.0])
    with pytest.warns(DicomWarning, match=r"irregular slice spacing \(usual gap 2 mm\): 1 missing slice\(s\) between 4.00 and 8.00 mm"):
        vol = read_volume(tmp_path)
    assert vol.shape[0] == 5 and vol.spacing[2] == 2.0


def test_irregular_gap_warns(tmp_path):
    write_dicom_series(tmp_path, positions=[0.0, 2.0, 4.0, 6.7, 8.7, 10.7])
    with pytest.warns(DicomWarning, match=r"gap 2.7 mm between 4.00 and 6.70 mm"):
        read_volume(tmp_path)


def test_rgb_dicom_needs_channel(tmp_path):
    from napari_medseg.io import MultiChannelError

    rgb = np.random.default_rng(0).integers(0, 255, (4, 5, 3)).astype(np.uint8)
    for k in range(2):
        write_dicom_slice(tmp_path / f"c{k}.dcm", rgb, position=(0, 0, k), series_uid="1.2.3.4",
                          samples_per_pixel=3, modality="OT", sop_class="1.2.840.10008.5.1.4.1.1.7")
    with pytest.raises(MultiChannelError, match=r"RGB colour image \(3 values per voxel\).*channel=0..2"):
        read_volume(tmp_path)
    vol = read_volume(tmp_path, channel=1)
    np.testing.assert_array_equal(vol.array[0], rgb[..., 1])


def test_nested_folders_are_searched(tmp_path):
    write_dicom_series(tmp_path / "patient" / "study" / "series", n=3)
    assert read_volume(tmp_path).shape[0] == 3


def test_duplicate_copies_of_an_instance_are_one_slice(tmp_path):
    info = write_dicom_series(tmp_path, n=3)
    (tmp_path / "copy.dcm").write_bytes(info["files"][0].read_bytes())
    with pytest.warns(DicomWarning, match="ignoring 1 duplicate file"):
        assert read_volume(tmp_path).shape[0] == 3


# --- modality from the DICOM tags

def test_modality_comes_from_the_mr_tag(tmp_path):
    """pydicom's MR_small.dcm as a series: the Modality tag makes it MR, and MR windows apply."""
    from napari_medseg.io.windows import image_modality, presets_for
    from napari_medseg.testing.volumes import write_pydicom_mr_series

    info = write_pydicom_mr_series(tmp_path, n=5)
    vol = read_volume(tmp_path)
    assert vol.shape == (5, 64, 64)
    np.testing.assert_array_equal(vol.array[2], info["pixels"])
    assert vol.modality == "MR" and image_modality(vol) == "MR"
    assert "lung" not in presets_for(image_modality(vol))


def test_the_tag_beats_the_values_and_the_user_beats_the_tag(tmp_path):
    """An MR series whose stored values happen to look like Hounsfield units stays MR (the
    file says so); the user's override wins over the file; "auto" gives the file's word back."""
    from napari_medseg.io.windows import image_modality, infer_modality_from_values
    from napari_medseg.testing.volumes import MR_IMAGE_STORAGE

    write_dicom_series(tmp_path / "mr", n=4, modality="MR", sop_class=MR_IMAGE_STORAGE,
                       intercept=-1024.0)
    write_dicom_series(tmp_path / "ct", n=4)
    mr, ct = read_volume(tmp_path / "mr"), read_volume(tmp_path / "ct")
    assert infer_modality_from_values(mr.array) == "CT"  # the values alone would say CT
    assert mr.modality == "MR" and image_modality(mr) == "MR"
    assert ct.modality == "CT" and image_modality(ct) == "CT"
    for volume, said in ((mr, "CT"), (ct, "MR"), (ct, "mri")):
        volume.metadata["medseg_modality"] = said
        assert image_modality(volume) == ("MR" if said == "mri" else said)
    mr.metadata["medseg_modality"] = "auto"
    assert image_modality(mr) == "MR"
