"""Conformance: files written by other tools read exactly like an independent reference reader.

Sources (origins and licences in ``tests/data/conformance/LICENSES.md``): the test files
that pydicom's and nibabel's wheels ship (used from the installed packages, never copied
into the repository) and files written at test time by the reference writers themselves
(nibabel for NIfTI-1/2, pairs and qform/sform variants; pynrrd for NRRD encodings and
headers; pydicom/highdicom for DICOM series and SEGs; SimpleITK for MetaImage).

Each case compares :func:`napari_medseg.io.read_volume`/``read_labels`` with the
reference on shape, spacing, origin, direction and voxel values (names for label
files), so that a pre-check (:mod:`napari_medseg.io._integrity`) that refuses a file the
real reader reads fails here. Files that hold no 3D volume are refused with a message
naming the file and the reason, which is asserted.
"""

from __future__ import annotations

import gzip
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from napari_medseg.errors import ImageReadError, UnsupportedFormatError
from napari_medseg.io import read_labels, read_volume
from napari_medseg.io.dicom import DicomWarning
from napari_medseg.io.readers import NaNVoxelsWarning
from napari_medseg.io.volume import Volume

nib = pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")
nrrd = pytest.importorskip("nrrd", reason="pynrrd (the NRRD reference reader) is in the [test] extra")
sitk = pytest.importorskip("SimpleITK")

from nibabel.testing import data_path as NIBABEL_DATA  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402

LPS = np.diag([-1.0, -1.0, 1.0])


# ------------------------------------------------------------------ references
def _close(a, b, what, rel=1e-5):
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = max(1.0, float(np.nanmax(np.abs(b))) if b.size else 1.0)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != reference {b.shape}"
    assert np.allclose(a, b, atol=rel * scale, equal_nan=True), f"{what}: {a.ravel()[:9]} != reference {b.ravel()[:9]}"


def _same(volume: Volume, ref: dict) -> None:
    assert volume.shape == ref["array"].shape, f"shape {volume.shape} != reference {ref['array'].shape}"
    _close(volume.spacing, ref["spacing"], "spacing")
    _close(volume.origin, ref["origin"], "origin")
    _close(volume.direction, ref["direction"], "direction")
    _close(volume.array, ref["array"], "voxels")


def nibabel_reference(path, volume_index=None) -> dict:
    """What nibabel reads (its best affine, RAS) in the project's terms (zyx array, LPS xyz)."""
    img = nib.load(str(path))
    arr = np.asarray(img.dataobj, dtype=float) if img.header.get_slope_inter()[0] not in (None, 1.0) else np.asarray(img.dataobj)
    if volume_index is not None:
        arr = arr[..., volume_index]
    while arr.ndim < 3:
        arr = arr[..., None]
    m = LPS @ img.affine[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    return {"array": np.transpose(arr, (2, 1, 0)), "spacing": spacing, "origin": LPS @ img.affine[:3, 3],
            "direction": (m / spacing).ravel()}


def pynrrd_reference(path, channel=None) -> dict:
    """What pynrrd reads (``space directions``/``space origin`` in LPS or RAS) as zyx/LPS."""
    data, header = nrrd.read(str(path))  # pynrrd's default index order is Fortran (x first)
    dirs = header.get("space directions")
    spatial = [i for i in range(data.ndim) if dirs is None or not np.all(np.isnan(np.asarray(dirs[i], float)))]
    if len(spatial) < data.ndim:
        other = [i for i in range(data.ndim) if i not in spatial][0]
        data = np.take(data, channel or 0, axis=other)
    m = np.eye(3) if dirs is None else np.array([dirs[i] for i in spatial], float).T
    origin = np.asarray(header.get("space origin", np.zeros(3)), float)
    if header.get("space", "").startswith("right-anterior"):
        m, origin = LPS @ m, LPS @ origin
    spacing = np.linalg.norm(m, axis=0)
    return {"array": np.transpose(data, (2, 1, 0)), "spacing": spacing, "origin": origin, "direction": (m / spacing).ravel()}


def sitk_reference(image) -> dict:
    return {"array": sitk.GetArrayFromImage(image), "spacing": image.GetSpacing(), "origin": image.GetOrigin(),
            "direction": image.GetDirection()}


def read_quietly(path, **kw) -> Volume:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DicomWarning)
        return read_volume(path, **kw)


# ------------------------------------------------------------------ NIfTI
def _ramp(shape, dtype=np.int16):
    return (np.arange(int(np.prod(shape))) % 251 - 100).reshape(shape).astype(dtype)


AFFINE = np.array([[-0.8, 0.1, 0.0, 90.0], [0.1, 0.8, 0.05, -120.0], [0.0, -0.05, 2.5, -40.0], [0, 0, 0, 1.0]])


