"""The file formats napari-medseg reads and writes, and how each is recognised.

The one list of extensions (readers, writers, the npe2 manifest's patterns, the output
guard and the export table all derive from it), plus the detectors that look inside a
file: the DICOM Part 10 preamble, DICOM Segmentation objects, 3D Slicer segmentation
headers and the data file a detached ``.mhd``/``.nhdr`` header names.

This module is the bottom of :mod:`napari_medseg.io` and imports nothing from the package
(pydicom only inside :func:`is_dicom_seg`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Mapping, Optional, Union

PathLike = Union[str, os.PathLike]

#: Extension -> format name, longest first so ".seg.nrrd" beats ".nrrd" and ".nii.gz" ".gz".
EXTENSIONS = {
    ".seg.nrrd": "nrrd",
    ".nii.gz": "nifti",
    ".nii": "nifti",
    # NIfTI-1/Analyze pairs: header in .hdr, voxels in the .img beside it
    ".hdr": "nifti",
    ".img": "nifti",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".mha": "metaimage",
    ".mhd": "metaimage",
    ".dcm": "dicom",
    ".ima": "dicom",
    ".dicom": "dicom",
}
FORMAT_NAMES = {"nifti": "NIfTI", "nrrd": "NRRD", "metaimage": "MetaImage", "dicom": "DICOM"}
SUPPORTED_TEXT = "NIfTI-1/2 (.nii, .nii.gz, .hdr/.img pairs), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) or a DICOM series"

#: Extensions of DICOM files (files without one are recognised by their content).
DICOM_SUFFIXES = tuple(ext for ext, fmt in EXTENSIONS.items() if fmt == "dicom")
#: Volume formats the writers produce (DICOM is read-only except as DICOM-SEG).
WRITABLE = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: Label maps may also be written as 3D Slicer segmentations.
WRITABLE_LABELS = (".seg.nrrd",) + WRITABLE
#: Header formats whose pixels may live in a separate data file.
DETACHED = (".mhd", ".nhdr")
#: Single-file NIfTI extensions (the files that may carry an XML label table in a header extension).
NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: NIfTI-1/Analyze pair extensions (header, voxels).
NIFTI_PAIR_SUFFIXES = (".hdr", ".img")

#: SOP Class UID of a DICOM Segmentation Storage object.
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
#: SOP Class UID of a Label Map Segmentation Storage object (DICOM 2024+, dcmqi/highdicom write it).
LABELMAP_SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.7"
#: Both segmentation SOP classes; both are read as label maps.
SEG_SOP_CLASSES = (SEG_SOP_CLASS, LABELMAP_SEG_SOP_CLASS)


def extension_of(name: Union[str, PathLike], extensions: Iterable[str] = EXTENSIONS, *,
                 need_stem: bool = True) -> Optional[str]:
    """The longest of ``extensions`` that the file name ends with (any case), or None.

    With ``need_stem`` a name that is only an extension (``".nii.gz"``) has none.
    """
    lowered = Path(name).name.lower()
    for ext in sorted(extensions, key=len, reverse=True):
        if lowered.endswith(ext) and (len(lowered) > len(ext) or not need_stem):
            return ext
    return None


def strip_extension(name: str, extensions: Iterable[str] = EXTENSIONS) -> str:
    """``name`` without its known extension (``"ct.seg.nrrd"`` -> ``"ct"``); unchanged otherwise."""
    ext = extension_of(name, extensions)
    return name[: -len(ext)] if ext else name


def is_dicom_file(path: PathLike) -> bool:
    """True when ``path`` is a file with the DICOM Part 10 preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def looks_like_dicom(path: PathLike) -> bool:
    """A DICOM file by content, or a file with a DICOM extension (files without the Part
    10 preamble are rare but exist; only the usual names are tried)."""
    return is_dicom_file(path) or Path(path).name.lower().endswith(DICOM_SUFFIXES)


def detect_format(path: PathLike) -> Optional[str]:
    """Format of ``path``: ``"nifti"``, ``"nrrd"``, ``"metaimage"`` or ``"dicom"``, else None.

    By extension; DICOM also by content, for files without an extension (PACS exports
    name them ``IM0001``); a folder is ``"dicom"`` (a series).
    """
    p = Path(path)
    if p.is_dir():
        return "dicom"
    ext = extension_of(p.name, need_stem=False)
    if ext is not None:
        return EXTENSIONS[ext]
    if p.is_file() and is_dicom_file(p):
        return "dicom"
    return None


def is_dicom_seg(path: PathLike) -> bool:
    """True when ``path`` is a DICOM Segmentation object (SOP class, or Modality ``SEG``).

    Reads two header elements; False for anything else, damaged files included (the
    reader that opens them then says what is wrong).
    """
    if not is_dicom_file(path):
        return False
    try:
        import pydicom

        ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["SOPClassUID", "Modality"])
    except Exception:  # noqa: BLE001 - pydicom raises many types on damaged files
        return False
    return str(ds.get("SOPClassUID", "")) in SEG_SOP_CLASSES or str(ds.get("Modality", "")).upper() == "SEG"


def has_slicer_segments(header: Mapping[str, str]) -> bool:
    """True when a NRRD header (key/values) names 3D Slicer segments (``Segment<N>_Name``)."""
    return any(k.startswith("Segment") and k.endswith("_Name") for k in header)


def is_slicer_segmentation(header: Mapping[str, str]) -> bool:
    """True when a NRRD header comes from a 3D Slicer segmentation (segments or
    ``Segmentation_*`` keys; Slicer may save such files cropped to their extent)."""
    return has_slicer_segments(header) or any(k.startswith("Segmentation_") for k in header)


# Detached-header formats: MetaImage "ElementDataFile = x.zraw", NRRD "data file: x.raw.gz".
DATA_FILE_LINE = re.compile(r"^(ElementDataFile\s*=\s*|data ?file:\s*)(.+?)\s*$", re.M)


def detached_data_file(header: PathLike) -> Optional[str]:
    """The data file named by a ``.mhd``/``.nhdr`` header, beside it (None if unreadable,
    attached (``LOCAL``), a file list, or in another folder)."""
    try:
        with open(header, "rb") as fh:
            text = fh.read(65536).decode("latin-1")
    except OSError:
        return None
    m = DATA_FILE_LINE.search(text)
    if not m or m.group(2).upper() == "LOCAL" or m.group(2).upper().startswith("LIST") or "/" in m.group(2):
        return None
    return m.group(2)


__all__ = [
    "EXTENSIONS", "FORMAT_NAMES", "SUPPORTED_TEXT", "DICOM_SUFFIXES", "WRITABLE", "WRITABLE_LABELS",
    "DETACHED", "NIFTI_SUFFIXES", "NIFTI_PAIR_SUFFIXES", "SEG_SOP_CLASS", "LABELMAP_SEG_SOP_CLASS",
    "SEG_SOP_CLASSES", "extension_of", "strip_extension", "is_dicom_file",
    "looks_like_dicom", "detect_format", "is_dicom_seg", "has_slicer_segments", "is_slicer_segmentation",
    "detached_data_file",
]
