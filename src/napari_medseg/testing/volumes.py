"""Builders for small test volumes and synthetic DICOM series, and folder snapshots (byte digests)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..io import Volume


def rotation(axis: Sequence[float], angle: float) -> np.ndarray:
    """Rotation matrix about ``axis`` by ``angle`` radians (Rodrigues)."""
    a = np.asarray(axis, dtype=float)
    a /= np.linalg.norm(a)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def oblique_volume(dtype=np.int16, shape=(5, 6, 7), seed=0, flip=True) -> Volume:
    """Anisotropic, non-axis-aligned (rotated and, with ``flip``, LPS-flipped) volume."""
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        arr = rng.normal(0, 300, size=shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        arr = rng.integers(max(info.min, -2000), min(info.max, 3000), size=shape, endpoint=True).astype(dtype)
    d = rotation((0.3, -0.5, 0.8), 0.4)
    if flip:
        d = d @ np.diag([-1.0, -1.0, 1.0])
    return Volume(arr, spacing=(0.7, 0.93, 2.5), origin=(-120.25, 33.5, 407.125),
                  direction=tuple(d.ravel()), modality="CT")


def label_volume(shape=(6, 8, 9), ids=(1, 2, 5), seed=1) -> Volume:
    rng = np.random.default_rng(seed)
    arr = rng.choice(np.array((0,) + tuple(ids)), size=shape).astype(np.int32)
    d = rotation((1, 1, 0), 0.25)
    return Volume(arr, spacing=(0.8, 0.8, 3.0), origin=(10.0, -20.0, 30.5), direction=tuple(d.ravel()))


def snapshot(folder: Path) -> dict:
    """{relative path: sha256} of every file under ``folder`` (to prove nothing changed)."""
    out = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            p = Path(root) / name
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ---------------------------------------------------------------- DICOM
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def write_dicom_slice(path: Path, pixels: np.ndarray, *, position, orientation=(1, 0, 0, 0, 1, 0),
                      pixel_spacing=(0.5, 0.6), series_uid: str, study_uid: str = "1.2.826.0.1.3680043.8.498.1",
                      frame_uid: str = "1.2.826.0.1.3680043.8.498.2", instance: int = 1, slope: float = 1.0,
                      intercept: float = -1024.0, modality: str = "CT", sop_class: str = CT_IMAGE_STORAGE,
                      series_description: str = "", samples_per_pixel: int = 1) -> str:
    """Write one uncompressed DICOM image slice with pydicom; returns its SOPInstanceUID."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.Modality = modality
    ds.SeriesDescription = series_description
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance
    ds.PatientID = "TEST"
    ds.PatientName = "Test^Phantom"
    ds.ImagePositionPatient = [f"{v:.6g}" for v in position]
    ds.ImageOrientationPatient = [f"{v:.8g}" for v in orientation]
    ds.PixelSpacing = [f"{v:g}" for v in pixel_spacing]
    ds.SliceThickness = "1"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = samples_per_pixel
    ds.PhotometricInterpretation = "MONOCHROME2" if samples_per_pixel == 1 else "RGB"
    if samples_per_pixel == 1:
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        ds.PixelData = np.ascontiguousarray(pixels.astype("<i2")).tobytes()
    else:
        ds.BitsAllocated = 8
        ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.PlanarConfiguration = 0
        ds.PixelData = np.ascontiguousarray(pixels.astype(np.uint8)).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return sop_uid


def write_dicom_series(folder: Path, n: int = 4, *, shape=(6, 5), z0: float = 10.0, dz: float = 2.0,
                       positions: Optional[Sequence[float]] = None, orientation=(1, 0, 0, 0, 1, 0),
                       series_uid: Optional[str] = None, prefix: str = "s", seed: int = 0,
                       shuffle: bool = True, **kwargs) -> dict:
    """Write a CT series of ``n`` slices; returns {"uid", "stored" (z, y, x int16), "positions", "files"}."""
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    series_uid = series_uid or generate_uid()
    positions = list(positions) if positions is not None else [z0 + i * dz for i in range(n)]
    row = np.asarray(orientation[:3], float)
    col = np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    stored = rng.integers(0, 2000, size=(len(positions),) + tuple(shape)).astype(np.int16)
    order = list(range(len(positions)))
    if shuffle:  # file names deliberately not in slice order
        order = list(rng.permutation(len(positions)))
    files = []
    for k, i in enumerate(order):
        pos = np.array([-50.0, -40.0, 0.0]) + positions[i] * normal
        path = folder / f"{prefix}{k:03d}.dcm"
        write_dicom_slice(path, stored[i], position=pos, orientation=orientation,
                          series_uid=series_uid, instance=i + 1, **kwargs)
        files.append(path)
    return {"uid": series_uid, "stored": stored, "positions": positions, "files": files}


MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def write_pydicom_mr_series(folder: Path, n: int = 5, *, dz: float = 0.8) -> dict:
    """A real scanner's MR header as an ``n``-slice series: pydicom's ``MR_small.dcm`` test file
    (64 x 64, Modality MR, MR Image Storage) copied with new UIDs, instance numbers and
    positions ``dz`` mm apart along the slice normal. Returns {"uid", "files", "pixels"}."""
    import copy

    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    src = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    origin = np.asarray([float(v) for v in src.ImagePositionPatient])
    series_uid = generate_uid()
    files = []
    for i in range(n):
        ds = copy.deepcopy(src)
        uid = generate_uid()
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = i + 1
        ds.SliceThickness = f"{dz:g}"
        ds.ImagePositionPatient = [f"{v:.6g}" for v in origin + np.array([0.0, 0.0, i * dz])]
        path = folder / f"mr{i:03d}.dcm"
        ds.save_as(str(path))
        files.append(path)
    return {"uid": series_uid, "files": files, "pixels": src.pixel_array}
