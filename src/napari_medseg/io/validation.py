"""Checks that a volume is usable by a model or algorithm, with messages a user can act on.

:func:`check_volume_for_model` is called by the automatic and interactive segmentation
entry points before any heavy work starts, so bad input is refused up front.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError
from .volume import Volume


def _describe(volume: Volume) -> str:
    src = volume.metadata.get("source_path") if isinstance(volume.metadata, dict) else None
    return f"the image {src}" if src else "the image"


def count_nonfinite(array: np.ndarray, chunk: int = 8) -> int:
    """Number of NaN/Inf voxels, computed slab by slab (no full-size temporary)."""
    arr = np.asarray(array)
    if arr.dtype.kind not in "fc":
        return 0
    if arr.ndim == 0:
        return int(not np.isfinite(arr))
    total = 0
    for start in range(0, arr.shape[0], chunk):
        total += int(arr.shape[0] and (~np.isfinite(arr[start:start + chunk])).sum())
    return total


def check_volume_for_model(volume: Volume, *, min_slices: int = 2, min_size: int = 2,
                           allow_nonfinite: bool = False, what: str = "model") -> None:
    """Raise :class:`InvalidInputError` when ``volume`` cannot go into ``what``.

    Parameters
    ----------
    volume : Volume
        The image to check.
    min_slices : int
        Minimum number of slices (z); a one-slice (2D) image is refused by default.
    min_size : int
        Minimum number of voxels along y and x.
    allow_nonfinite : bool
        When False (default), NaN/Inf voxels are refused (the message counts them).
    what : str
        Name of the consumer, used in messages (e.g. ``"TotalSegmentator"``).

    Raises
    ------
    InvalidInputError
        Empty, 2D/too few slices, too small in-plane, non-numeric (bool, complex,
        object) dtype, or NaN/Inf voxels. The message says what to do.
    """
    if not isinstance(volume, Volume):
        raise InvalidInputError(f"{what} needs a Volume, got {type(volume).__name__}")
    arr = volume.array
    name = _describe(volume)
    if arr.size == 0:
        raise InvalidInputError(f"{name} is empty (shape {arr.shape}); {what} needs voxels")
    if arr.dtype.kind not in "iuf":
        raise InvalidInputError(
            f"{name} has voxel type {arr.dtype}; {what} needs numbers (integer or float intensities)")
    z, y, x = arr.shape
    if z < min_slices:
        kind = "a 2D image (one slice)" if z == 1 else f"only {z} slices"
        raise InvalidInputError(
            f"{name} is {kind}; {what} works on 3D volumes of at least {min_slices} slices. "
            "Open the whole series (the DICOM folder or the 3D file), not a single slice."
        )
    if y < min_size or x < min_size:
        raise InvalidInputError(f"{name} is only {y} x {x} voxels in-plane; {what} needs at least {min_size} x {min_size}")
    if not allow_nonfinite:
        bad = count_nonfinite(arr)
        if bad:
            frac = 100.0 * bad / arr.size
            raise InvalidInputError(
                f"{name} has {bad} NaN/Inf voxel(s) ({frac:.3g}% of {arr.size}); {what} cannot use them. "
                "Replace them (e.g. with the minimum value) or fix the file."
            )
