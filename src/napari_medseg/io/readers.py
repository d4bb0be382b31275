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
_ITK_ERROR = re.compile(r"(?:ITK ERROR:\s*[^:]*?:|sitk::ERROR:)\s*(.*)", re.S)


def _itk_message(exc: BaseException) -> str:
    """The useful line of a SimpleITK/ITK exception (no C++ file names)."""
    text = str(exc).strip()
    m = _ITK_ERROR.search(text)
    if m:
        text = m.group(1)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("Exception thrown in SimpleITK")
             and not re.match(r"^(/|[A-Za-z]:\\).*\.(h|hxx|cxx|cpp):\d+", ln)]
    if lines and lines[0].startswith("Unable to determine ImageIO reader"):
        return "no image reader recognises its content"
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
        _check_nifti_spacing(path, data)
    elif fmt == "nrrd":
        if not head.startswith(b"NRRD000"):
            what = "it is a text file without the NRRD magic line" if _looks_textual(head[:512]) else "the NRRD magic line 'NRRD000x' is missing"
            raise ImageReadError(f"{path} is not a valid {name} file: {what}")
    elif fmt == "metaimage":
        text = head.decode("latin-1")
        if not re.search(r"^\s*(NDims|ObjectType)\s*=", text, re.M):
            raise ImageReadError(f"{path} is not a valid {name} file: no 'NDims =' / 'ObjectType =' header lines")


# ------------------------------------------------------- payload integrity
# ITK silently returns zero-filled voxels for some truncated files (NIfTI) and does not
# check the checksums of compressed NRRD/MetaImage data. These checks read the
# header's promised data size and, for compressed data, stream-decompress it once
# (checking gzip CRC / zlib Adler-32) so damage is reported instead of displayed.
_CHUNK = 1024 * 1024
_OUT_CHUNK = 256 * 1024


def _stream_size(path: Path, offset: int, wrapper: str) -> int:
    """Decompressed size of the gzip ('gzip') or zlib ('zlib') stream at ``offset``.

    Raises ImageReadError when the stream is cut short or fails its checksum.
    """
    wbits = 16 + zlib.MAX_WBITS if wrapper == "gzip" else zlib.MAX_WBITS
    total = 0
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            while True:
                # gzip files may hold several members (e.g. bgzip); decode them all.
                dec = zlib.decompressobj(wbits)
                while not dec.eof:
                    chunk = fh.read(_CHUNK)
                    if not chunk:
                        raise ImageReadError(f"{path} is truncated: its compressed pixel data ends early")
                    # Bounded output pieces: no allocation of the whole volume here.
                    total += len(dec.decompress(chunk, _OUT_CHUNK))
                    while dec.unconsumed_tail and not dec.eof:
                        total += len(dec.decompress(dec.unconsumed_tail, _OUT_CHUNK))
                rest = dec.unused_data
                if wrapper != "gzip" or not rest.startswith(b"\x1f\x8b"):
                    break
                fh.seek(fh.tell() - len(rest))
    except zlib.error as exc:
        raise ImageReadError(f"{path} is corrupt: its compressed pixel data fails to decode ({exc})") from None
    return total


def _nifti_layout(head: bytes) -> Optional[tuple]:
    """(vox_offset, data bytes) from a NIfTI-1/2 header, or None if not parseable."""
    for endian in ("<", ">"):
        size = struct.unpack(endian + "i", head[:4])[0]
        if size == 348 and len(head) >= 348:
            dims = struct.unpack(endian + "8h", head[40:56])
            bitpix = struct.unpack(endian + "h", head[72:74])[0]
            vox_offset = struct.unpack(endian + "f", head[108:112])[0]
            break
        if size == 540 and len(head) >= 540:
            dims = struct.unpack(endian + "8q", head[16:80])
            bitpix = struct.unpack(endian + "h", head[14:16])[0]
            vox_offset = struct.unpack(endian + "q", head[168:176])[0]
            break
    else:
        return None
    ndim = dims[0]
    if not 1 <= ndim <= 7 or bitpix <= 0 or not np.isfinite(vox_offset):
        return None
    n = 1
    for d in dims[1:1 + ndim]:
        n *= max(int(d), 0)
    return int(vox_offset), n * bitpix // 8


