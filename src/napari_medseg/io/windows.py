"""Display windows (CT level/width, MR percentile windows), default contrast limits, modality.

A CT window is ``(level, width)`` in Hounsfield units; napari wants contrast limits
``(level - width / 2, level + width / 2)``. Presets follow common radiology practice;
"full range" spans the data's minimum to maximum.

MR intensities have no physical unit and their scale changes from scan to scan, so MR
windows are percentile ranges of the image itself (:data:`MR_PRESETS`); HU presets are not
offered for MR. :func:`image_modality` says what an image is: the modality the user set
(``metadata["medseg_modality"]``), else the one the file states (DICOM ``Modality``, a
NRRD/MetaImage header key or a JSON sidecar, read by :mod:`.readers`), else what the
intensity distribution shows (:func:`infer_modality_from_values`).
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

#: MR windows: name -> (low, high) percentiles of the image's finite voxels. None: min..max.
MR_PRESETS = {
    "robust (1-99 %)": (1.0, 99.0),
    "wide (0.5-99.5 %)": (0.5, 99.5),
    "bright (50-99.5 %)": (50.0, 99.5),
    "dark (0-70 %)": (0.0, 70.0),
    "full range": None,
}
DEFAULT_MR_PRESET = "wide (0.5-99.5 %)"

#: Values a user may give as a modality override (upper case; "auto": from the file/values).
MODALITY_CHOICES = ("auto", "CT", "MR")


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


def percentile_limits(array: np.ndarray, low: float, high: float) -> tuple:
    """``(low, high)`` percentiles of the finite voxels (a sub-sample), a usable range always."""
    sample = _sample(np.asarray(array)).astype(np.float64, copy=False)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(sample, [low, high]))
    if hi <= lo:
        lo, hi = data_range(array)
    return (lo, hi)


def infer_modality_from_values(array: np.ndarray) -> Optional[str]:
    """"CT" for Hounsfield-like values, "MR" for a non-negative continuous image, else None.

    A label map (few distinct whole values) is neither. Used when the file states no
    modality (NIfTI has no field for it).
    """
    arr = np.asarray(array)
    if arr.dtype.kind not in "iuf" or arr.size == 0:
        return None
    if looks_like_hu(arr):
        return "CT"
    sample = _sample(arr).astype(np.float64, copy=False)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return None
    if float(np.percentile(sample, 1.0)) < 0:
        return None  # signed values that are not HU: a map or a processed image
    whole = bool(np.all(sample == np.round(sample)))
    if whole and np.unique(sample).size <= 256:
        return None  # a label map or a mask
    return "MR"


def image_modality(volume) -> Optional[str]:
    """The modality of a Volume: the user's override, the file's statement, else the values.

    Parameters
    ----------
    volume : Volume
        Its ``metadata["medseg_modality"]`` (set by the user: "CT", "MR" or "auto") wins,
        then ``volume.modality`` (DICOM tag, header key or sidecar), then
        :func:`infer_modality_from_values`.

    Returns
    -------
    str or None
        "CT", "MR", another DICOM modality as stated (e.g. "PT"), or None when unknown.
    """
    meta = volume.metadata if isinstance(getattr(volume, "metadata", None), dict) else {}
    override = str(meta.get("medseg_modality") or "").strip().upper()
    if override and override != "AUTO":
        return "MR" if override == "MRI" else override
    stated = str(volume.modality or "").strip().upper()
    if stated:
        return "MR" if stated == "MRI" else stated
    return infer_modality_from_values(volume.array)


def presets_for(modality: Optional[str]) -> list:
    """Preset names to offer: HU windows for CT, percentile windows for MR, both if unknown."""
    mod = (modality or "").upper()
    if mod == "CT":
        return list(PRESETS)
    if mod:
        return list(MR_PRESETS)
    return [n for n in PRESETS if n != "full range"] + list(MR_PRESETS)


def intensity_unit(modality: Optional[str]) -> str:
    """"HU" for CT, "intensity" for anything else (MR values have no physical unit)."""
    return "HU" if (modality or "").upper() == "CT" else "intensity"


def preset_contrast_limits(name: str, array: Optional[np.ndarray] = None,
                           modality: Optional[str] = None) -> tuple:
    """Contrast limits of preset ``name`` ("full range" and MR presets need ``array``).

    Raises
    ------
    InvalidInputError
        Unknown preset, a percentile preset without data, or an HU preset for an MR image
        (``modality == "MR"``): HU windows mean nothing on MR intensities.
    """
    key = name.strip().lower()
    if key in MR_PRESETS:
        if array is None:
            raise InvalidInputError(f"the {name!r} window needs the image data")
        window = MR_PRESETS[key]
        return data_range(array) if window is None else percentile_limits(array, *window)
    if key in PRESETS and PRESETS[key] is not None and (modality or "").upper() == "MR":
        raise InvalidInputError(
            f"the {name!r} window is in Hounsfield units and this image is MR, whose intensities "
            "have no fixed scale: use an MR window (" + ", ".join(MR_PRESETS) + ")")
    if key not in PRESETS:
        raise InvalidInputError(f"unknown window preset {name!r}; choose one of "
                                f"{', '.join(list(PRESETS) + list(MR_PRESETS))}")
    window = PRESETS[key]
    if window is None:
        if array is None:
            raise InvalidInputError("the 'full range' window needs the image data")
        return data_range(array)
    return window_to_contrast_limits(*window)


def default_contrast_limits(array: np.ndarray, modality: Optional[str] = None) -> tuple:
    """Contrast limits to show ``array`` with first.

    CT (``modality == "CT"``, or HU-like values) gets the soft-tissue window
    W400/L40; anything else (MR included) the 0.5-99.5 percentile range
    (:data:`DEFAULT_MR_PRESET`, robust to hot spots and bias fields).
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
