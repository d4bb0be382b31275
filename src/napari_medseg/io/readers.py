"""Reading volumes and label maps: NIfTI, NRRD, MetaImage and DICOM series.

Every failure on a file we are asked to read is an :class:`ImageReadError` (or its
subclass :class:`UnsupportedFormatError`) whose message names the file and says what
is wrong; SimpleITK's multi-line C++ exceptions never reach the user.

Geometry comes from the file header through SimpleITK (NIfTI qform/sform, NRRD space
directions, MetaImage TransformMatrix, DICOM positions, all as LPS) into
:class:`~napari_medseg.io.volume.Volume`.

Modality is never guessed from intensities: it is ``"CT"``/``"MR"``/... only when the
file says so (DICOM ``Modality``, a MetaImage/NRRD ``Modality`` or ``medseg_modality``
key, a BIDS-style JSON sidecar with ``"Modality"``), else ``None``.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import struct
import zlib
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..errors import ImageReadError, InvalidInputError, UnsupportedFormatError
from .label_table import LabelTable, sidecar_path
from .volume import Volume

PathLike = Union[str, os.PathLike]

#: Extension -> format name, longest first so ".nii.gz" beats ".gz".
EXTENSIONS = {
    ".seg.nrrd": "nrrd",
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".mha": "metaimage",
    ".mhd": "metaimage",
    ".dcm": "dicom",
    ".ima": "dicom",
    ".dicom": "dicom",
}
FORMAT_NAMES = {"nifti": "NIfTI", "nrrd": "NRRD", "metaimage": "MetaImage", "dicom": "DICOM"}
SUPPORTED_TEXT = "NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) or a DICOM series"


class MultiChannelError(UnsupportedFormatError):
    """The file holds several volumes/channels and the caller did not pick one."""


def detect_format(path: PathLike) -> Optional[str]:
    """Format of ``path`` from its name (``"nifti"``, ``"nrrd"``, ``"metaimage"``,
    ``"dicom"``), DICOM also by content for files without extension; ``None`` otherwise.
    A folder is ``"dicom"``."""
    from .dicom import is_dicom_file

    p = Path(path)
    if p.is_dir():
        return "dicom"
    name = p.name.lower()
    for suffix, fmt in EXTENSIONS.items():
        if name.endswith(suffix):
            return fmt
    if p.is_file() and is_dicom_file(p):
        return "dicom"
    return None


# ------------------------------------------------------------------ messages
_ITK_ERROR = re.compile(r"ITK ERROR:\s*[^:]*?:\s*(.*)", re.S)


def _itk_message(exc: BaseException) -> str:
    """The useful line of a SimpleITK/ITK exception (no C++ file names)."""
    text = str(exc).strip()
    m = _ITK_ERROR.search(text)
    if m:
        text = m.group(1)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not re.match(r"^(/|[A-Za-z]:\\).*\.(h|hxx|cxx|cpp):\d+", ln)]
    return lines[0] if lines else "unknown error"


def _looks_textual(head: bytes) -> bool:
    if not head:
        return False
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    return printable / len(head) > 0.95


def _precheck(path: Path, fmt: str) -> None:
    """Cheap header checks that turn ITK's vague failures into precise messages."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise ImageReadError(f"cannot open {path}: {exc.strerror or exc}") from None
    if size == 0:
        raise ImageReadError(f"{path} is an empty file (0 bytes)")
    name = FORMAT_NAMES[fmt]
    if fmt == "nifti":
        data = head
        if head[:2] == b"\x1f\x8b":
            try:
                with gzip.open(path, "rb") as gz:
                    data = gz.read(544)
            except (OSError, EOFError, zlib.error) as exc:
                raise ImageReadError(f"{path} is not a valid {name} file: its gzip data is corrupt or truncated ({exc})") from None
        elif path.name.lower().endswith(".gz"):
            if _looks_textual(head):
                raise ImageReadError(f"{path} is a text file, not a {name} image (despite its .nii.gz name)")
        if len(data) < 348:
            raise ImageReadError(f"{path} is not a valid {name} file: truncated header ({len(data)} of 348 bytes)")
        sizes = {struct.unpack("<i", data[:4])[0], struct.unpack(">i", data[:4])[0]}
        if not sizes & {348, 540}:
            what = "a text file" if _looks_textual(data[:512]) else "not a NIfTI-1/2 header"
            raise ImageReadError(f"{path} is not a valid {name} file: the first bytes are {what}")
    elif fmt == "nrrd":
        if not head.startswith(b"NRRD000"):
            what = "it is a text file without the NRRD magic line" if _looks_textual(head[:512]) else "the NRRD magic line 'NRRD000x' is missing"
            raise ImageReadError(f"{path} is not a valid {name} file: {what}")
    elif fmt == "metaimage":
        text = head.decode("latin-1")
        if not re.search(r"^\s*(NDims|ObjectType)\s*=", text, re.M):
            raise ImageReadError(f"{path} is not a valid {name} file: no 'NDims =' / 'ObjectType =' header lines")