def _text_header(path: Path, limit: int = 65536) -> tuple:
    """(header text, byte offset where attached data starts) of a NRRD/MetaImage file."""
    with open(path, "rb") as fh:
        raw = fh.read(limit)
    return raw, raw.decode("latin-1")


_NRRD_TYPES = {"signed char": 1, "int8": 1, "int8_t": 1, "uchar": 1, "unsigned char": 1, "uint8": 1, "uint8_t": 1,
               "short": 2, "short int": 2, "signed short": 2, "signed short int": 2, "int16": 2, "int16_t": 2,
               "ushort": 2, "unsigned short": 2, "unsigned short int": 2, "uint16": 2, "uint16_t": 2,
               "int": 4, "signed int": 4, "int32": 4, "int32_t": 4, "uint": 4, "unsigned int": 4, "uint32": 4,
               "uint32_t": 4, "longlong": 8, "long long": 8, "long long int": 8, "signed long long": 8,
               "signed long long int": 8, "int64": 8, "int64_t": 8, "ulonglong": 8, "unsigned long long": 8,
               "unsigned long long int": 8, "uint64": 8, "uint64_t": 8, "float": 4, "double": 8}
_MET_TYPES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
              "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
              "MET_DOUBLE": 8}


def _check_size(path: Path, data_path: Path, offset: int, need: int, compressed: Optional[str]) -> None:
    if not data_path.is_file():
        raise ImageReadError(f"{path}: its pixel data file {data_path.name} is missing")
    if compressed:
        got = _stream_size(data_path, offset, compressed)
    else:
        got = data_path.stat().st_size - offset
    if got < need:
        raise ImageReadError(
            f"{path} is truncated: only {max(got, 0)} of the {need} bytes its header promises are there"
        )


def _verify_payload(path: Path, fmt: str) -> None:
    """Check the pixel data is all there (and its checksum, when compressed)."""
    try:
        if fmt == "nifti":
            gz = open(path, "rb").read(2) == b"\x1f\x8b"
            if gz:
                with gzip.open(path, "rb") as fh:
                    head = fh.read(544)
            else:
                with open(path, "rb") as fh:
                    head = fh.read(544)
            layout = _nifti_layout(head)
            if layout is None or layout[0] < 348:
                return  # .hdr/.img pairs or odd headers: leave it to ITK
            offset, nbytes = layout
            _check_size(path, path, 0, offset + nbytes, "gzip" if gz else None)
        elif fmt == "nrrd":
            raw, text = _text_header(path)
            end = text.find("\n\n")
            header = text if end < 0 else text[:end]
            fields = {}
            for line in header.splitlines()[1:]:
                if line.startswith("#") or ":=" in line or ":" not in line:
                    continue
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.strip()
            try:
                sizes = [int(v) for v in fields["sizes"].split()]
                itemsize = 1 if fields.get("encoding", "raw") == "ascii" else _NRRD_TYPES[fields["type"].lower()]
            except (KeyError, ValueError):
                return  # ITK reports malformed headers itself
            encoding = fields.get("encoding", "raw").lower()
            if encoding in ("ascii", "text", "txt", "hex", "bz2", "bzip2"):
                return
            need = int(np.prod(sizes, dtype=np.int64)) * itemsize
            compressed = "gzip" if encoding in ("gzip", "gz") else None
            data_file = fields.get("data file") or fields.get("datafile")
            if data_file:
                if data_file.upper().startswith("LIST") or "%" in data_file:
                    return
                _check_size(path, path.parent / data_file.split()[0], int(fields.get("byte skip", 0) or 0), need, compressed)
            elif end >= 0:
                _check_size(path, path, len(text[: end + 2].encode("latin-1")), need, compressed)
        elif fmt == "metaimage":
            raw, text = _text_header(path)
            fields, offset = {}, None
            pos = 0
            for line in text.splitlines(keepends=True):
                pos += len(line.encode("latin-1"))
                if "=" not in line:
                    continue
                key, value = line.split("=", 1)
                fields[key.strip()] = value.strip()
                if key.strip() == "ElementDataFile":
                    offset = pos
                    break
            try:
                dims = [int(v) for v in fields["DimSize"].split()]
                itemsize = _MET_TYPES[fields["ElementType"]] * int(fields.get("ElementNumberOfChannels", 1))
                data_file = fields["ElementDataFile"]
            except (KeyError, ValueError):
                return
            need = int(np.prod(dims, dtype=np.int64)) * itemsize
            compressed = "zlib" if fields.get("CompressedData", "False").lower() == "true" else None
            if data_file.upper() == "LOCAL":
                _check_size(path, path, offset or 0, need, compressed)
            elif data_file.upper().startswith("LIST") or "%" in data_file:
                return
            else:
                _check_size(path, path.parent / data_file, 0, need, compressed)
    except ImageReadError:
        raise
    except (OSError, EOFError, zlib.error) as exc:
        raise ImageReadError(f"{path} is damaged: {exc}") from None


