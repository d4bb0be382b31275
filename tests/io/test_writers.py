"""read -> write -> read keeps values and geometry, for every format (oblique + anisotropic)."""

import json
from pathlib import Path

import numpy as np
import pytest

from napari_medseg.errors import ImageReadError, InvalidInputError, UnsupportedFormatError  # noqa: E402
from napari_medseg.io import LabelTable, read_labels, read_volume, sidecar_path, write_labels, write_volume
from napari_medseg.io import LabelTable, Volume, read_volume, write_labels, write_volume
from napari_medseg.testing.volumes import label_volume, oblique_volume
from napari_medseg.testing.volumes import label_volume, oblique_volume, snapshot


FORMATS = [".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd"]


# NIfTI stores geometry as float32; the others as decimal doubles.
GEOM_TOL = {".nii": 2e-5, ".nii.gz": 2e-5}


def assert_same_geometry(a, b, tol):
    np.testing.assert_allclose(a.spacing, b.spacing, rtol=tol, atol=tol)
    np.testing.assert_allclose(a.origin, b.origin, rtol=tol, atol=tol * 100)
    np.testing.assert_allclose(a.direction, b.direction, atol=tol)


@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8])
def test_volume_round_trip(tmp_path, ext, dtype):
    vol = oblique_volume(dtype=dtype)
    assert not vol.is_axis_aligned and len(set(vol.spacing)) == 3
    path = tmp_path / f"img{ext}"
    write_volume(vol, path)
    back = read_volume(path)
    assert back.array.dtype == vol.array.dtype
    np.testing.assert_array_equal(back.array, vol.array)
    assert_same_geometry(back, vol, GEOM_TOL.get(ext, 1e-12))
    # Nothing but the file (and the .mhd data file) is left in the folder.
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == (["img.mhd", "img.zraw"] if ext == ".mhd" else ["img.nhdr", "img.raw.gz"] if ext == ".nhdr" else [path.name])


@pytest.mark.parametrize("ext", [".nrrd", ".mha", ".mhd", ".nhdr"])
def test_modality_survives_nrrd_and_metaimage(tmp_path, ext):
    vol = oblique_volume()
    write_volume(vol, tmp_path / f"ct{ext}")
    assert read_volume(tmp_path / f"ct{ext}").modality == "CT"


def test_nifti_has_no_modality_field(tmp_path):
    # NIfTI cannot say "CT": the reader must not invent it.
    write_volume(oblique_volume(), tmp_path / "ct.nii.gz")
    assert read_volume(tmp_path / "ct.nii.gz").modality is None


def test_bids_sidecar_modality_hint(tmp_path):
    write_volume(oblique_volume(), tmp_path / "t1.nii.gz")
    (tmp_path / "t1.json").write_text(json.dumps({"Modality": "MR", "MagneticFieldStrength": 3}))
    assert read_volume(tmp_path / "t1.nii.gz").modality == "MR"


def test_second_write_replaces_first(tmp_path):
    path = tmp_path / "img.nrrd"
    write_volume(oblique_volume(seed=1), path)
    vol2 = oblique_volume(seed=2)
    write_volume(vol2, path)
    np.testing.assert_array_equal(read_volume(path).array, vol2.array)


@pytest.mark.parametrize("ext", FORMATS + [".seg.nrrd"])
def test_labels_round_trip_with_names(tmp_path, ext):
    labels = label_volume()
    table = LabelTable.from_names({1: "liver", 2: "liver_lesion", 5: "kidney_left", 7: "unused"})
    path = tmp_path / f"labels{ext}"
    write_labels(labels, path, table)
    side = sidecar_path(path)
    assert side.name == "labels.json" and side.is_file()
    doc = json.loads(side.read_text())
    assert doc["geometry"]["shape_zyx"] == [6, 8, 9]
    back, back_table = read_labels(path, reference=labels)
    assert back.array.dtype == np.uint8  # smallest unsigned type for max id 5
    np.testing.assert_array_equal(back.array, labels.array)
    assert back_table == table
    assert back.metadata["label_names_source"] == "sidecar"
    assert_same_geometry(back, labels, GEOM_TOL.get(ext, 1e-12))