@pytest.mark.parametrize("name", ["anatomical.nii", "example_nifti2.nii.gz", "standard.nii.gz",
                                  "reoriented_anat_moved.nii", "resampled_anat_moved.nii", "functional.nii",
                                  "example4d.nii.gz"])
def test_nibabel_shipped_files_read_like_nibabel(name):
    path = Path(NIBABEL_DATA) / name
    img = nib.load(str(path))
    index = 1 if len(img.shape) == 4 else None
    _same(read_volume(path, channel=index), nibabel_reference(path, index))


@pytest.mark.parametrize("cls,suffix", [(nib.Nifti1Image, ".nii"), (nib.Nifti1Image, ".nii.gz"),
                                        (nib.Nifti2Image, ".nii"), (nib.Nifti2Image, ".nii.gz"),
                                        (nib.Nifti1Pair, ".hdr"), (nib.Nifti2Pair, ".hdr")])
def test_nifti1_nifti2_and_pairs_give_the_same_geometry(tmp_path, cls, suffix):
    """NIfTI-2 (ITK cannot read it) and .hdr/.img pairs read like nibabel, and like NIfTI-1."""
    data = _ramp((7, 6, 5))
    path = tmp_path / f"v{suffix}"
    nib.save(cls(data, AFFINE), str(path))
    vol = read_volume(path)
    _same(vol, nibabel_reference(path))
    nib.save(nib.Nifti1Image(data, AFFINE), str(tmp_path / "one.nii"))
    _same(vol, nibabel_reference(tmp_path / "one.nii"))
    if suffix == ".hdr":
        _same(read_volume(path.with_suffix(".img")), nibabel_reference(path))


def test_nifti2_4d_picks_a_volume(tmp_path):
    path = tmp_path / "v4.nii.gz"
    nib.save(nib.Nifti2Image(_ramp((5, 4, 3, 3), np.float32), AFFINE), str(path))
    with pytest.raises(UnsupportedFormatError, match="holding 3 volumes"):
        read_volume(path)
    _same(read_volume(path, channel=2), nibabel_reference(path, 2))


def _with_forms(path, qform, qcode, sform, scode):
    img = nib.Nifti1Image(_ramp((6, 5, 4)), None)
    img.header.set_qform(qform, code=qcode)
    img.header.set_sform(sform, code=scode)
    img.header.set_zooms((0.8, 0.8, 2.5))
    nib.save(img, str(path))
    return path


OTHER = np.array([[0.0, -0.8, 0.0, 10.0], [0.8, 0.0, 0.0, 20.0], [0.0, 0.0, 2.5, 30.0], [0, 0, 0, 1.0]])
QFORM = np.diag([-0.8, 0.8, 2.5, 1.0])


@pytest.mark.parametrize("qcode,scode,expected", [(1, 0, "q"), (0, 2, "s"), (1, 1, "s"), (2, 4, "s"), (0, 0, "pixdim")])
def test_qform_sform_follow_the_nifti_rules(tmp_path, qcode, scode, expected):
    """sform when sform_code > 0, else qform when qform_code > 0, else pixdim, as nibabel does
    (the forms disagree here, so the wrong choice moves the origin by tens of mm)."""
    path = _with_forms(tmp_path / "f.nii", QFORM, qcode, OTHER, scode)
    vol = read_volume(path)
    _same(vol, nibabel_reference(path))
    want_origin = {"q": LPS @ QFORM[:3, 3], "s": LPS @ OTHER[:3, 3], "pixdim": None}[expected]
    if want_origin is not None:
        _close(vol.origin, want_origin, "origin")


def test_scl_slope_applied(tmp_path):
    img = nib.Nifti1Image(_ramp((6, 5, 4)), AFFINE)
    img.header.set_slope_inter(0.5, -1024.0)
    path = tmp_path / "scaled.nii.gz"
    nib.save(img, str(path))
    vol = read_volume(path)
    _same(vol, nibabel_reference(path))
    assert vol.array.min() < -1000  # the intercept was applied


def test_nan_voxels_are_kept_and_reported(tmp_path):
    data = _ramp((6, 5, 4), np.float32)
    data[1, 2, 3] = data[0, 0, 0] = np.nan
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, AFFINE), str(path))
    with pytest.warns(NaNVoxelsWarning, match=r"nan\.nii\.gz holds 2 NaN voxel"):
        vol = read_volume(path)
    assert int(np.isnan(vol.array).sum()) == 2 and vol.metadata["nan_voxels"] == 2
    _same(vol, nibabel_reference(path))