def _check_nifti_spacing(path: Path, data: bytes) -> None:
    """Refuse zero/NaN voxel sizes that ITK would silently replace by 1 mm.

    Only when no valid sform gives the geometry instead (ITK then uses pixdim).
    """
    for endian in ("<", ">"):
        if struct.unpack(endian + "i", data[:4])[0] == 348:
            break
    else:
        return  # NIfTI-2: ITK reads its double-precision fields; nothing to add here
    ndim = struct.unpack(endian + "h", data[40:42])[0]
    pixdim = struct.unpack(endian + "8f", data[76:108])
    sform_code = struct.unpack(endian + "h", data[254:256])[0]
    srow = np.array(struct.unpack(endian + "12f", data[280:328]), dtype=float).reshape(3, 4)
    k = min(max(int(ndim), 1), 3)
    spacing = pixdim[1:1 + k]
    sform_ok = sform_code > 0 and np.all(np.isfinite(srow)) and abs(np.linalg.det(srow[:3, :3])) > 1e-12
    if not sform_ok and not all(np.isfinite(v) and v != 0 for v in spacing):
        raise ImageReadError(
            f"{path} has a broken geometry header: voxel spacing (pixdim) "
            f"{tuple(round(float(v), 6) for v in spacing)} contains zero or NaN and there is no valid "
            "sform; its real size in mm is unknown. Fix the header (e.g. with the scanner export or "
            "nibabel) before measuring anything."
        )


def _read_image_file(path: Path, fmt: str, *, read_pixels: bool = True, verify: bool = True) -> tuple:
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
    if verify:
        _verify_payload(path, fmt)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        msg = _itk_message(exc)
        if re.search(r"spacing|direction|determinant", msg, re.I):
            raise ImageReadError(f"{path} has a broken geometry header: {msg}") from None
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
def read_volume(path: PathLike, *, channel: Optional[int] = None, verify: bool = True) -> Volume:
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
    verify : bool
        Check that all pixel data promised by the header is present and, for
        compressed files, that it passes its checksum (ITK itself returns
        zero-filled voxels for some truncated files). Costs about one extra
        decompression for compressed files; pass False to skip.

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
    image, header = _read_image_file(p, fmt, verify=verify)
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


def to_label_array(array: np.ndarray, what: str = "labels", *, from_file: bool = False) -> np.ndarray:
    """``array`` as non-negative integers in the smallest unsigned dtype.

    Booleans become uint8; floats are accepted only when every value is a whole
    number. Raises :class:`InvalidInputError` otherwise, naming ``what``; with
    ``from_file`` (``what`` is a file being read) the message says the file "is not a
    label map" and what it holds instead.
    """
    def refuse(file_text: str, other_text: str):
        raise InvalidInputError(f"{what} is not a label map: {file_text}" if from_file else f"{what} {other_text}")

    arr = np.asarray(array)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    whole_numbers = "must hold whole numbers; got non-integer or NaN values"
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            refuse("it holds NaN/Inf values", whole_numbers)
        if not np.array_equal(arr, np.round(arr)):
            frac = arr[arr != np.round(arr)]
            refuse(f"it holds non-integer values (e.g. {float(frac.flat[0]):.4g}); open it as an image instead",
                   whole_numbers)
    elif arr.dtype.kind not in "ui":
        refuse(f"voxel type {arr.dtype} is not integer", f"must be an integer array, got dtype {arr.dtype}")
    if arr.size == 0:
        return arr.astype(np.uint8)
    lo, hi = arr.min(), arr.max()
    if lo < 0:
        refuse(f"it holds negative values (min {lo}); label ids are >= 0",
               f"hold negative values (min {lo}); label ids must be >= 0")
    dtype = label_dtype_for(int(hi))
    return arr if arr.dtype == dtype else arr.astype(dtype)


