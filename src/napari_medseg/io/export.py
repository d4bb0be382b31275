"""Export a label map in the format its file name asks for.

=====================  ==========================  =====================================
extension              format                      written by
=====================  ==========================  =====================================
``.nii.gz`` ``.nii``   NIfTI + JSON names sidecar  :func:`~napari_medseg.io.write_labels`
``.nrrd`` ``.nhdr``    NRRD + JSON names sidecar   :func:`~napari_medseg.io.write_labels`
``.mha`` ``.mhd``      MetaImage + JSON sidecar    :func:`~napari_medseg.io.write_labels`
``.seg.nrrd``          3D Slicer segmentation      :func:`~napari_medseg.io.slicer_seg.write_seg_nrrd`
``.dcm``               DICOM-SEG                   :func:`~napari_medseg.io.dicom_seg.write_dicom_seg`
=====================  ==========================  =====================================

Every writer is atomic: a failed export leaves any existing file untouched.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..errors import InvalidInputError, UnsupportedFormatError
from .dicom_seg import write_dicom_seg
from .formats import WRITABLE, extension_of
from .label_table import LabelTable
from .readers import read_labels
from .slicer_seg import write_seg_nrrd
from .volume import Volume
from .writers import write_labels

#: Formats offered by the Export widget: display name -> file extension.
EXPORT_FORMATS = {
    "NIfTI (.nii.gz)": ".nii.gz",
    "NRRD (.nrrd)": ".nrrd",
    "MetaImage (.mha)": ".mha",
    "3D Slicer segmentation (.seg.nrrd)": ".seg.nrrd",
    "DICOM-SEG (.dcm)": ".dcm",
    "DICOM-SEG label map (.dcm)": ".dcm",
}

#: DICOM-SEG flavour of each DICOM entry of :data:`EXPORT_FORMATS`: ``"binary"`` (one frame
#: per segment and slice, read by every SEG consumer) or ``"labelmap"`` (Label Map
#: Segmentation Storage, DICOM 2024+: one frame per slice holding the ids; smaller, newer)
DICOM_SEG_TYPES = {"DICOM-SEG (.dcm)": "binary", "DICOM-SEG label map (.dcm)": "labelmap"}

def format_of(path: Union[str, os.PathLike]) -> str:
    """The export format key of ``path``: ``"seg.nrrd"``, ``"dicom-seg"`` or ``"image"``.

    Raises
    ------
    UnsupportedFormatError
        For any other extension (the message lists the supported ones).
    """
    ext = extension_of(path, (".seg.nrrd", ".dcm") + WRITABLE)
    if ext == ".seg.nrrd":
        return "seg.nrrd"
    if ext == ".dcm":
        return "dicom-seg"
    if ext is not None:
        return "image"
    raise UnsupportedFormatError(
        f"cannot export labels to {path}: unknown extension; use one of "
        + ", ".join(EXTENSIONS_HELP)
    )


#: The extensions an export accepts, as error messages list them.
EXTENSIONS_HELP = WRITABLE + (".seg.nrrd", ".dcm (DICOM-SEG)")


def is_dicom_reference(reference: Optional[Volume]) -> bool:
    """Whether ``reference`` came from a DICOM series (DICOM-SEG export possible)."""
    return bool(reference is not None and ((reference.metadata or {}).get("dicom") or {}).get("files"))


def export_labels(labels: Union[Volume, np.ndarray], table: Optional[LabelTable],
                  path: Union[str, os.PathLike], reference: Optional[Volume] = None, *,
                  dicom_seg_type: str = "binary") -> Path:
    """Write ``labels`` to ``path``, choosing the writer from the extension.

    Parameters
    ----------
    labels : Volume or numpy.ndarray
        The label map. A bare array takes its geometry from ``reference``.
    table : LabelTable, optional
        Names and colours (default: ids present named ``label <id>``).
    path : path-like
        Output file; see the module table for extensions.
    reference : Volume, optional
        The image the labels were drawn on: checked to share the labels' grid, and
        for DICOM-SEG the source of the referenced DICOM series.
    dicom_seg_type : {"binary", "labelmap"}
        For ``.dcm``: a binary SEG (every consumer reads it) or a LABELMAP SEG (DICOM
        2024+); see :data:`DICOM_SEG_TYPES`. Anything but ``"binary"`` for another
        extension is refused.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    UnsupportedFormatError
        Unknown extension.
    GeometryMismatchError
        ``labels`` and ``reference`` are not on the same voxel grid.
    InvalidInputError
        Non-integer labels; DICOM-SEG without a DICOM reference image.
    """
    kind = format_of(path)
    if not isinstance(labels, Volume):
        if reference is None:
            raise InvalidInputError("a bare label array needs a reference image for its geometry")
        labels = reference.with_array(np.asarray(labels), metadata={})
    elif reference is not None:
        reference.check_same_grid(labels, "labels")
    arr = labels.array
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInputError(f"labels must hold integer ids, got dtype {arr.dtype}")
    path = Path(path)
    if dicom_seg_type != "binary" and kind != "dicom-seg":
        raise InvalidInputError(
            f"a {dicom_seg_type} DICOM-SEG needs a .dcm output, not {path.name}")
    if kind == "seg.nrrd":
        return write_seg_nrrd(labels, path, table)
    if kind == "dicom-seg":
        if not is_dicom_reference(reference):
            raise InvalidInputError(
                f"cannot write DICOM-SEG {path}: it must reference the DICOM series the labels were "
                "drawn on; give that image (opened from its DICOM folder) as the reference"
            )
        return write_dicom_seg(labels, table, reference, path, segmentation_type=dicom_seg_type)
    return write_labels(labels, path, table)


def read_labels_any(path: Union[str, os.PathLike], reference: Optional[Volume] = None) -> tuple:
    """Read labels from any format :func:`export_labels` writes, DICOM-SEG included.

    The same as :func:`~napari_medseg.io.readers.read_labels` (which reads DICOM-SEG too).
    Returns ``(labels Volume, LabelTable)``; a DICOM-SEG is placed on ``reference``'s grid
    when given.
    """
    return read_labels(path, reference=reference)