def test_pair_without_its_img_names_the_missing_half(tmp_path):
    nib.save(nib.Nifti1Pair(_ramp((4, 4, 4)), AFFINE), str(tmp_path / "p.hdr"))
    (tmp_path / "p.img").unlink()
    with pytest.raises(ImageReadError, match=r"p\.hdr is one half of a NIfTI/Analyze pair.*p\.img is missing"):
        read_volume(tmp_path / "p.hdr")


# ------------------------------------------------------------------ NRRD
LPS_HEADER = {"space": "left-posterior-superior", "space directions": np.diag([0.7, 0.8, 2.0]) @ np.eye(3),
              "space origin": np.array([-10.0, 5.0, 30.0])}


@pytest.mark.parametrize("encoding", ["raw", "gzip", "bzip2", "ascii"])
def test_nrrd_encodings_read_like_pynrrd(tmp_path, encoding):
    """bzip2 included: ITK cannot decode it, napari-medseg decodes it with Python's bz2."""
    path = tmp_path / f"{encoding}.nrrd"
    nrrd.write(str(path), _ramp((6, 5, 4)), dict(LPS_HEADER, encoding=encoding))
    _same(read_volume(path), pynrrd_reference(path))


@pytest.mark.parametrize("encoding", ["gzip", "raw"])
def test_nrrd_line_skip_is_not_called_corrupt(tmp_path, encoding):
    """``line skip:`` lines precede the data (NRRD spec); the payload check must skip them too."""
    plain = tmp_path / "plain.nrrd"
    nrrd.write(str(plain), _ramp((6, 5, 4)), dict(LPS_HEADER, encoding=encoding))
    raw = plain.read_bytes()
    end = raw.index(b"\n\n")
    path = tmp_path / "skip.nrrd"
    path.write_bytes(raw[: end + 1] + b"line skip: 2\n\n" + b"a comment line\nanother one\n" + raw[end + 2:])
    ref = sitk_reference(sitk.ReadImage(str(path)))
    _same(read_volume(path), ref)
    _same(read_volume(path), pynrrd_reference(plain))


@pytest.mark.parametrize("encoding", ["raw", "gzip", "bzip2"])
def test_nrrd_detached_header(tmp_path, encoding):
    path = tmp_path / "det.nhdr"
    nrrd.write(str(path), _ramp((6, 5, 4)), dict(LPS_HEADER, encoding=encoding), detached_header=True)
    assert len(list(tmp_path.iterdir())) == 2
    _same(read_volume(path), pynrrd_reference(path))


def test_nrrd_space_directions_with_none(tmp_path):
    """A list axis (``none`` in ``space directions``) is a channel axis; pick one."""
    path = tmp_path / "vec.nrrd"
    data = _ramp((3, 6, 5, 4)).astype(np.float32)
    header = {"space": "left-posterior-superior", "kinds": ["vector", "domain", "domain", "domain"],
              "space directions": np.vstack([np.full(3, np.nan), np.diag([0.7, 0.8, 2.0])]),
              "space origin": np.array([1.0, 2.0, 3.0])}
    nrrd.write(str(path), data, header)
    with pytest.raises(UnsupportedFormatError, match="3 values per voxel"):
        read_volume(path)
    _same(read_volume(path, channel=1), pynrrd_reference(path, channel=1))


def test_nrrd_truncated_bzip2_names_the_file(tmp_path):
    path = tmp_path / "cut.nrrd"
    nrrd.write(str(path), _ramp((16, 16, 16)), dict(LPS_HEADER, encoding="bzip2"))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ImageReadError, match=r"cut\.nrrd is corrupt or truncated: its bzip2 pixel data"):
        read_volume(path)


# ------------------------------------------------------------------ MetaImage
@pytest.mark.parametrize("name", ["v.mhd", "v.mha"])
def test_metaimage_reads_like_simpleitk(tmp_path, name):
    image = sitk.GetImageFromArray(_ramp((4, 5, 6)))
    image.SetSpacing((0.7, 0.8, 2.0))
    image.SetOrigin((1.0, -2.0, 3.0))
    image.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(image, str(tmp_path / name), True)
    _same(read_volume(tmp_path / name), sitk_reference(sitk.ReadImage(str(tmp_path / name))))


# ------------------------------------------------------------------ DICOM
def _pydicom_reference(path) -> dict:
    """pydicom's decoded pixels with the modality LUT (rescale slope/intercept), and the header geometry."""
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(str(path))
    arr = apply_modality_lut(ds.pixel_array, ds).astype(float)
    ori = np.array([float(v) for v in ds.ImageOrientationPatient])
    normal = np.cross(ori[:3], ori[3:])
    ps = [float(v) for v in ds.PixelSpacing]
    return {"array": arr[None], "spacing": ps[::-1], "origin": [float(v) for v in ds.ImagePositionPatient],
            "direction": np.column_stack([ori[:3], ori[3:], normal]).ravel()}