def read_labels(path: PathLike, reference: Optional[Volume] = None, *, allow_crop: Optional[bool] = None) -> tuple:
    """Read a label map and the names of its classes.

    Parameters
    ----------
    path : path-like
        NIfTI / NRRD (incl. 3D Slicer ``.seg.nrrd``) / MetaImage label file, or a
        DICOM-SEG file (read by :func:`napari_medseg.io.dicom_seg.read_dicom_seg`).
    reference : Volume, optional
        The image the labels belong to; their voxel grids must match.
    allow_crop : bool, optional
        Accept a label map that is a whole-voxel crop of ``reference``'s grid (same
        spacing and direction) and pad it back onto that grid. Default (None): only for
        3D Slicer segmentations, which Slicer may save cropped to their extent; other
        files must match exactly, because a crop cannot be told from a file whose
        origin was not updated when it was cut.

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
        if p.is_file():
            from .dicom import NON_IMAGE_SOP_CLASSES, _read_header

            header = _read_header(p)
            if header is not None and NON_IMAGE_SOP_CLASSES.get(header.sop_class, "").startswith("DICOM Segmentation"):
                try:
                    from .dicom_seg import read_dicom_seg
                except ImportError:  # pragma: no cover - the DICOM-SEG module ships with the package
                    read_dicom_seg = None
                if read_dicom_seg is not None:
                    return read_dicom_seg(p, reference=reference)
        raise UnsupportedFormatError(
            f"{p}: read_labels reads label maps in NIfTI, NRRD, MetaImage or DICOM-SEG files; "
            "this is a DICOM image (series), not a segmentation"
        )
    image, header = _read_image_file(p, fmt)
    if any(k.startswith("Segment") and k.endswith("_Name") for k in header):
        check_single_layer(p, header, image.GetNumberOfComponentsPerPixel(), image.GetDimension())
    meta = {"source_path": str(p), "format": fmt}
    volume = _to_volume(image, p, None, None, meta)
    array = to_label_array(volume.array, str(p), from_file=True)
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
    if reference is not None and not reference.same_grid(labels):
        from_slicer = any(k.startswith("Segmentation_") for k in header) or source == "slicer"
        if allow_crop or (allow_crop is None and from_slicer):
            labels = _embed_in_reference(labels, reference) or labels
        reference.check_same_grid(labels, what=f"labels in {p.name}")
    return labels, table


def _embed_in_reference(labels: Volume, reference: Volume) -> Optional[Volume]:
    """Place a label map cropped from ``reference``'s grid back onto that grid.

    Tools such as 3D Slicer may save a segmentation cropped to its extent. When the
    spacing and direction match and the crop sits at a whole-voxel offset inside the
    reference, padding with background is exact; otherwise return None.
    """
    if not (np.allclose(labels.spacing, reference.spacing, atol=1e-4)
            and np.allclose(labels.direction, reference.direction, atol=1e-5)):
        return None
    offset = reference.physical_to_index(labels.origin)  # z, y, x (fractional)
    rounded = np.round(offset)
    if not np.allclose(offset, rounded, atol=1e-3):
        return None
    start = rounded.astype(int)
    stop = start + np.asarray(labels.shape)
    if np.any(start < 0) or np.any(stop > np.asarray(reference.shape)):
        return None
    if labels.shape == reference.shape:
        return None  # same size but shifted: a real mismatch, reported by the caller
    full = np.zeros(reference.shape, dtype=labels.array.dtype)
    full[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]] = labels.array
    meta = dict(labels.metadata, embedded_offset_zyx=[int(v) for v in start])
    return Volume(full, spacing=reference.spacing, origin=reference.origin, direction=reference.direction,
                  modality=labels.modality, metadata=meta)
