"""Label arrays as files store them: smallest unsigned dtype, ids present, validation.

Low in :mod:`napari_medseg.io` (imports only the errors): readers, writers, the Slicer and
DICOM-SEG formats and the layer tuples all use these three functions. :func:`fingerprint`
(a digest of any array's content) lives here too, low enough for every layer that caches
work per array (autosave, statistics, the bias-field cache).
"""

from __future__ import annotations

import hashlib

import numpy as np

from .._ndimage import label_boxes

from ..errors import InvalidInputError


def label_dtype_for(max_id: int) -> np.dtype:
    """Smallest unsigned integer dtype that holds ids up to ``max_id``."""
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if max_id <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise InvalidInputError(f"label id {max_id} is too large")


def present_ids(array: np.ndarray) -> list:
    """Sorted non-zero values present in a label array.

    Small unsigned dtypes: one ``bincount``; other integer maps: one
    :func:`scipy.ndimage.find_objects` pass (no sort, no int64 copy of the map) for ids
    up to 2**20; :func:`numpy.unique` beyond that and for anything else.
    """
    arr = np.asarray(array)
    if arr.size == 0:
        return []
    if arr.dtype.kind == "b" or (arr.dtype.kind == "u" and arr.dtype.itemsize <= 2):
        counts = np.bincount(arr.ravel().astype(np.intp, copy=False) if arr.dtype.kind == "b" else arr.ravel())
        return [int(i) for i in np.flatnonzero(counts) if i != 0]
    if arr.dtype.kind in "ui":
        boxes = label_boxes(arr)
        if boxes is not None:
            return list(boxes)
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


__all__ = ["label_dtype_for", "present_ids", "to_label_array"]


def fingerprint(array: np.ndarray) -> str:
    """A digest of the array's shape, dtype and bytes (change detection, cache keys)."""
    arr = np.ascontiguousarray(array)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{arr.shape}{arr.dtype.str}".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()