TRANSFER_SYNTAX_FILES = ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm",
                         "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                         "CT_small.dcm", "693_J2KI.dcm"]


@pytest.mark.parametrize("name", TRANSFER_SYNTAX_FILES)
def test_dicom_transfer_syntaxes_read_like_pydicom(tmp_path, name):
    """Explicit/implicit/big endian, RLE, JPEG 2000, JPEG-LS lossless; CT with rescale slope/intercept."""
    src = get_testdata_file(name)
    if src is None:
        pytest.skip(f"pydicom's wheel does not ship {name}")
    try:
        ref = _pydicom_reference(src)
    except (RuntimeError, NotImplementedError) as exc:  # no decoder installed for this syntax
        pytest.skip(f"pydicom cannot decode {name} here ({exc}); install the [test] extra's decoders")
    shutil.copy(src, tmp_path / name)  # alone in its folder: pydicom's data folder mixes series
    vol = read_quietly(tmp_path / name)
    assert vol.shape == ref["array"].shape
    _close(vol.array, ref["array"], f"{name} voxels")
    _close(vol.spacing[:2], ref["spacing"], "pixel spacing")
    _close(vol.origin, ref["origin"], "origin")
    _close(vol.direction, ref["direction"], "direction")


def _series(folder: Path, n=20, *, blank_uids=False, positions=None, tilt=0.0, orientation=None) -> list:
    """A series made from pydicom's CT_small.dcm (new pixels per slice), as a scanner would write it."""
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    series_uid = generate_uid()
    orientation = orientation or [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    row, col = np.array(orientation[:3]), np.array(orientation[3:])
    normal = np.cross(row, col)
    positions = list(positions if positions is not None else np.arange(n) * 2.5)
    files = []
    for i, z in enumerate(positions):
        ds = base.copy()
        pixels = (np.arange(128 * 128).reshape(128, 128) % 97 + 10 * i).astype(np.int16)
        ds.PixelData = pixels.tobytes()
        pos = np.array([-50.0, -60.0, 0.0]) + z * normal + np.array([0.0, tilt * z, 0.0])
        ds.ImagePositionPatient = [f"{v:.4f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
        ds.InstanceNumber = i + 1
        if blank_uids:
            ds.SeriesInstanceUID = ""
            ds.SOPInstanceUID = ""
            ds.SOPClassUID = ""
            ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()  # the file meta stays valid
        else:
            ds.SeriesInstanceUID = series_uid
            ds.SOPInstanceUID = generate_uid()
        path = folder / f"IM{(i * 7919) % 1000:04d}"  # file names not in slice order
        ds.save_as(str(path))
        files.append(path)
    return files


def _sitk_series_reference(files) -> dict:
    """SimpleITK/GDCM reading the files sorted by position along the normal."""
    reader = sitk.ImageSeriesReader()
    ordered = sorted(files, key=lambda p: float(pydicom.dcmread(str(p), stop_before_pixels=True).ImagePositionPatient[2]))
    reader.SetFileNames([str(p) for p in ordered])
    return sitk_reference(reader.Execute())


def test_series_with_empty_uids_is_one_volume(tmp_path):
    """Anonymisers blank the UIDs: the 20 slices are still one volume (folder and single file)."""
    files = _series(tmp_path / "anon", blank_uids=True)
    ref = _sitk_series_reference(files)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DicomWarning)  # no "20 series" warning
        vol = read_volume(tmp_path / "anon")
    _same(vol, ref)
    assert vol.shape[0] == 20
    _same(read_quietly(files[7]), ref)  # one file of the series: no KeyError, the whole series


def test_empty_uids_two_geometries_are_two_series(tmp_path):
    """Without UIDs, a localizer with another orientation is still told apart (by geometry)."""
    _series(tmp_path / "mix", blank_uids=True)
    _series(tmp_path / "mix" / "loc", n=3, blank_uids=True, orientation=[1.0, 0.0, 0.0, 0.0, 0.0, -1.0])
    with pytest.warns(DicomWarning, match="2 image series"):
        vol = read_volume(tmp_path / "mix")
    assert vol.shape[0] == 20


@pytest.mark.parametrize("kind,positions,message", [
    ("missing", [0, 2.5, 5, 10, 12.5, 15], "1 missing slice"),
    ("irregular", [0, 2.5, 5, 6.0, 8.5, 11.0], "irregular slice spacing"),
])
def test_irregular_and_missing_slices_warn(tmp_path, kind, positions, message):
    files = _series(tmp_path / kind, positions=positions)
    with pytest.warns(DicomWarning, match=message):
        vol = read_volume(tmp_path / kind)
    assert vol.shape[0] == len(positions)
    _close(vol.array, _sitk_series_reference(files)["array"], "voxels")


def test_gantry_tilt_warns(tmp_path):
    _series(tmp_path / "tilt", n=8, tilt=0.3)
    with pytest.warns(DicomWarning, match="tilted"):
        vol = read_volume(tmp_path / "tilt")
    assert vol.shape[0] == 8


def test_oblique_series_reads_like_simpleitk(tmp_path):
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    files = _series(tmp_path / "obl", n=6, orientation=[c, s, 0.0, -s, c, 0.0])
    vol = read_quietly(tmp_path / "obl")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "obl")))
    _same(vol, sitk_reference(reader.Execute()))
    assert len(files) == vol.shape[0]