def _read_image_file(path: Path, fmt: str, *, read_pixels: bool = True) -> tuple:
    """Read a NIfTI/NRRD/MetaImage file with SimpleITK. Returns (image or reader, header dict)."""
    import SimpleITK as sitk

    _precheck(path, fmt)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ImageReadError(f"{path} is not a readable {FORMAT_NAMES[fmt]} file: {_itk_message(exc)}") from None
    header = {}
    for key in reader.GetMetaDataKeys():
        try:
            value = reader.GetMetaData(key)
        except RuntimeError:
            continue
        if len(value) <= 1000:
            header[key] = value
    if not read_pixels:
        return reader, header
    if reader.GetPixelID() in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
        raise UnsupportedFormatError(f"{path} holds complex-valued voxels; napari-medseg reads real-valued images only")
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise ImageReadError(
            f"{path} is damaged: its pixel data cannot be read ({_itk_message(exc)}); "
            "the file is probably truncated or corrupt"
        ) from None
    except MemoryError:
        raise ImageReadError(f"{path}: not enough memory to load its pixel data") from None
    return image, header


# ---------------------------------------------------------------- conversion
_MET_MODALITIES = {"MET_MOD_CT": "CT", "MET_MOD_MR": "MR", "MET_MOD_NM": "NM", "MET_MOD_US": "US",
                   "MET_MOD_OTHER": None, "MET_MOD_UNKNOWN": None}


def _modality_hint(path: Path, header: dict) -> Optional[str]:
    """Modality stated by the file or its JSON sidecar, never inferred from values."""
    for key in ("medseg_modality", "Modality", "modality"):
        value = header.get(key)
        if value:
            value = value.strip()
            if value in _MET_MODALITIES:
                return _MET_MODALITIES[value]
            if value.upper() in ("CT", "MR", "MRI", "PT", "PET", "US", "NM", "CBCT", "DWMRI"):
                return {"MRI": "MR", "PET": "PT", "DWMRI": "MR", "CBCT": "CT"}.get(value.upper(), value.upper())
    side = sidecar_path(path)
    if side.is_file() and side.stat().st_size < 1_000_000:
        try:
            doc = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        value = doc.get("Modality") if isinstance(doc, dict) else None
        if isinstance(value, str) and value.strip():
            return value.strip().upper()
    return None


def _embed_2d(image: Any) -> Any:
    """A 2D SimpleITK image as a one-slice 3D image (spacing z 1 mm, identity z axis)."""
    import SimpleITK as sitk

    arr = sitk.GetArrayViewFromImage(image)
    out = sitk.GetImageFromArray(np.ascontiguousarray(arr)[None], isVector=image.GetNumberOfComponentsPerPixel() > 1)
    sx, sy = image.GetSpacing()
    ox, oy = image.GetOrigin()
    d = image.GetDirection()
    out.SetSpacing((sx, sy, 1.0))
    out.SetOrigin((ox, oy, 0.0))
    out.SetDirection((d[0], d[1], 0.0, d[2], d[3], 0.0, 0.0, 0.0, 1.0))
    return out