@pytest.mark.parametrize("max_id,dtype", [(255, np.uint8), (256, np.uint16), (70000, np.uint32)])
def test_labels_smallest_unsigned_dtype(tmp_path, max_id, dtype):
    arr = np.zeros((2, 3, 4), np.int64)
    arr[0, 0, 0] = max_id
    from napari_medseg.io import Volume

    write_labels(Volume(arr), tmp_path / "l.nrrd")
    back, table = read_labels(tmp_path / "l.nrrd")
    assert back.array.dtype == dtype and back.array.max() == max_id
    assert table.names == {max_id: f"label {max_id}"}


def test_slicer_seg_names_without_sidecar(tmp_path):
    """A .seg.nrrd alone (as Slicer would hand it over) carries names and colours."""
    import SimpleITK as sitk

    labels = label_volume()
    table = LabelTable.from_names({1: "liver", 2: "tumour", 5: "kidney"}, colors={2: (1.0, 0.0, 0.0, 1.0)})
    path = tmp_path / "case.seg.nrrd"
    write_labels(labels, path, table)
    sidecar_path(path).unlink()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    keys = {k: reader.GetMetaData(k) for k in reader.GetMetaDataKeys()}
    assert keys["Segment1_Name"] == "tumour" and keys["Segment1_LabelValue"] == "2"
    assert keys["Segment1_Color"] == "1 0 0" and keys["Segment0_Layer"] == "0"
    assert keys["Segmentation_MasterRepresentation"] == "Binary labelmap"
    # Every segment of the (single) layer carries the layer's extent, x0 x1 y0 y1 z0 z1:
    # Slicer crops the shared labelmap to the first segment's extent.
    z, y, x = labels.shape
    assert {keys[f"Segment{i}_Extent"] for i in range(3)} == {f"0 {x - 1} 0 {y - 1} 0 {z - 1}"}
    back, back_table = read_labels(path)
    assert back.metadata["label_names_source"] == "slicer"
    assert back_table.names == {1: "liver", 2: "tumour", 5: "kidney"}
    assert back_table.color_of(2) == (1.0, 0.0, 0.0, 1.0)


def test_write_seg_nrrd_function(tmp_path):
    from napari_medseg.io.slicer_seg import write_seg_nrrd

    labels = label_volume()
    path = write_seg_nrrd(labels, tmp_path / "x.seg.nrrd", LabelTable.from_names({1: "a", 2: "b", 5: "c"}))
    back, table = read_labels(path)
    assert table.names == {1: "a", 2: "b", 5: "c"}
    np.testing.assert_array_equal(back.array, labels.array)


def test_boolean_and_whole_float_labels_are_accepted(tmp_path):
    from napari_medseg.io import Volume

    write_labels(Volume(np.ones((2, 2, 2), bool)), tmp_path / "b.nii.gz")
    assert read_labels(tmp_path / "b.nii.gz")[0].array.dtype == np.uint8
    write_labels(Volume(np.full((2, 2, 2), 3.0)), tmp_path / "f.nii.gz")
    assert read_labels(tmp_path / "f.nii.gz")[1].names == {3: "label 3"}


def test_float_file_with_whole_values_reads_as_labels(tmp_path):
    from napari_medseg.io import Volume

    write_volume(Volume(np.array([[[0.0, 1.0], [2.0, 0.0]]], np.float32)), tmp_path / "m.nrrd")
    labels, table = read_labels(tmp_path / "m.nrrd")
    assert labels.array.dtype == np.uint8 and table.ids == [1, 2]


def test_2d_image_loads_as_one_slice(tmp_path):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.arange(12, dtype=np.int16).reshape(3, 4))
    img.SetSpacing((0.5, 0.7))
    img.SetOrigin((3.0, 4.0))
    sitk.WriteImage(img, str(tmp_path / "slice.nrrd"))
    vol = read_volume(tmp_path / "slice.nrrd")
    assert vol.shape == (1, 3, 4)
    assert vol.spacing == (0.5, 0.7, 1.0) and vol.origin == (3.0, 4.0, 0.0)
    assert vol.metadata["single_slice"] is True


