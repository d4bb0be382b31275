"""Finding class names for a label file.

Sources, in order of preference:

1. the JSON sidecar this project writes (``labels.nii.gz`` -> ``labels.json``);
2. a 3D Slicer ``.seg.nrrd`` (``Segment<N>_Name`` etc., see :mod:`.slicer_seg`);
3. the XML label table TotalSegmentator (and Connectome Workbench / CIFTI tools)
   store in a NIfTI-1/2 header extension: ``<LabelTable><Label Key="5" Red=..
   Green=.. Blue=.. Alpha=..>liver</Label>...``.

The NIfTI extension block is parsed here directly (it is a tiny format: after the
348-byte NIfTI-1 or 540-byte NIfTI-2 header come 4 flag bytes, then records of
``int32 esize, int32 ecode, esize - 8 bytes``) so nibabel is not needed.
"""

from __future__ import annotations

import gzip
import struct
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional, Union

from .formats import NIFTI_SUFFIXES, has_slicer_segments
from .label_table import LabelTable, read_sidecar, sidecar_path
from .slicer_seg import label_table_from_slicer_metadata

# Never read more than this many bytes of extension data (a header, not the pixels).
_MAX_EXTENSION_BYTES = 64 * 1024 * 1024


def _open_maybe_gzip(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def nifti_extensions(path: Union[str, Path]) -> list:
    """Header extensions of a NIfTI-1/2 file as ``[(ecode, bytes), ...]``.

    Returns an empty list for files without extensions, for non-NIfTI files and
    for damaged extension blocks (a broken extension never stops the image from
    loading; the pixel reader reports real damage).
    """
    path = Path(path)
    try:
        with _open_maybe_gzip(path) as fh:
            head = fh.read(540 + 4)
            if len(head) < 352:
                return []
            for endian in ("<", ">"):
                sizeof_hdr = struct.unpack(endian + "i", head[:4])[0]
                if sizeof_hdr in (348, 540):
                    break
            else:
                return []
            if sizeof_hdr == 348:
                vox_offset = int(struct.unpack(endian + "f", head[108:112])[0])
                start = 352
            else:
                if len(head) < 544:
                    return []
                vox_offset = int(struct.unpack(endian + "q", head[168:176])[0])
                start = 544
            if head[start - 4] == 0:
                return []
            # Single-file NIfTI: extensions end at vox_offset. A .hdr/.img pair
            # (vox_offset 0) may extend to EOF; cap the read either way.
            limit = vox_offset if vox_offset > start else start + _MAX_EXTENSION_BYTES
            limit = min(limit, start + _MAX_EXTENSION_BYTES)
            rest = head[start:] + fh.read(max(0, limit - len(head)))
    except (OSError, EOFError, struct.error, ValueError):
        return []
    out = []
    pos = 0
    size = limit - start
    while pos + 8 <= min(size, len(rest)):
        esize, ecode = struct.unpack(endian + "ii", rest[pos:pos + 8])
        if esize < 16 or pos + esize > len(rest):
            break
        out.append((ecode, bytes(rest[pos + 8:pos + esize])))
        pos += esize
    return out


def parse_label_table_xml(content: Union[bytes, str]) -> Optional[LabelTable]:
    """Parse a ``<LabelTable>`` (CIFTI/GIFTI/TotalSegmentator) XML document.

    Returns ``None`` when the text holds no label table or cannot be parsed.
    Colours are the ``Red/Green/Blue/Alpha`` attributes (0..1); key 0 is ignored.
    """
    if isinstance(content, bytes):
        content = content.rstrip(b"\x00 \n\r\t")
        if b"LabelTable" not in content:
            return None
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            text = content.decode("latin-1")
    else:
        text = content
        if "LabelTable" not in text:
            return None
    # ElementTree rejects the XML declaration after leading whitespace; strip it.
    text = text.strip()
    try:
        root = ET.fromstring(text.encode("utf-8"))
    except ET.ParseError as exc:
        warnings.warn(f"ignoring an unreadable XML label table ({exc})", stacklevel=3)
        return None
    entries = {}
    for label in root.iter("Label"):
        key = label.get("Key")
        try:
            label_id = int(float(key))
        except (TypeError, ValueError, OverflowError):  # "INF" parses as a float
            continue
        if label_id <= 0:
            continue
        name = (label.text or "").strip() or f"label {label_id}"
        try:
            color = tuple(float(label.get(c, default)) for c, default in
                          (("Red", "nan"), ("Green", "nan"), ("Blue", "nan"), ("Alpha", "1")))
            if not all(0.0 <= c <= 1.0 for c in color):
                color = None
        except (TypeError, ValueError):
            color = None
        entries[label_id] = (name, color)
    if not entries:
        return None
    return LabelTable(dict(sorted(entries.items())))


def label_table_from_nifti(path: Union[str, Path]) -> Optional[LabelTable]:
    """The XML label table stored in a NIfTI header extension, or ``None``."""
    for _code, content in nifti_extensions(path):
        table = parse_label_table_xml(content)
        if table is not None:
            return table
    return None


def find_label_names(path: Union[str, Path], image_metadata: Optional[dict] = None) -> tuple:
    """Class names for the label file at ``path``.

    Parameters
    ----------
    path : path-like
        The label file.
    image_metadata : dict, optional
        The file's header key/values as SimpleITK gives them (used for ``.seg.nrrd``).

    Returns
    -------
    (LabelTable or None, str)
        The table and where it came from (``"sidecar"``, ``"slicer"``,
        ``"nifti-xml"`` or ``""``).
    """
    path = Path(path)
    found = read_sidecar(sidecar_path(path))
    if found is not None:
        return found[0], "sidecar"
    if image_metadata and has_slicer_segments(image_metadata):
        table = label_table_from_slicer_metadata(image_metadata)
        if table is not None:
            return table, "slicer"
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        table = label_table_from_nifti(path)
        if table is not None:
            return table, "nifti-xml"
    return None, ""
