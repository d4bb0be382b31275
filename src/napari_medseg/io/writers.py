"""Writing volumes and label maps with exactly their scanner geometry, atomically.

Formats by extension: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``),
MetaImage (``.mha``, ``.mhd`` + ``.zraw``) and, for labels, 3D Slicer ``.seg.nrrd``.
NRRD and MetaImage store spacing/origin/direction as decimal doubles (exact round
trip); NIfTI stores them as float32 (round trip to ~1e-7 relative), and has no
modality field (NRRD/MetaImage keep it in a ``medseg_modality`` key).

Every write goes through :func:`~napari_medseg.io.atomic.atomic_write`: a failure
leaves any existing file untouched and no partial file behind. Label maps are stored
in the smallest unsigned integer type that holds their largest id, with a JSON
sidecar (``labels.nii.gz`` -> ``labels.json``) holding ids, names, colours and the
geometry.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..errors import InvalidInputError, UnsupportedFormatError
from ._sitk import write_image
from .arrays import present_ids, to_label_array
from .atomic import atomic_write
from .formats import DATA_FILE_LINE, DETACHED, EXTENSIONS, WRITABLE, WRITABLE_LABELS, detached_data_file, extension_of
from .label_table import LabelTable, sidecar_dict, sidecar_path
from .slicer_seg import slicer_metadata
from .volume import Volume

PathLike = Union[str, os.PathLike]


def _format_for(path: Path, allowed: tuple) -> str:
    suffix = extension_of(path.name, allowed)
    if suffix is not None:
        return suffix
    name = path.name.lower()
    known = ", ".join(allowed)
    if name in allowed:
        raise UnsupportedFormatError(f"cannot write {path}: the file name is only an extension; give a name")
    if extension_of(name, EXTENSIONS, need_stem=False):
        raise UnsupportedFormatError(f"cannot write {path}: writing this format is not supported (use {known})")
    raise UnsupportedFormatError(f"cannot write {path}: unknown extension; use one of {known}")


def _unique_mhd_data_file(path: Path, tmp: Path) -> None:
    """Give the staged ``.mhd``/``.nhdr``'s data file a name no earlier write used.

    The header is then replaced in one atomic step after its data file is in place, so
    at every moment the header on disk references a complete data file (with a fixed
    name, a crash between the two moves would pair the old header with new data).
    """
    name = detached_data_file(tmp)
    if name is None:
        return
    data = tmp.parent / name
    stem, _, ext = name.partition(".")
    unique = f"{stem}.{uuid.uuid4().hex[:8]}.{ext}" if ext else f"{stem}.{uuid.uuid4().hex[:8]}"
    os.replace(data, tmp.parent / unique)
    text = tmp.read_text(encoding="latin-1")
    tmp.write_text(DATA_FILE_LINE.sub(lambda m: m.group(1) + unique, text, count=1), encoding="latin-1")


def _write_sitk(image, path: Path, tmp: Path, suffix: str) -> None:
    write_image(image, path, tmp, compress=suffix != ".nii")
    if suffix in DETACHED and path.is_file():
        # Replacing an existing pair: never overwrite the data file its header uses.
        _unique_mhd_data_file(path, tmp)


@contextlib.contextmanager
def _replacing(path: Path):
    """Atomic write of ``path``; afterwards remove a MetaImage data file it no longer uses."""
    old_data = detached_data_file(path) if path.name.lower().endswith(DETACHED) and path.is_file() else None
    with atomic_write(path) as tmp:
        yield tmp
    stem = path.name.rsplit(".", 1)[0]
    # Only a data file of this header's own name family is ours to remove.
    if old_data and old_data.startswith(stem + ".") and detached_data_file(path) != old_data:
        try:
            (path.parent / old_data).unlink()
        except OSError:
            pass  # a stale data file is harmless; the header no longer points at it


def write_volume(volume: Volume, path: PathLike) -> Path:
    """Write an image volume with its exact geometry (atomically).

    Parameters
    ----------
    volume : Volume
        The image; its dtype is kept (booleans become uint8).
    path : path-like
        ``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr``, ``.mha`` or ``.mhd``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    UnsupportedFormatError
        Unknown or read-only extension (e.g. DICOM, ``.seg.nrrd``: use
        :func:`write_labels`).
    ImageReadError
        The file could not be written (folder not writable, disk full); any old
        file at ``path`` is left as it was.
    """
    path = Path(path)
    if path.name.lower().endswith(".seg.nrrd"):
        raise UnsupportedFormatError(f"cannot write {path}: .seg.nrrd holds segmentations; use write_labels")
    suffix = _format_for(path, WRITABLE)
    arr = volume.array
    if arr.dtype.kind == "c":
        raise InvalidInputError(f"cannot write {path}: complex voxels are not supported")
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)  # no file format here stores half floats
    image = volume.to_sitk(arr)
    if volume.modality and suffix not in (".nii", ".nii.gz"):
        image.SetMetaData("medseg_modality", str(volume.modality))
    with _replacing(path) as tmp:
        _write_sitk(image, path, tmp, suffix)
    return path


def write_labels(labels: Volume, path: PathLike, table: Optional[LabelTable] = None) -> Path:
    """Write a label map with its exact geometry plus a JSON sidecar (atomically).

    Parameters
    ----------
    labels : Volume
        Integer label map (0 = background), on the grid of its image.
    path : path-like
        ``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``, or ``.seg.nrrd``
        (a 3D Slicer segmentation with named, coloured segments).
    table : LabelTable, optional
        Names and colours; default: ids present named ``label <id>``.

    Returns
    -------
    pathlib.Path
        ``path``. The sidecar is written to :func:`sidecar_path` (``path`` with its
        image extension replaced by ``.json``).

    Raises
    ------
    InvalidInputError
        Non-integer or negative labels.
    UnsupportedFormatError, ImageReadError
        As :func:`write_volume`.
    """
    path = Path(path)
    suffix = _format_for(path, WRITABLE_LABELS)
    array = to_label_array(labels.array, what=f"labels for {path}")
    if table is None:
        table = LabelTable.from_ids(present_ids(array))
    image = labels.to_sitk(array)
    if suffix == ".seg.nrrd":
        for key, value in slicer_metadata(array, table).items():
            image.SetMetaData(key, value)
    side = sidecar_path(path)
    doc = sidecar_dict(table, labels.geometry_dict())
    with _replacing(path) as tmp:
        _write_sitk(image, path, tmp, suffix)
        # The sidecar is staged beside the image and moved in with it.
        (tmp.parent / side.name).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path