def _series_reference(files) -> dict:
    """pydicom's decoded pixels x rescale for each file, stacked along the slice normal (z here)."""
    from pydicom.pixels import apply_modality_lut

    dss = sorted((pydicom.dcmread(str(p)) for p in files), key=lambda d: float(d.ImagePositionPatient[2]))
    return {"array": np.stack([apply_modality_lut(d.pixel_array, d).astype(float) for d in dss]),
            "spacing": [float(v) for v in dss[0].PixelSpacing][::-1]
            + [float(dss[1].ImagePositionPatient[2]) - float(dss[0].ImagePositionPatient[2])],
            "origin": [float(v) for v in dss[0].ImagePositionPatient], "direction": np.eye(3).ravel()}


def _add_geometry(ds, z=0.0) -> None:
    """Patient geometry for a shipped file that has none (secondary capture / NM); the
    encoded PixelData is left as it is."""
    from pydicom.uid import generate_uid

    ds.ImagePositionPatient = [-50.0, -60.0, z]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.7, 0.8]
    ds.SliceThickness = 2.0
    ds.FrameOfReferenceUID = generate_uid()
    ds.StudyInstanceUID = ds.get("StudyInstanceUID") or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.get("SOPInstanceUID") or generate_uid()


@pytest.mark.parametrize("name,lossy", [("JPGExtended.dcm", True), ("image_dfl.dcm", False)])
def test_shipped_jpeg_extended_and_deflate_read_like_pydicom(tmp_path, name, lossy):
    """pydicom's 12-bit JPEG Extended (1.2.840.10008.1.2.4.51) and Deflated Explicit VR LE
    (...1.2.1.99) files, given patient geometry (their PixelData bytes untouched)."""
    src = get_testdata_file(name)
    if src is None:
        pytest.skip(f"pydicom's wheel does not ship {name}")
    ds = pydicom.dcmread(src)
    encoded = ds.PixelData
    _add_geometry(ds)
    path = tmp_path / name
    ds.save_as(str(path))
    assert pydicom.dcmread(str(path)).PixelData == encoded
    try:
        ref = _pydicom_reference(path)
    except (RuntimeError, NotImplementedError) as exc:
        pytest.skip(f"pydicom cannot decode {name} here ({exc}); install the [test] extra's decoders")
    vol = read_quietly(path)
    assert vol.shape == ref["array"].shape == (1, ds.Rows, ds.Columns)
    if lossy:
        # Lossy JPEG: the standard allows decoders' IDCTs to differ by one stored unit
        # (GDCM's libjpeg vs pylibjpeg's libjpeg); anything more is a wrong decode.
        diff = np.abs(vol.array.astype(float) - ref["array"])
        assert diff.max() <= 1.0 and diff.mean() < 0.05, (diff.max(), diff.mean())
        assert ref["array"].max() > 255  # more than 8 bits decoded (12-bit precision)
    else:
        _close(vol.array, ref["array"], f"{name} voxels")
    _close(vol.spacing, [0.8, 0.7, 2.0], "spacing")
    _close(vol.origin, ref["origin"], "origin")
    _close(vol.direction, ref["direction"], "direction")


def _recode(files, transform) -> list:
    """Rewrite each file of a series with ``transform(ds, index)`` (pixels, transfer syntax)."""
    for i, f in enumerate(files):
        ds = pydicom.dcmread(str(f))
        transform(ds, i)
        ds.save_as(str(f))
    return files