def test_4d_and_rgb_pick_channel(tmp_path):
    import SimpleITK as sitk

    arr4 = np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(2, 3, 4, 5)  # t, z, y, x
    img = sitk.GetImageFromArray(arr4, isVector=False)
    img.SetSpacing((0.5, 0.6, 2.0, 1.0))
    sitk.WriteImage(img, str(tmp_path / "t.nii.gz"))
    vol = read_volume(tmp_path / "t.nii.gz", channel=1)
    np.testing.assert_array_equal(vol.array, arr4[1])
    np.testing.assert_allclose(vol.spacing, (0.5, 0.6, 2.0))
    assert vol.metadata["channel_note"] == "volume 1 of 2"
    rgb = np.random.default_rng(0).integers(0, 255, (3, 4, 5, 3)).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "rgb.mha"))
    np.testing.assert_array_equal(read_volume(tmp_path / "rgb.mha", channel=2).array, rgb[..., 2])


def test_cropped_labels_are_placed_back_on_the_reference_grid(tmp_path):
    """A label map saved cropped to its extent (as Slicer can) lands on the right voxels."""
    from napari_medseg.errors import GeometryMismatchError
    from napari_medseg.io import Volume

    image = oblique_volume(shape=(6, 7, 8))
    full = np.zeros(image.shape, np.uint8)
    full[2:5, 1:4, 3:8] = 3
    crop_origin = image.index_to_physical((2, 1, 3))
    crop = Volume(full[2:5, 1:4, 3:8], spacing=image.spacing, origin=crop_origin, direction=image.direction)
    write_labels(crop, tmp_path / "crop.seg.nrrd", LabelTable.from_names({3: "tumour"}))
    labels, table = read_labels(tmp_path / "crop.seg.nrrd", reference=image)
    np.testing.assert_array_equal(labels.array, full)
    assert labels.same_grid(image) and labels.metadata["embedded_offset_zyx"] == [2, 1, 3]
    # other formats pad only when asked (a crop cannot be told from a file cut without
    # updating its origin)
    write_labels(crop, tmp_path / "crop.nii.gz")
    with pytest.raises(GeometryMismatchError, match="shape"):
        read_labels(tmp_path / "crop.nii.gz", reference=image)
    np.testing.assert_array_equal(read_labels(tmp_path / "crop.nii.gz", reference=image, allow_crop=True)[0].array, full)
    # a crop sticking out of the image is still a mismatch
    outside = Volume(full[2:5, 1:4, 3:8], spacing=image.spacing, origin=image.index_to_physical((4, 1, 3)),
                     direction=image.direction)
    write_labels(outside, tmp_path / "out.nrrd")
    with pytest.raises(GeometryMismatchError, match="shape"):
        read_labels(tmp_path / "out.nrrd", reference=image, allow_crop=True)


# --- bad input and faults


def _failing_write(monkeypatch, exc=RuntimeError("ITK ERROR: NiftiImageIO(0x1): disk full")):
    """Make SimpleITK write half a file, then fail (as a full disk would)."""
    import SimpleITK as sitk

    def broken(image, path, *args, **kwargs):
        Path(path).write_bytes(b"\x00" * 100)
        raise exc

    monkeypatch.setattr(sitk, "WriteImage", broken)


@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd", ".mha", ".mhd"])
def test_failed_write_keeps_old_volume(tmp_path, monkeypatch, ext):
    path = tmp_path / f"ct{ext}"
    old = oblique_volume(seed=1)
    write_volume(old, path)
    before = snapshot(tmp_path)
    _failing_write(monkeypatch)
    with pytest.raises(ImageReadError, match=rf"could not write .*ct{ext.replace('.', '[.]')}: disk full"):
        write_volume(oblique_volume(seed=2), path)
    monkeypatch.undo()
    assert snapshot(tmp_path) == before  # old file(s) byte-identical, no temp folder left
    np.testing.assert_array_equal(read_volume(path).array, old.array)


