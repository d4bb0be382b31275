"""Integrity pre-checks of NIfTI, NRRD and MetaImage files, before ITK reads them.

ITK's failures on damaged files are vague ("Unable to determine ImageIO reader"), and
for some it fails not at all: it returns zero-filled voxels for truncated NIfTI files
and ignores the checksums of compressed NRRD/MetaImage data. :func:`precheck` reads the
first bytes of a file and says precisely what is wrong (empty, text, no magic line,
zero spacing); :func:`verify_payload` reads the header's promised data size and, for
compressed data, stream-decompresses it once (gzip CRC / zlib Adler-32) so damage is
reported instead of displayed.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import re
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from ..errors import ImageReadError
from .formats import FORMAT_NAMES


def _looks_textual(head: bytes) -> bool:
    if not head:
        return False
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    return printable / len(head) > 0.95


def precheck(path: Path, fmt: str) -> None:
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
    if fmt == "nifti" and path.name.lower().endswith((".hdr", ".img")):
        _precheck_pair(path)
        return
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


def _precheck_pair(path: Path) -> None:
    """A NIfTI/Analyze pair: the header half must hold a NIfTI-1/Analyze (348) or NIfTI-2 (540) header."""
    hdr = path if path.name.lower().endswith(".hdr") else path.with_suffix(".hdr")
    if not hdr.exists():
        hdr = path.with_suffix(".HDR")
    if not hdr.is_file():
        return  # the reader names the missing half
    with open(hdr, "rb") as fh:
        data = fh.read(544)
    if len(data) < 348 or not {struct.unpack("<i", data[:4])[0], struct.unpack(">i", data[:4])[0]} & {348, 540}:
        what = ("a text file" if _looks_textual(data[:348])
                else "not a NIfTI-1/2 or Analyze header (its first 4 bytes are not 348 or 540)")
        raise ImageReadError(f"{path} is not a valid NIfTI/Analyze pair: its header file {hdr.name} is {what}")
    if data[344:348] in (b"ni1\x00", b"n+1\x00"):
        _check_nifti_spacing(path, data)


# ------------------------------------------------------- NRRD headers
def _nrrd_fields(path: Path) -> tuple:
    """(fields lower-cased, header text incl. the blank line or None if no data follows) of a NRRD file."""
    raw, text = _text_header(path)
    end = text.find("\n\n")
    header = text if end < 0 else text[:end]
    fields = {}
    for line in header.splitlines()[1:]:
        if line.startswith("#") or ":=" in line or ":" not in line:
            continue
        key, value = line.split(":", 1)
        fields[key.strip().lower()] = value.strip()
    return fields, (None if end < 0 else text[: end + 2])


def nrrd_encoding(path: Path) -> str:
    """The ``encoding:`` of a NRRD header, lower-cased ('' when unreadable)."""
    try:
        return _nrrd_fields(path)[0].get("encoding", "raw").lower()
    except OSError:
        return ""


def _skip_lines(fh, n: int) -> None:
    for _ in range(n):
        fh.readline()


@contextlib.contextmanager
def decoded_bzip2_nrrd(path: Path) -> Iterator[Path]:
    """A temporary raw-encoded copy of a bzip2 NRRD file (attached or detached data).

    ITK has no bzip2 decoder; Python's :mod:`bz2` has. ``line skip`` applies to the
    compressed file and ``byte skip`` to the decompressed data (NRRD spec, as teem and
    pynrrd do). Errors name ``path``.
    """
    fields, header_text = _nrrd_fields(path)
    data_file = fields.get("data file") or fields.get("datafile")
    if data_file and (data_file.upper().startswith("LIST") or "%" in data_file):
        raise ImageReadError(f"{path}: bzip2-encoded NRRD data split over several files is not supported; "
                             "re-save it with gzip or raw encoding (e.g. with unu or 3D Slicer)")
    if data_file:
        source, offset = path.parent / data_file.split()[0], 0
        if not source.is_file():
            raise ImageReadError(f"{path}: its pixel data file {source.name} is missing")
    elif header_text is not None:
        source, offset = path, len(header_text.encode("latin-1"))
    else:
        raise ImageReadError(f"{path} is not a valid NRRD file: no blank line ends its header")
    try:
        with open(source, "rb") as fh:
            fh.seek(offset)
            _skip_lines(fh, int(fields.get("line skip", fields.get("lineskip", 0)) or 0))
            payload = bz2.decompress(fh.read())
    except (OSError, EOFError, ValueError) as exc:
        raise ImageReadError(f"{path} is corrupt or truncated: its bzip2 pixel data fails to decode ({exc})") from None
    skip = int(fields.get("byte skip", fields.get("byteskip", 0)) or 0)
    payload = payload[skip:] if skip >= 0 else payload
    kept = []
    with open(path, "rb") as fh:
        lines = fh.read(len((header_text or "").encode("latin-1")) or 65536).decode("latin-1").splitlines()
    for line in lines:
        if not line.strip():
            break
        key = line.split(":", 1)[0].strip().lower() if ":" in line and ":=" not in line else ""
        if key in ("encoding", "data file", "datafile", "line skip", "lineskip", "byte skip", "byteskip"):
            continue
        kept.append(line)
    kept.append("encoding: raw")
    with tempfile.TemporaryDirectory(prefix="medseg-nrrd-") as tmp:
        plain = Path(tmp) / (path.name.rsplit(".", 1)[0] + ".nrrd")
        with open(plain, "wb") as out:
            out.write(("\n".join(kept) + "\n\n").encode("latin-1"))
            out.write(payload)
        try:
            yield plain
        except ImageReadError as exc:
            raise ImageReadError(str(exc).replace(str(plain), str(path))) from None


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


def verify_payload(path: Path, fmt: str) -> None:
    """Check the pixel data is all there (and its checksum, when compressed)."""
    try:
        if fmt == "nifti":
            if path.name.lower().endswith((".hdr", ".img")):
                return  # pairs: nibabel checks the .img size against the header itself
            with open(path, "rb") as fh:
                gz = fh.read(2) == b"\x1f\x8b"
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
            fields, header_text = _nrrd_fields(path)
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
            line_skip = int(fields.get("line skip", fields.get("lineskip", 0)) or 0)
            byte_skip = int(fields.get("byte skip", fields.get("byteskip", 0)) or 0)
            if byte_skip < 0:
                return  # data at the end of the file: its start is not known from the header
            data_file = fields.get("data file") or fields.get("datafile")
            if data_file:
                if data_file.upper().startswith("LIST") or "%" in data_file:
                    return
                data_path, offset = path.parent / data_file.split()[0], 0
            elif header_text is not None:
                data_path, offset = path, len(header_text.encode("latin-1"))
            else:
                return
            if line_skip > 0 and data_path.is_file():
                # "line skip" lines precede the data (compressed or not), as teem reads them
                with open(data_path, "rb") as fh:
                    fh.seek(offset)
                    _skip_lines(fh, line_skip)
                    offset = fh.tell()
            if compressed:
                need += byte_skip  # byte skip counts decompressed bytes
            else:
                offset += byte_skip
            _check_size(path, data_path, offset, need, compressed)
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


__all__ = ["precheck", "verify_payload", "nrrd_encoding", "decoded_bzip2_nrrd"]