def test_jpeg_baseline_series_reads_like_pydicom(tmp_path):
    """A 3-slice 8-bit CT series encoded as JPEG Baseline (1.2.840.10008.1.2.4.50) by Pillow,
    with a rescale slope/intercept."""
    PIL = pytest.importorskip("PIL.Image")
    from io import BytesIO

    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    def to_jpeg(ds, i):
        yy, xx = np.mgrid[:128, :128]
        pixels = ((xx * 2 + yy + 40 * i) % 256).astype(np.uint8)
        buf = BytesIO()
        PIL.fromarray(pixels).save(buf, format="JPEG", quality=90)
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.RescaleSlope, ds.RescaleIntercept = "4", "-1024"
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].VR = "OB"

    files = _recode(_series(tmp_path / "jpeg", n=3), to_jpeg)
    try:
        ref = _series_reference(files)
    except (RuntimeError, NotImplementedError) as exc:
        pytest.skip(f"pydicom cannot decode JPEG baseline here ({exc}); install the [test] extra's decoders")
    vol = read_quietly(tmp_path / "jpeg")
    assert vol.shape == ref["array"].shape == (3, 128, 128)
    diff = np.abs(vol.array.astype(float) - ref["array"])
    assert diff.max() <= 4.0 and diff.mean() < 0.2, (diff.max(), diff.mean())  # <= 1 stored unit x slope 4
    assert vol.array.min() < -900  # the intercept was applied
    for key in ("spacing", "origin", "direction"):
        _close(getattr(vol, key), ref[key], key)


def test_deflated_ct_series_reads_like_pydicom(tmp_path):
    """The CT series written with Deflated Explicit VR Little Endian (the whole data set zlib-deflated)."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    def deflate(ds, i):
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian

    files = _recode(_series(tmp_path / "dfl", n=3), deflate)
    assert pydicom.dcmread(str(files[0])).file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    assert b"ImagePositionPatient" not in files[0].read_bytes()  # really deflated (no plain tags)
    ref = _series_reference(files)
    vol = read_quietly(tmp_path / "dfl")
    _same(vol, ref)
    _same(vol, _sitk_series_reference(files))


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("sign_extended", [True, False])
def test_12_bit_series_with_rescale_reads_like_pydicom(tmp_path, signed, sign_extended):
    """BitsStored 12 / HighBit 11 in 16-bit words, unsigned and signed, with slope 0.5 and
    intercept -1024. Signed values are stored either sign-extended or with the 4 unused high
    bits zero (both occur); readers must take the sign from bit 11."""

    def twelve_bits(ds, i):
        values = (np.arange(128 * 128).reshape(128, 128) * 37 + 500 * i) % 4096 - (2048 if signed else 0)
        stored = values.astype(np.int16 if signed else np.uint16)
        if not sign_extended:
            stored = stored.view(np.uint16) & 0x0FFF
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, int(signed)
        ds.RescaleSlope, ds.RescaleIntercept = "0.5", "-1024"
        ds.PixelData = stored.tobytes()

    files = _recode(_series(tmp_path / "b12", n=3), twelve_bits)
    ref = _series_reference(files)
    vol = read_quietly(tmp_path / "b12")
    _same(vol, ref)
    lo, hi = (-2048.0, -0.5) if signed else (-1024.0, 1023.5)
    assert vol.array.min() == lo and vol.array.max() == hi  # full 12-bit range, sign from bit 11


def test_nibabel_12_bit_decimal_rescale_reads_like_pydicom(tmp_path):
    """nibabel's ``decimal_rescale.dcm``: a real 12-bit oblique MR slice with a decimal rescale
    and no SOPClassUID."""
    src = Path(NIBABEL_DATA).parent.parent / "nicom" / "tests" / "data" / "decimal_rescale.dcm"
    if not src.is_file():
        pytest.skip("nibabel's wheel does not ship nicom/tests/data/decimal_rescale.dcm")
    shutil.copy(src, tmp_path / "x.dcm")
    ref = _pydicom_reference(tmp_path / "x.dcm")
    assert pydicom.dcmread(str(src)).BitsStored == 12
    vol = read_quietly(tmp_path / "x.dcm")
    assert vol.shape == ref["array"].shape
    _close(vol.array, ref["array"], "voxels")
    _close(vol.spacing[:2], ref["spacing"], "pixel spacing")
    _close(vol.origin, ref["origin"], "origin")
    _close(vol.direction, ref["direction"], "direction")


# ------------------------------------------------------------------ enhanced multi-frame
def _functional_groups_reference(path) -> dict:
    """Geometry from the per-frame (else shared) functional groups, pixels from pydicom with
    each frame's PixelValueTransformation, frames sorted along the slice normal."""
    ds = pydicom.dcmread(str(path))
    per_frame, shared = ds.PerFrameFunctionalGroupsSequence, ds.SharedFunctionalGroupsSequence[0]

    def group(i, name):
        return getattr(per_frame[i], name)[0] if name in per_frame[i] else getattr(shared, name)[0]

    n = len(per_frame)
    pos = np.array([[float(v) for v in group(i, "PlanePositionSequence").ImagePositionPatient] for i in range(n)])
    ori = np.array([float(v) for v in group(0, "PlaneOrientationSequence").ImageOrientationPatient])
    normal = np.cross(ori[:3], ori[3:])
    along = pos @ normal
    order = np.argsort(along)
    frames = ds.pixel_array.astype(float)
    rescale = [group(i, "PixelValueTransformationSequence") for i in range(n)]
    arr = np.stack([frames[i] * float(rescale[i].RescaleSlope) + float(rescale[i].RescaleIntercept) for i in order])
    ps = [float(v) for v in group(0, "PixelMeasuresSequence").PixelSpacing]
    return {"array": arr, "spacing": [ps[1], ps[0], float(np.median(np.diff(along[order])))],
            "origin": pos[order[0]], "direction": np.column_stack([ori[:3], ori[3:], normal]).ravel()}


