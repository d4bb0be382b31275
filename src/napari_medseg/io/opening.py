"""Open any path the plugin reads and say what it is: one function for napari and ``medseg info``.

:func:`open_path` decides, from the file itself, whether a path holds

- ``"image"``: a NIfTI/NRRD/MetaImage volume (one per channel when a 4D or
  multi-channel file is split);
- ``"labels"``: a label map with its class table: an integer (or whole-number float)
  file that carries class names (JSON sidecar, 3D Slicer ``.seg.nrrd``,
  TotalSegmentator XML) or whose name says so (``seg``/``label``/``mask``/``annot``)
  and that holds at most :data:`MAX_LABEL_VALUES` distinct ids;
- ``"dicom-series"``: a DICOM image series (a folder, or one file of it; files without
  an extension are recognised by their content);
- ``"dicom-seg"``: a DICOM Segmentation, placed on the grid of the image series beside
  it when that series is its source.

The napari reader turns each :class:`Opened` into a layer; ``medseg info`` prints it.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

from ..errors import InvalidInputError, MedsegError
from ._sitk import MultiChannelError, channel_count, is_float_pixel, is_integer_pixel, read_image_file
from .arrays import present_ids
from .formats import NIFTI_SUFFIXES, detect_format, has_slicer_segments, is_dicom_seg, strip_extension
from .label_names import label_table_from_nifti
from .label_table import LabelTable, read_sidecar, sidecar_path
from .readers import read_labels, read_volume, readable_format
from .volume import Volume

PathLike = Union[str, os.PathLike]

#: Words in a file name that make an integer file a label map candidate.
LABEL_WORDS = re.compile(r"(seg|label|mask|annot)", re.I)
#: More distinct values than this is an image, not a label map (unless the file names its classes).
MAX_LABEL_VALUES = 1024

KINDS = ("image", "labels", "dicom-series", "dicom-seg")


@dataclass(frozen=True)
class Opened:
    """One volume read from a path, and what it is.

    Attributes
    ----------
    kind : str
        ``"image"``, ``"labels"``, ``"dicom-series"`` or ``"dicom-seg"``.
    volume : Volume
        The image, or the label map (smallest unsigned dtype) with its geometry.
    table : LabelTable or None
        Class names and colours, for ``"labels"`` and ``"dicom-seg"``.
    name : str
        A display name: the file name without its extension (the folder's name for a
        series), with ``[c]`` appended for one channel of a split file.
    """

    kind: str
    volume: Volume
    table: Optional[LabelTable] = None
    name: str = ""

    @property
    def is_labels(self) -> bool:
        """Whether this is a label map (a file's labels or a DICOM-SEG)."""
        return self.kind in ("labels", "dicom-seg")

    def describe(self) -> str:
        """One line saying what this is (``medseg info``'s "content")."""
        if self.is_labels:
            ids = self.table.ids if self.table is not None else present_ids(self.volume.array)
            names = [self.table.name_of(i) for i in ids[:6]] if self.table is not None else []
            shown = ", ".join(names) + (", ..." if len(ids) > 6 else "")
            what = "DICOM Segmentation (DICOM-SEG)" if self.kind == "dicom-seg" else "label map"
            source = self.volume.metadata.get("label_names_source")
            where = f" (names from {source})" if source else ""
            return f"{what}, {len(ids)} class{'es' if len(ids) != 1 else ''}{where}" + (f": {shown}" if shown else "")
        if self.kind == "dicom-series":
            dicom = self.volume.metadata.get("dicom") or {}
            n = len(dicom.get("SOPInstanceUIDs", []))
            return f"DICOM image series {dicom.get('SeriesInstanceUID', '?')}, {n} file{'s' if n != 1 else ''}"
        note = self.volume.metadata.get("channel_note")
        return "image" + (f" ({note})" if note else "")


def display_name(path: PathLike) -> str:
    """The layer name for ``path``: a file's name without its extension, a folder's name."""
    p = Path(path)
    return strip_extension(p.name) if p.is_file() else p.name


def label_names_available(path: PathLike, header_keys: Sequence[str]) -> bool:
    """Whether a label file carries class names (sidecar, Slicer header, NIfTI XML table)."""
    p = Path(path)
    try:
        if read_sidecar(sidecar_path(p)) is not None:
            return True
    except InvalidInputError:
        return True  # a broken sidecar of ours: read_labels will say what is wrong
    if has_slicer_segments(dict.fromkeys(header_keys, "")):
        return True
    if p.name.lower().endswith(NIFTI_SUFFIXES):
        return label_table_from_nifti(p) is not None
    return False


def looks_like_labels(path: PathLike, fmt: Optional[str] = None) -> bool:
    """Cheap decision from the header only: could this NIfTI/NRRD/MetaImage file be a label map?

    Integer voxels with class names or a label word in the name; float voxels only with
    class names (some tools save label maps as float; :func:`read_labels` refuses
    fractional values and the file then opens as an image).
    """
    p = Path(path)
    fmt = fmt or detect_format(p)
    if fmt in (None, "dicom"):
        return False
    reader, header = read_image_file(p, fmt, read_pixels=False)
    named = label_names_available(p, list(header))
    if not is_integer_pixel(reader):
        return named and is_float_pixel(reader)
    return named or bool(LABEL_WORDS.search(strip_extension(p.name)))


def _dicom_seg(p: Path, name: str) -> Opened:
    """A DICOM-SEG on the grid of its image series when that sits beside it."""
    reference = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = read_volume(p.parent)
    except MedsegError:
        reference = None
    try:
        labels, table = read_labels(p, reference=reference)
    except MedsegError:
        if reference is None:
            raise
        labels, table = read_labels(p)  # the series beside it is another one: use the SEG's own grid
    return Opened("dicom-seg", labels, table, name)


def open_path(path: PathLike, *, channel: Optional[int] = None, split_channels: int = 0) -> List[Opened]:
    """Read what ``path`` holds and say what it is.

    Parameters
    ----------
    path : path-like
        A NIfTI/NRRD/MetaImage file, a DICOM folder or file (with or without extension)
        or a DICOM-SEG file.
    channel : int, optional
        For 4D / multi-channel files: which volume to read (the file is then read as
        an image).
    split_channels : int
        Without ``channel``, a 4D / multi-channel file with up to this many volumes is
        read as one image per volume (with a warning); 0 refuses such files with
        :class:`~napari_medseg.io.MultiChannelError`, which says how to pick one.

    Returns
    -------
    list of Opened
        One item, or one per channel of a split file.

    Raises
    ------
    ImageReadError, UnsupportedFormatError, MultiChannelError
        As :func:`~napari_medseg.io.read_volume`; an unknown format names what is read.
    """
    p = Path(path)
    fmt = readable_format(p)
    name = display_name(p)
    if fmt == "dicom":
        if p.is_file() and is_dicom_seg(p):
            return [_dicom_seg(p, name)]
        return [Opened("dicom-series", read_volume(p, channel=channel), None, name)]
    if channel is None and looks_like_labels(p, fmt):
        try:
            labels, table = read_labels(p)
        except InvalidInputError:
            labels = None  # negative or fractional values: an image after all
        if labels is not None:
            if labels.metadata.get("label_names_source") or len(present_ids(labels.array)) <= MAX_LABEL_VALUES:
                return [Opened("labels", labels, table, name)]
    try:
        return [Opened("image", read_volume(p, channel=channel), None, name)]
    except MultiChannelError as exc:
        n = channel_count(p)
        if channel is not None or not n or n > split_channels:
            raise
        warnings.warn(f"{p.name}: {exc}; opening each of its {n} channels as its own layer", stacklevel=2)
        return [Opened("image", read_volume(p, channel=c), None, f"{name} [{c}]") for c in range(n)]


__all__ = ["Opened", "open_path", "looks_like_labels", "label_names_available", "display_name",
           "LABEL_WORDS", "MAX_LABEL_VALUES", "KINDS"]
