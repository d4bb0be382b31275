"""Reading volumes and label maps: NIfTI, NRRD, MetaImage and DICOM series.

Every failure on a file we are asked to read is an :class:`ImageReadError` (or its
subclass :class:`UnsupportedFormatError`) whose message names the file and says what
is wrong; SimpleITK's multi-line C++ exceptions never reach the user. Formats are
recognised by :mod:`.formats`, files are checked by :mod:`._integrity` and read by
:mod:`._sitk`; DICOM series come from :mod:`.dicom`, DICOM-SEG from :mod:`.dicom_seg`.

Geometry comes from the file header through SimpleITK (NIfTI qform/sform, NRRD space
directions, MetaImage TransformMatrix, DICOM positions, all as LPS) into
:class:`~napari_medseg.io.volume.Volume`.

Modality is never guessed from intensities: it is ``"CT"``/``"MR"``/... only when the
file says so (DICOM ``Modality``, a MetaImage/NRRD ``Modality`` or ``medseg_modality``
key, a BIDS-style JSON sidecar with ``"Modality"``), else ``None``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..errors import ImageReadError, InvalidInputError, UnsupportedFormatError
from ._sitk import MultiChannelError, read_image_file, select_channel
from .arrays import label_dtype_for, present_ids, to_label_array
from .dicom import read_dicom
from .dicom_seg import read_dicom_seg
from .formats import SUPPORTED_TEXT, detect_format, has_slicer_segments, is_dicom_seg, is_slicer_segmentation
from .label_names import find_label_names
from .label_table import LabelTable, sidecar_path
from .slicer_seg import check_single_layer
from .volume import Volume

PathLike = Union[str, os.PathLike]


class NaNVoxelsWarning(UserWarning):
    """The file holds NaN voxels; they were kept (the count is in ``metadata["nan_voxels"]``)."""


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


def _to_volume(image: Any, path: Path, channel: Optional[int], modality: Optional[str], meta: dict) -> Volume:
    image, note = select_channel(image, path, channel)
    if note:
        meta["channel_note"] = note
    if image.GetDimension() == 3 and image.GetSize()[2] == 1:
        meta.setdefault("single_slice", True)
    try:
        volume = Volume.from_sitk(image, modality=modality, metadata=meta)
    except InvalidInputError as exc:
        raise ImageReadError(f"{path} has a broken geometry header: {exc}") from None
    if np.issubdtype(volume.array.dtype, np.floating):
        # NaN voxels (masked-out regions of float maps) are kept as they are, never zeroed; say so
        n_nan = int(np.count_nonzero(np.isnan(volume.array)))
        if n_nan:
            volume.metadata["nan_voxels"] = n_nan
            warnings.warn(f"{path} holds {n_nan} NaN voxel(s) (no value); they are kept as NaN",
                          NaNVoxelsWarning, stacklevel=3)
    return volume


def check_exists(path: Path) -> None:
    """Raise :class:`ImageReadError` naming ``path`` (and a missing parent folder) when it does not exist."""
    if not path.exists():
        parent = path.parent
        hint = "" if parent.is_dir() else f" (the folder {parent} does not exist either)"
        raise ImageReadError(f"{path}: no such file or folder{hint}")


def readable_format(path: Path) -> str:
    """The format of an existing ``path`` this package reads, else a message saying why not.

    Raises
    ------
    ImageReadError
        ``path`` does not exist.
    UnsupportedFormatError
        Not a format read here (for a file without an extension: not DICOM by content).
    """
    check_exists(path)
    fmt = detect_format(path)
    if fmt is None:
        hint = ("; DICOM files without an extension are recognised by their content, and this one has no "
                "DICOM preamble ('DICM' at byte 128)") if path.is_file() and not path.suffix else ""
        raise UnsupportedFormatError(f"{path} is not in a format napari-medseg reads ({SUPPORTED_TEXT}){hint}")
    return fmt


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
    fmt = readable_format(p)
    if fmt == "dicom":
        image, modality, meta = read_dicom(p)
        return _to_volume(image, p, channel, modality, meta)
    image, header = read_image_file(p, fmt, verify=verify)
    meta = {"source_path": str(p), "format": fmt}
    short = {k: v for k, v in header.items() if not k.startswith("Segment")}
    if short:
        meta["header"] = short
    return _to_volume(image, p, channel, _modality_hint(p, header), meta)


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
    p = Path(path)
    fmt = readable_format(p)
    if fmt == "dicom":
        if p.is_file() and is_dicom_seg(p):
            return read_dicom_seg(p, reference=reference)
        raise UnsupportedFormatError(
            f"{p}: read_labels reads label maps in NIfTI, NRRD, MetaImage or DICOM-SEG files; "
            "this is a DICOM image (series), not a segmentation"
        )
    image, header = read_image_file(p, fmt)
    if has_slicer_segments(header):
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
        from_slicer = is_slicer_segmentation(header) or source == "slicer"
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


__all__ = ["read_volume", "read_labels", "NaNVoxelsWarning", "check_exists", "readable_format", "MultiChannelError", "detect_format", "present_ids",
           "to_label_array", "label_dtype_for"]