def _select_channel(image: Any, path: Path, channel: Optional[int]) -> tuple:
    """Reduce 4D / multi-component images to one 3D scalar image. Returns (image, note)."""
    import SimpleITK as sitk

    dim = image.GetDimension()
    ncomp = image.GetNumberOfComponentsPerPixel()
    note = None
    if dim > 4 or dim < 2:
        raise UnsupportedFormatError(f"{path} is a {dim}D image; napari-medseg reads 2D, 3D and 4D images")
    if dim == 4 and ncomp > 1:
        raise UnsupportedFormatError(
            f"{path} is a 4D image with {ncomp} components per voxel; split it into 3D files first")
    if dim == 4:
        size = list(image.GetSize())
        n = size[3]
        if n == 1 and channel in (None, 0):
            image = sitk.Extract(image, size[:3] + [0], [0, 0, 0, 0])
        else:
            if channel is None:
                raise MultiChannelError(
                    f"{path} is a 4D image holding {n} volumes ({size[0]}x{size[1]}x{size[2]} voxels each, "
                    f"e.g. time points or MR channels); pass channel=0..{n - 1} to pick one "
                    "(medseg: --channel N), or split the file"
                )
            if not 0 <= int(channel) < n:
                raise InvalidInputError(f"channel {channel} is out of range for {path}: it holds {n} volumes (0..{n - 1})")
            image = sitk.Extract(image, size[:3] + [0], [0, 0, 0, int(channel)])
            note = f"volume {int(channel)} of {n}"
    elif ncomp > 1:
        rgb = ncomp in (3, 4) and image.GetPixelID() in (sitk.sitkVectorUInt8,)
        kind = ("an RGB" if ncomp == 3 else "an RGBA") + " colour image" if rgb else f"a {ncomp}-channel image"
        if channel is None:
            raise MultiChannelError(
                f"{path} is {kind} ({ncomp} values per voxel); CT/MRI tools need one value per voxel: "
                f"pass channel=0..{ncomp - 1} to pick one (medseg: --channel N)"
            )
        if not 0 <= int(channel) < ncomp:
            raise InvalidInputError(f"channel {channel} is out of range for {path}: it has {ncomp} channels (0..{ncomp - 1})")
        image = sitk.VectorIndexSelectionCast(image, int(channel))
        note = f"channel {int(channel)} of {ncomp}"
    elif channel not in (None, 0):
        raise InvalidInputError(f"{path} has a single channel; channel={channel} does not exist (use 0 or leave it out)")
    if image.GetDimension() == 2:
        image = _embed_2d(image)
        note = (note + ", " if note else "") + "2D image loaded as one slice"
    return image, note


def _to_volume(image: Any, path: Path, channel: Optional[int], modality: Optional[str], meta: dict) -> Volume:
    image, note = _select_channel(image, path, channel)
    if note:
        meta["channel_note"] = note
    if image.GetDimension() == 3 and image.GetSize()[2] == 1:
        meta.setdefault("single_slice", True)
    try:
        return Volume.from_sitk(image, modality=modality, metadata=meta)
    except InvalidInputError as exc:
        raise ImageReadError(f"{path} has a broken geometry header: {exc}") from None


def _check_exists(path: Path) -> None:
    if not path.exists():
        parent = path.parent
        hint = "" if parent.is_dir() else f" (the folder {parent} does not exist either)"
        raise ImageReadError(f"{path}: no such file or folder{hint}")


# --------------------------------------------------------------------- public
def read_volume(path: PathLike, *, channel: Optional[int] = None) -> Volume:
    """Read a CT/MRI volume with its scanner geometry.

    Parameters
    ----------
    path : path-like
        A NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``) or MetaImage
        (``.mha``, ``.mhd``) file, a DICOM folder (the image series with the most
        slices is loaded; a warning names the others) or one file of a DICOM series.
    channel : int, optional
        For 4D files (several volumes) and multi-channel/RGB images: which one to
        load. Without it such files are refused with a message saying how to pick.

    Returns
    -------
    Volume
        Array ``[z, y, x]`` with spacing/origin/direction (x, y, z), ``modality`` when
        the file states it, and ``metadata`` (``source_path``, ``format`` and, for
        DICOM, ``metadata["dicom"]`` with the study/series/frame-of-reference UIDs
        and SOPInstanceUIDs in slice order). A 2D image becomes a one-slice volume.

    Raises
    ------
    ImageReadError
        Missing path, damaged or truncated file, text file with an image extension,
        empty folder, broken geometry (zero spacing, singular direction), ...
    UnsupportedFormatError
        Unknown format, complex voxels, DICOM objects that are not images.
    MultiChannelError
        4D/multi-channel/RGB file and no ``channel`` given.
    """
    p = Path(path)
    _check_exists(p)
    fmt = detect_format(p)
    if fmt is None:
        raise UnsupportedFormatError(f"{p} is not in a format napari-medseg reads ({SUPPORTED_TEXT})")
    if fmt == "dicom":
        from .dicom import read_dicom

        image, modality, meta = read_dicom(p)
        return _to_volume(image, p, channel, modality, meta)
    image, header = _read_image_file(p, fmt)
    meta = {"source_path": str(p), "format": fmt}
    short = {k: v for k, v in header.items() if not k.startswith("Segment")}
    if short:
        meta["header"] = short
    return _to_volume(image, p, channel, _modality_hint(p, header), meta)


