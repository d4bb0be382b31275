"""Threshold painting: restrict an edit to an intensity (HU) range of the image."""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import GeometryMismatchError, InvalidInputError
from ._common import check_label_id, check_labels, plane, result_dtype


def _check_range(low: float, high: float) -> tuple:
    try:
        lo, hi = float(low), float(high)
    except (TypeError, ValueError):
        raise InvalidInputError(f"the intensity range needs two numbers, got {low!r}, {high!r}") from None
    if np.isnan(lo) or np.isnan(hi) or lo > hi:
        raise InvalidInputError(
            f"the intensity range is empty or invalid: low {low!r} must be <= high {high!r}"
        )
    return lo, hi


def _check_image(image, shape) -> np.ndarray:
    img = np.asarray(getattr(image, "array", image))
    if img.shape != tuple(shape):
        raise GeometryMismatchError(
            f"the image has shape {img.shape} but the label map has {tuple(shape)} (z, y, x); "
            "threshold painting needs the image the labels were drawn on"
        )
    if not (np.issubdtype(img.dtype, np.integer) or np.issubdtype(img.dtype, np.floating)):
        raise InvalidInputError(f"the image must be numeric, got dtype {img.dtype}")
    return img


def intensity_mask(image, low: float, high: float) -> np.ndarray:
    """Boolean mask of voxels with ``low <= value <= high`` (NaN voxels are outside)."""
    lo, hi = _check_range(low, high)
    img = np.asarray(getattr(image, "array", image))
    return (img >= lo) & (img <= hi)


def restrict_edit(before: np.ndarray, after: np.ndarray, image, low: float, high: float) -> np.ndarray:
    """Keep only the changes of an edit that fall inside an intensity range.

    Any editing operation becomes a "threshold-painted" one:
    ``restrict_edit(labels, grow(labels, sp, 5), ct, -100, 200)`` grows only into
    soft tissue.

    Parameters
    ----------
    before, after : numpy.ndarray
        The label map before and after an edit (same shape).
    image : numpy.ndarray or Volume
        The intensity image on the same grid (HU for CT).
    low, high : float
        Inclusive range.

    Returns
    -------
    numpy.ndarray
        ``after`` where the image is in range, ``before`` elsewhere (a new array).
    """
    b = check_labels(before, "label map before the edit")
    a = check_labels(after, "label map after the edit")
    if a.shape != b.shape:
        raise GeometryMismatchError(f"the edited map has shape {a.shape}, the original {b.shape}")
    img = _check_image(image, b.shape)
    keep = intensity_mask(img, low, high)
    out = b.astype(np.result_type(a.dtype, b.dtype), copy=True)
    changed = (a != b) & keep
    out[changed] = a[changed]
    return out


def paint_mask(labels: np.ndarray, mask: np.ndarray, label: int, *, image=None,
               low: Optional[float] = None, high: Optional[float] = None,
               overwrite: bool = True, axis: Optional[int] = None,
               index: Optional[int] = None) -> np.ndarray:
    """Paint ``label`` into the voxels of ``mask``, optionally only where the image is in range.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer label map (z, y, x). Never modified.
    mask : numpy.ndarray of bool
        Voxels to paint (a brush stroke, a sphere, a whole slice...).
    label : int
        Id to paint; 0 erases.
    image, low, high
        When given, only voxels with ``low <= image <= high`` are painted.
    overwrite : bool
        Paint over other labels (default) or only over background.
    axis, index : int, optional
        Limit painting to one slice.

    Returns
    -------
    numpy.ndarray
        A new label map.
    """
    arr = check_labels(labels)
    if label != 0:
        label = check_label_id(label)
    m = np.asarray(mask)
    if m.shape != arr.shape or m.dtype != np.bool_:
        raise InvalidInputError(
            f"the paint mask must be boolean with the label map's shape {arr.shape}, "
            f"got {m.dtype} {m.shape}"
        )
    if image is not None:
        if low is None or high is None:
            raise InvalidInputError("threshold painting needs both low and high")
        m = m & intensity_mask(_check_image(image, arr.shape), low, high)
    key = plane(axis, index, arr.shape)
    if key is not None:
        limited = np.zeros_like(m)
        limited[key] = m[key]
        m = limited
    if not overwrite:
        m = m & (arr == 0)
    out = arr.astype(result_dtype(arr, int(label)), copy=True)
    out[m] = label
    return out


def threshold_fill(labels: np.ndarray, image, low: float, high: float, label: int, *,
                   region: Optional[np.ndarray] = None, overwrite: bool = False,
                   axis: Optional[int] = None, index: Optional[int] = None) -> np.ndarray:
    """Set ``label`` wherever the image is in ``[low, high]`` (within ``region`` if given).

    3D Slicer's Threshold effect: e.g. bone ``(200, 3000)`` or lung ``(-1000, -400)``.
    Only background is painted unless ``overwrite``.
    """
    arr = check_labels(labels)
    img = _check_image(image, arr.shape)
    mask = np.ones(arr.shape, dtype=bool) if region is None else np.asarray(region)
    return paint_mask(arr, mask, label, image=img, low=low, high=high,
                      overwrite=overwrite, axis=axis, index=index)