def _enhanced(folder: Path, *, modality="CT", orientation=None, frame_order=None, rescales=None) -> Path:
    """The 6-slice series as one enhanced CT/MR object (highdicom's legacy converter), its
    frames then stored in ``frame_order`` (scanners write acquisition order, descending or
    interleaved), optionally with a different rescale per frame."""
    from highdicom.legacy import LegacyConvertedEnhancedCTImage, LegacyConvertedEnhancedMRImage
    from pydicom.uid import generate_uid

    files = _series(folder / "classic", n=6, orientation=orientation)
    legacy = [pydicom.dcmread(str(f)) for f in files]
    if modality == "MR":
        for ds in legacy:
            ds.Modality, ds.SOPClassUID = "MR", "1.2.840.10008.5.1.4.1.1.4"
    cls = LegacyConvertedEnhancedMRImage if modality == "MR" else LegacyConvertedEnhancedCTImage
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # highdicom: no window in the source, person-name style
        enhanced = cls(legacy_datasets=legacy, series_instance_uid=generate_uid(), series_number=9,
                       sop_instance_uid=generate_uid(), instance_number=1)
    path = folder / "multi" / "enhanced.dcm"
    path.parent.mkdir()
    enhanced.save_as(str(path))
    ds = pydicom.dcmread(str(path))
    order = list(frame_order or range(len(files)))
    frames = ds.pixel_array[order]
    groups = [ds.PerFrameFunctionalGroupsSequence[i] for i in order]
    if rescales is not None:
        from pydicom.dataset import Dataset

        for item, (slope, intercept) in zip(groups, rescales):
            t = Dataset()
            t.RescaleSlope, t.RescaleIntercept, t.RescaleType = str(slope), str(intercept), "HU"
            item.PixelValueTransformationSequence = [t]
    ds.PerFrameFunctionalGroupsSequence = groups
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    ds.save_as(str(path))
    return path


@pytest.mark.parametrize("modality,orientation,frame_order", [
    ("CT", None, None),                                  # highdicom's order: descending along the normal
    ("CT", None, [5, 4, 3, 2, 1, 0]),                    # ascending
    ("CT", None, [2, 0, 5, 1, 4, 3]),                    # interleaved acquisition order
    ("MR", None, [2, 0, 5, 1, 4, 3]),
    ("MR", "oblique", [3, 1, 4, 0, 5, 2]),
])
def test_enhanced_multiframe_reads_like_its_functional_groups(tmp_path, modality, orientation, frame_order):
    """Enhanced CT/MR: geometry from PlanePosition/PlaneOrientation/PixelMeasures per frame,
    frames in any stored order (GDCM alone keeps the file order and spaces interleaved
    frames 1 mm apart with scrambled slices)."""
    pytest.importorskip("highdicom")
    if orientation == "oblique":
        c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
        orientation = [c, s, 0.0, -s, c, 0.0]
    path = _enhanced(tmp_path, modality=modality, orientation=orientation, frame_order=frame_order)
    ref = _functional_groups_reference(path)
    for target in (path, path.parent):
        vol = read_quietly(target)
        _same(vol, ref)
        assert vol.metadata["dicom"]["multiframe"] is True and vol.modality == modality
    _same(vol, _sitk_series_reference(sorted((tmp_path / "classic").iterdir())))  # = the classic series
    assert vol.metadata["dicom"]["slice_positions_mm"] == sorted(vol.metadata["dicom"]["slice_positions_mm"])


def test_enhanced_multiframe_per_frame_rescale(tmp_path):
    """A different RescaleSlope/Intercept per frame is applied frame by frame."""
    pytest.importorskip("highdicom")
    rescales = [(1, -1024), (2, -1024), (0.5, 0), (1, 0), (3, -2000), (1, 10)]
    path = _enhanced(tmp_path, frame_order=[2, 0, 5, 1, 4, 3], rescales=rescales)
    ref = _functional_groups_reference(path)
    _same(read_quietly(path), ref)