def label_dtype_for(max_id: int) -> np.dtype:
    """Smallest unsigned integer dtype that holds ids up to ``max_id``."""
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if max_id <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise InvalidInputError(f"label id {max_id} is too large")


def present_ids(array: np.ndarray) -> list:
    """Sorted non-zero values present in an integer label array (fast for small dtypes)."""
    arr = np.asarray(array)
    if arr.size == 0:
        return []
    if arr.dtype.kind in "ub" and arr.dtype.itemsize <= 2:
        counts = np.bincount(arr.ravel().astype(np.intp, copy=False) if arr.dtype.kind == "b" else arr.ravel())
        return [int(i) for i in np.flatnonzero(counts) if i != 0]
    return [int(v) for v in np.unique(arr) if v != 0]


def _as_labels(array: np.ndarray, path: Path) -> np.ndarray:
    """Integer, non-negative, smallest unsigned dtype; clear errors otherwise."""
    arr = np.asarray(array)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise InvalidInputError(f"{path} is not a label map: it holds NaN/Inf values")
        if not np.array_equal(arr, np.round(arr)):
            frac = arr[arr != np.round(arr)]
            raise InvalidInputError(
                f"{path} is not a label map: it holds non-integer values (e.g. {float(frac.flat[0]):.4g}); "
                "open it as an image instead"
            )
    elif arr.dtype.kind not in "ui":
        raise InvalidInputError(f"{path} is not a label map: voxel type {arr.dtype} is not integer")
    if arr.size == 0:
        return arr.astype(np.uint8)
    lo, hi = arr.min(), arr.max()
    if lo < 0:
        raise InvalidInputError(f"{path} is not a label map: it holds negative values (min {lo}); label ids are >= 0")
    dtype = label_dtype_for(int(hi))
    return arr if arr.dtype == dtype else arr.astype(dtype)


def read_labels(path: PathLike, reference: Optional[Volume] = None) -> tuple:
    """Read a label map and the names of its classes.

    Parameters
    ----------
    path : path-like
        NIfTI / NRRD (incl. 3D Slicer ``.seg.nrrd``) / MetaImage label file.
    reference : Volume, optional
        The image the labels belong to; their voxel grids must match.

    Returns
    -------
    (Volume, LabelTable)
        The labels (smallest unsigned integer dtype, ``metadata["label_names_source"]``
        says where names came from: ``"sidecar"``, ``"slicer"``, ``"nifti-xml"`` or
        ``""``) and the table. Ids present without a name are named ``label <id>``.

    Raises
    ------
    ImageReadError, UnsupportedFormatError
        As :func:`read_volume`; multi-layer Slicer segmentations are refused.
    InvalidInputError
        The file holds non-integer or negative values.
    GeometryMismatchError
        ``reference`` is given and the grids differ (the message says how).
    """
    from .label_names import find_label_names
    from .slicer_seg import check_single_layer

    p = Path(path)
    _check_exists(p)
    fmt = detect_format(p)
    if fmt is None:
        raise UnsupportedFormatError(f"{p} is not in a format napari-medseg reads ({SUPPORTED_TEXT})")
    if fmt == "dicom":
        raise UnsupportedFormatError(
            f"{p}: read_labels reads label maps in NIfTI, NRRD or MetaImage files; "
            "DICOM segmentations (SEG) have their own reader"
        )
    image, header = _read_image_file(p, fmt)
    if any(k.startswith("Segment") and k.endswith("_Name") for k in header):
        check_single_layer(p, header, image.GetNumberOfComponentsPerPixel(), image.GetDimension())
    meta = {"source_path": str(p), "format": fmt}
    volume = _to_volume(image, p, None, None, meta)
    array = _as_labels(volume.array, p)
    table, source = find_label_names(p, header)
    ids = present_ids(array)
    if table is None:
        table = LabelTable.from_ids(ids)
    else:
        for label_id in ids:
            if label_id not in table:
                table = table.with_label(label_id, f"label {label_id}")
    meta["label_names_source"] = source
    labels = volume.with_array(array, metadata=meta)
    if reference is not None:
        reference.check_same_grid(labels, what=f"labels in {p.name}")
    return labels, table
