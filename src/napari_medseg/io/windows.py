"""CT display windows (level/width) and default contrast limits.

A window is ``(level, width)`` in Hounsfield units; napari wants contrast limits
``(level - width / 2, level + width / 2)``. Presets follow common radiology practice;
"full range" spans the data's minimum to maximum.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import InvalidInputError

#: name -> (level, width) in HU; None means "from the data" (full range).
PRESETS = {
    "soft tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "liver": (60.0, 160.0),
    "brain": (40.0, 80.0),
    "full range": None,
}
DEFAULT_CT_PRESET = "soft tissue"


def window_to_contrast_limits(level: float, width: float) -> tuple:
    """``(level, width)`` -> contrast limits ``(low, high)``."""
    if not np.isfinite(level) or not np.isfinite(width) or width <= 0:
        raise InvalidInputError(f"a window needs a finite level and a positive width, got L={level}, W={width}")
    return (float(level) - float(width) / 2.0, float(level) + float(width) / 2.0)


def contrast_limits_to_window(limits: tuple) -> tuple:
    """Contrast limits ``(low, high)`` -> ``(level, width)``."""
    low, high = (float(v) for v in limits)
    return ((low + high) / 2.0, high - low)


def _sample(array: np.ndarray, max_values: int = 2_000_000) -> np.ndarray:
    """A strided sub-sample (no copy of the whole volume) for statistics."""
    arr = np.asarray(array)
    step = max(1, int(np.ceil((arr.size / max_values) ** (1.0 / max(arr.ndim, 1)))))
    return arr[(slice(None, None, step),) * arr.ndim]


def data_range(array: np.ndarray) -> tuple:
    """Finite (min, max) of ``array`` (exact), ``(0, 1)`` when it has no finite value."""
    arr = np.asarray(array)
    if arr.size == 0:
        return (0.0, 1.0)
    if arr.dtype.kind == "f":
        finite = arr[np.isfinite(arr)]
        if finite.size == 0:
            return (0.0, 1.0)
        lo, hi = float(finite.min()), float(finite.max())
    else:
        lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        hi = lo + 1.0
    return (lo, hi)


def looks_like_hu(array: np.ndarray) -> bool:
    """True when values look like CT Hounsfield units (air near -1000, tissue, bone).

    Used only to choose a display window, never to set ``modality``.
    """
    arr = np.asarray(array)
    if arr.dtype.kind not in "if" or arr.size == 0:
        return False
    sample = _sample(arr).astype(np.float32, copy=False)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return False
    lo, hi = np.percentile(sample, [1, 99.5])
    return bool(-1200 <= lo <= -500 and 0 <= hi <= 4000) or bool(float(sample.min()) <= -900 and -1100 <= lo and hi >= 100)


def preset_contrast_limits(name: str, array: Optional[np.ndarray] = None) -> tuple:
    """Contrast limits of preset ``name`` ("full range" needs ``array``)."""
    key = name.strip().lower()
    if key not in PRESETS:
        raise InvalidInputError(f"unknown window preset {name!r}; choose one of {', '.join(PRESETS)}")
    window = PRESETS[key]
    if window is None:
        if array is None:
            raise InvalidInputError("the 'full range' window needs the image data")
        return data_range(array)
    return window_to_contrast_limits(*window)


def default_contrast_limits(array: np.ndarray, modality: Optional[str] = None) -> tuple:
    """Contrast limits to show ``array`` with first.

    CT (``modality == "CT"``, or HU-like values) gets the soft-tissue window
    W400/L40; anything else the 0.5-99.5 percentile range (robust to hot spots).
    """
    if (modality or "").upper() == "CT" or (modality is None and looks_like_hu(array)):
        return preset_contrast_limits(DEFAULT_CT_PRESET)
    arr = np.asarray(array)
    if arr.size == 0:
        return (0.0, 1.0)
    sample = _sample(arr).astype(np.float64, copy=False)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    if hi <= lo:
        lo, hi = data_range(arr)
    return (lo, hi)