def test_enhanced_multiframe_with_two_stacks_is_refused(tmp_path):
    """Two frames at one position (e.g. two echoes in one object) are not one volume."""
    pytest.importorskip("highdicom")
    path = _enhanced(tmp_path)
    ds = pydicom.dcmread(str(path))
    ds.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence[0].ImagePositionPatient = \
        ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient
    ds.save_as(str(path))
    with pytest.raises(ImageReadError, match=r"enhanced\.dcm.*several slices at the same position"):
        read_quietly(path)


def test_siemens_mosaic_is_refused_by_name(tmp_path):
    """nibabel's Siemens DWI mosaic: one file tiles many slices; never shown as one image."""
    src = Path(NIBABEL_DATA).parent.parent / "nicom" / "tests" / "data" / "siemens_dwi_1000.dcm.gz"
    if not src.is_file():
        pytest.skip("nibabel's wheel does not ship nicom/tests/data/siemens_dwi_1000.dcm.gz")
    path = tmp_path / "dwi.dcm"
    path.write_bytes(gzip.decompress(src.read_bytes()))
    for target in (path, tmp_path):
        with pytest.raises(UnsupportedFormatError, match=r"dwi\.dcm is a Siemens mosaic image.*dcm2niix"):
            read_volume(target)


# ------------------------------------------------------------------ DICOM-SEG
def _labels_on(folder: Path):
    image = read_quietly(folder)
    labels = np.zeros(image.shape, np.uint8)
    labels[2:6, 30:60, 40:80] = 1
    labels[4:9, 70:100, 20:50] = 3
    return image, image.with_array(labels)


def test_labelmap_seg_reads_like_highdicom(tmp_path):
    """LABELMAP SEG (SOP class ...66.7, written by highdicom): read like a binary SEG."""
    hd = pytest.importorskip("highdicom")
    from napari_medseg.io.dicom_seg import write_dicom_seg
    from napari_medseg.io.label_table import LabelTable

    _series(tmp_path / "ct", n=10)
    image, labels = _labels_on(tmp_path / "ct")
    table = LabelTable({1: ("liver", (0.8, 0.3, 0.2, 1.0)), 3: ("spleen", (0.1, 0.9, 0.1, 1.0))})
    out = write_dicom_seg(labels, table, image, tmp_path / "lm.dcm", segmentation_type="labelmap")
    ds = pydicom.dcmread(str(out))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.7" and ds.SegmentationType == "LABELMAP"
    seg = hd.seg.segread(str(out))
    uids = image.metadata["dicom"]["SOPInstanceUIDs"]
    present = [u for z, u in enumerate(uids) if labels.array[z].any()]
    ref_numbers = seg.get_pixels_by_source_instance(present, combine_segments=True, relabel=False)
    got, got_table = read_labels(out, reference=image)
    assert got_table.name_of(1) == "liver" and got_table.name_of(3) == "spleen"
    np.testing.assert_array_equal(got.array, labels.array)
    rows = [z for z in range(labels.shape[0]) if labels.array[z].any()]
    np.testing.assert_array_equal(ref_numbers > 0, got.array[rows] > 0)  # highdicom's own reading
    got_own, _ = read_labels(out)  # on the SEG's own frame grid
    assert int((got_own.array == 3).sum()) == int((labels.array == 3).sum())
    binary = write_dicom_seg(labels, table, image, tmp_path / "bin.dcm")
    np.testing.assert_array_equal(read_labels(binary, reference=image)[0].array, got.array)


def test_seg_out_of_gamut_colour_and_missing_positions(tmp_path):
    from napari_medseg.io.dicom_seg import write_dicom_seg

    _series(tmp_path / "ct", n=10)
    image, labels = _labels_on(tmp_path / "ct")
    out = write_dicom_seg(labels, None, image, tmp_path / "seg.dcm")
    ds = pydicom.dcmread(str(out))
    ds.SegmentSequence[0].RecommendedDisplayCIELabValue = [65535, 0, 65535]  # far outside sRGB
    ds.save_as(str(tmp_path / "gamut.dcm"))
    _, table = read_labels(tmp_path / "gamut.dcm", reference=image)
    assert all(0.0 <= c <= 1.0 for c in table.color_of(1)[:3])
    del ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence
    shared = ds.SharedFunctionalGroupsSequence[0]
    if "PlanePositionSequence" in shared:
        del shared.PlanePositionSequence
    ds.save_as(str(tmp_path / "nopos.dcm"))
    with pytest.raises(ImageReadError, match=r"nopos\.dcm: frame 1 of the SEG has no position"):
        read_labels(tmp_path / "nopos.dcm")