def test_interrupted_write_keeps_old_labels_and_sidecar(tmp_path, monkeypatch):
    path = tmp_path / "labels.nii.gz"
    write_labels(label_volume(), path, LabelTable.from_names({1: "liver", 2: "lesion", 5: "kidney"}))
    before = snapshot(tmp_path)
    _failing_write(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        write_labels(label_volume(seed=3), path, LabelTable.from_names({1: "x"}))
    assert snapshot(tmp_path) == before


def test_sidecar_failure_leaves_image_untouched(tmp_path, monkeypatch):
    import napari_medseg.io.writers as writers

    path = tmp_path / "labels.nrrd"
    write_labels(label_volume(), path)
    before = snapshot(tmp_path)

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writers.json, "dumps", boom)
    with pytest.raises(OSError, match="No space left"):
        write_labels(label_volume(seed=4), path)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name,func,pattern,exc", [
    ("out.tif", "volume", r"cannot write .*out.tif: unknown extension; use one of .nii.gz, .nii", UnsupportedFormatError),
    ("out.dcm", "volume", r"cannot write .*out.dcm: writing this format is not supported", UnsupportedFormatError),
    ("out.seg.nrrd", "volume", r"\.seg\.nrrd holds segmentations; use write_labels", UnsupportedFormatError),
    (".nii.gz", "volume", r"the file name is only an extension; give a name", UnsupportedFormatError),
    ("dir", "volume", r"cannot write .*dir.nii.gz: it is a folder; give a file name", ImageReadError),
    ("afile/x.nii.gz", "volume", r"cannot write into .*afile", ImageReadError),
    ("l.json", "labels", r"cannot write .*l.json: unknown extension", UnsupportedFormatError),
])
def test_bad_destinations(tmp_path, name, func, pattern, exc):
    (tmp_path / "dir.nii.gz").mkdir()
    (tmp_path / "afile").write_text("a file, not a folder")
    before = snapshot(tmp_path)
    target = tmp_path / ("dir.nii.gz" if name == "dir" else name)
    with pytest.raises(exc, match=pattern):
        if func == "volume":
            write_volume(oblique_volume(), target)
        else:
            write_labels(label_volume(), target)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("array,pattern", [
    (np.full((2, 2, 2), 0.5), r"labels for .*l.nii.gz must hold whole numbers"),
    (np.full((2, 2, 2), -3, np.int16), r"labels for .*l.nii.gz hold negative values \(min -3\)"),
    (np.full((2, 2, 2), np.nan), r"must hold whole numbers; got non-integer or NaN"),
    (np.full((2, 2, 2), "a"), r"must be an integer array, got dtype <U1"),
])
def test_bad_label_arrays(tmp_path, array, pattern):
    with pytest.raises(InvalidInputError, match=pattern):
        write_labels(Volume(array), tmp_path / "l.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_complex_volume_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="complex voxels are not supported"):
        write_volume(Volume(np.zeros((2, 2, 2), np.complex64)), tmp_path / "c.nrrd")
    assert list(tmp_path.iterdir()) == []


def test_replacing_mhd_never_pairs_old_header_with_new_data(tmp_path, monkeypatch):
    """The new .mhd header is moved in last and names a data file no earlier write used."""
    import os

    import napari_medseg.io.atomic as atomic

    path = tmp_path / "ct.mhd"
    first, second = oblique_volume(seed=1), oblique_volume(seed=2)
    write_volume(first, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.mhd", "ct.zraw"]
    # Simulate a crash right after the data file was moved in, before the header.
    real_replace = os.replace
    calls = []

    def crash_on_header(src, dst):
        calls.append(Path(dst).name)
        if Path(dst).name == "ct.mhd":
            raise KeyboardInterrupt("killed")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", crash_on_header)
    with pytest.raises(KeyboardInterrupt):
        write_volume(second, path)
    monkeypatch.undo()
    assert calls[0].startswith("ct.") and calls[0].endswith(".zraw") and calls[0] != "ct.zraw"
    np.testing.assert_array_equal(read_volume(path).array, first.array)  # old pair still consistent
    write_volume(second, path)
    np.testing.assert_array_equal(read_volume(path).array, second.array)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "ct.zraw" not in names and "ct.mhd" in names  # the old data file was removed


def test_replacing_nhdr_keeps_a_consistent_pair(tmp_path):
    path = tmp_path / "ct.nhdr"
    write_volume(oblique_volume(seed=1), path)
    second = oblique_volume(seed=2)
    write_volume(second, path)
    np.testing.assert_array_equal(read_volume(path).array, second.array)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and "ct.raw.gz" not in names and names[0].endswith(".raw.gz")
