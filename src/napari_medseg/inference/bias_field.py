"""N4 bias-field correction of MR volumes, computed once per volume and cached.

MR images carry a smooth multiplicative shading from the receive coils (the *bias field*):
the same tissue is brighter near a coil than far from it. Region growing, which takes its
intensity interval from the clicked voxels, and per-label statistics both read intensities
as if a tissue had one value; the bias field breaks that. :func:`correct_bias_field`
removes it with SimpleITK's ``N4BiasFieldCorrectionImageFilter`` (Tustison et al. 2010):

1. The image is shrunk by whole-voxel factors to a fitting grid of about
   :attr:`BiasFieldSettings.fit_spacing_mm` (at most :attr:`BiasFieldSettings.max_fit_voxels`
   voxels): the field is smooth, so fitting it on the fine grid only costs time.
2. The mask is the foreground found by Otsu's threshold on the shrunk image (holes
   filled): air and the noise around the body carry no bias information.
3. N4 fits the log bias field (a B-spline) on the shrunk grid; the field is then evaluated
   on the full-resolution grid and divided out. Its mean over the foreground is removed
   first, so the corrected intensities keep the image's own scale (a tissue's mean stays
   where it was on average; statistics stay comparable with the uncorrected ones).
   The field is evaluated on the fitting grid and resampled linearly (nearest value
   beyond the fitting grid's last voxel centres): evaluating the B-spline at every voxel
   of a 512 x 512 x 300 volume costs more than the fit, and the field is smooth.

The result is a float32 :class:`~napari_medseg.io.volume.Volume` on the exact source grid
(same shape, spacing, origin, direction). It is cached in this process, keyed on the
array's content, the geometry and the settings, so a second click or a second statistics
refresh on the same volume does not recompute it; the cache holds at most
:func:`cache_limit_bytes` of corrected arrays (least recently used dropped first).

Only for MR (and other non-quantitative images): CT is refused, its Hounsfield units are
calibrated and carry no coil shading. SimpleITK is imported only when a correction runs.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from ..errors import InvalidInputError
from ..io.arrays import fingerprint
from ..io.volume import Volume
from ..progress import CancelLike, ProgressCallback, check_cancel, report

log = logging.getLogger(__name__)

#: Default memory bound of the cache of corrected volumes (bytes of float32 arrays).
DEFAULT_CACHE_BYTES = 1 << 30


@dataclass(frozen=True)
class BiasFieldSettings:
    """How N4 is run (every field is part of the cache key).

    Attributes
    ----------
    fit_spacing_mm : float
        Target spacing of the shrunk grid the field is fitted on (whole-voxel shrink
        factors per axis; an axis already coarser is not shrunk).
    max_fit_voxels : int
        Upper bound of the fitting grid's voxels (the factors grow until it fits).
    iterations : tuple of int
        Iterations per fitting level (one entry per level; each level doubles the
        B-spline's control-point resolution).
    convergence : float
        N4's convergence threshold per level.
    control_points : int
        B-spline control points per axis at the first level (>= spline order + 1).
    spline_order : int
        Order of the B-spline.
    """

    fit_spacing_mm: float = 8.0
    max_fit_voxels: int = 40_000
    iterations: tuple = (50, 50, 30)
    convergence: float = 1e-3
    control_points: int = 4
    spline_order: int = 3

    def __post_init__(self) -> None:
        if not (self.fit_spacing_mm > 0 and self.max_fit_voxels >= 1000):
            raise InvalidInputError("fit_spacing_mm must be > 0 and max_fit_voxels >= 1000")
        its = tuple(int(i) for i in self.iterations)
        if not its or min(its) < 1:
            raise InvalidInputError(f"iterations must list >= 1 iteration per level, got {self.iterations}")
        object.__setattr__(self, "iterations", its)
        if self.control_points < self.spline_order + 1:
            raise InvalidInputError(
                f"control_points ({self.control_points}) must be >= spline_order + 1 ({self.spline_order + 1})")


class _Cache:
    """Corrected arrays by key, least recently used dropped first, bounded in bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key):
        with self._lock:
            arr = self._items.get(key)
            if arr is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return arr

    def put(self, key, arr: np.ndarray) -> None:
        with self._lock:
            if arr.nbytes > self.limit:
                return  # larger than the whole budget: used once, not kept
            self._items[key] = arr
            self._items.move_to_end(key)
            self._trim()

    def _trim(self) -> None:
        while self._items and self.nbytes > self.limit:
            self._items.popitem(last=False)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0


_CACHE = _Cache(DEFAULT_CACHE_BYTES)


def cache_limit_bytes() -> int:
    """The cache's memory bound in bytes."""
    return _CACHE.limit


def set_cache_limit(nbytes: int) -> None:
    """Bound the cache of corrected volumes to ``nbytes`` (0 disables caching)."""
    if int(nbytes) < 0:
        raise InvalidInputError(f"the cache limit must be >= 0 bytes, got {nbytes}")
    with _CACHE._lock:
        _CACHE.limit = int(nbytes)
        _CACHE._trim()


def clear_cache() -> None:
    """Forget every cached correction (and the hit/miss counts)."""
    _CACHE.clear()


def cache_info() -> dict:
    """``{"entries", "bytes", "limit", "hits", "misses"}`` of the cache."""
    return {"entries": len(_CACHE), "bytes": _CACHE.nbytes, "limit": _CACHE.limit,
            "hits": _CACHE.hits, "misses": _CACHE.misses}


def _check(volume: Volume) -> None:
    from ..io.windows import image_modality

    if not isinstance(volume, Volume):
        raise InvalidInputError(f"bias-field correction needs a Volume, got {type(volume).__name__}")
    arr = volume.array
    if arr.ndim != 3 or arr.size == 0:
        raise InvalidInputError(f"bias-field correction needs a non-empty 3D volume, got shape {arr.shape}")
    if arr.dtype.kind not in "iuf":
        raise InvalidInputError(f"bias-field correction needs numeric voxels, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InvalidInputError("the volume holds NaN or infinite voxels; bias-field correction "
                                "needs finite intensities")
    if image_modality(volume) == "CT":
        raise InvalidInputError(
            "bias-field correction is for MR images; this image is CT (Hounsfield units are "
            "calibrated and have no coil shading): turn bias correction off, or set the "
            "image's modality to MR if it is one")


def _key(volume: Volume, settings: BiasFieldSettings) -> tuple:
    return (fingerprint(volume.array), tuple(volume.spacing), tuple(volume.origin),
            tuple(volume.direction), tuple(sorted(asdict(settings).items())))


def shrink_factors(shape_zyx, spacing_zyx, settings: BiasFieldSettings) -> tuple:
    """Whole-voxel shrink factors (z, y, x) of the fitting grid for this volume."""
    shape = np.asarray(shape_zyx, int)
    spacing = np.asarray(spacing_zyx, float)
    factors = np.maximum(1, np.floor(settings.fit_spacing_mm / spacing + 1e-6)).astype(int)
    factors = np.minimum(factors, shape)
    while np.prod(-(-shape // factors)) > settings.max_fit_voxels and np.any(factors < shape):
        # grow the finest axis (in mm after shrinking) first: the fitting grid stays near-isotropic
        order = np.argsort(spacing * factors)
        for ax in order:
            if factors[ax] < shape[ax]:
                factors[ax] += 1
                break
    return tuple(int(f) for f in factors)


def _fit_and_divide(volume: Volume, settings: BiasFieldSettings,
                    progress: Optional[ProgressCallback], cancel: Optional[CancelLike]) -> np.ndarray:
    """The N4 run itself (no cache): the corrected float32 array on the full grid."""
    import SimpleITK as sitk
    from scipy import ndimage as ndi

    arr = np.array(volume.array, dtype=np.float32, copy=True)  # corrected in place below: never the input
    # N4 works on log intensities: shift a signed image to be positive (MR magnitude images
    # are >= 0 already; a processed one may not be)
    low = float(arr.min())
    offset = 0.0 if low > 0 else 1.0 - low
    image = volume.to_sitk(arr + np.float32(offset) if offset else arr)
    factors_xyz = list(reversed(shrink_factors(arr.shape, volume.spacing_zyx, settings)))
    small = sitk.Shrink(image, factors_xyz)
    report(progress, 0.05, "bias field: finding the foreground")
    otsu = sitk.OtsuThresholdImageFilter()
    otsu.SetInsideValue(0)
    otsu.SetOutsideValue(1)
    otsu.SetNumberOfHistogramBins(200)
    small_mask = otsu.Execute(small)
    threshold = float(otsu.GetThreshold())
    mask_arr = ndi.binary_fill_holes(sitk.GetArrayViewFromImage(small_mask) > 0)
    if mask_arr.sum() < 64:  # no usable foreground: fit over the whole image
        mask_arr = np.ones(mask_arr.shape, dtype=bool)
    mask = sitk.GetImageFromArray(mask_arr.astype(np.uint8))
    mask.CopyInformation(small)
    check_cancel(cancel)

    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations(list(settings.iterations))
    n4.SetConvergenceThreshold(float(settings.convergence))
    n4.SetNumberOfControlPoints([int(settings.control_points)] * 3)
    n4.SetSplineOrder(int(settings.spline_order))
    aborted = []

    def on_progress():
        report(progress, 0.1 + 0.8 * float(n4.GetProgress()), "bias field: fitting (N4)")
        if cancel is not None and cancel.is_set() and not aborted:
            aborted.append(True)
            n4.Abort()

    if progress is not None or cancel is not None:
        n4.AddCommand(sitk.sitkProgressEvent, on_progress)
    try:
        n4.Execute(small, mask)
    except RuntimeError:
        if aborted:
            check_cancel(cancel)
        raise
    finally:
        n4.RemoveAllCommands()
    check_cancel(cancel)
    report(progress, 0.9, "bias field: dividing it out at full resolution")
    small_field = n4.GetLogBiasFieldAsImage(small)
    log_field = sitk.GetArrayFromImage(sitk.Resample(
        small_field, image, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32,
        True))  # nearest-neighbour extrapolation at the faces
    del image
    # the field's mean over the foreground is 0 after this: corrected values keep the image's scale
    fg = (arr + offset) > threshold
    shift = float(log_field[fg].mean()) if fg.any() else float(log_field.mean())
    out = arr  # the float32 copy made above, corrected slab by slab in place
    if offset:
        out += np.float32(offset)
    for z0 in range(0, out.shape[0], 16):
        sl = slice(z0, z0 + 16)
        out[sl] /= np.exp(log_field[sl] - np.float32(shift))
    if offset:
        out -= np.float32(offset)
    return out


def correct_bias_field(volume: Volume, settings: Optional[BiasFieldSettings] = None, *,
                       progress: Optional[ProgressCallback] = None,
                       cancel: Optional[CancelLike] = None) -> Volume:
    """``volume`` with its MR bias field divided out (N4), cached per volume.

    Parameters
    ----------
    volume : Volume
        A 3D MR (or unknown-modality) volume; CT is refused.
    settings : BiasFieldSettings, optional
        How N4 runs (default :class:`BiasFieldSettings()`).
    progress, cancel
        Progress callback and cancel event (checked before and during the fit).

    Returns
    -------
    Volume
        float32 intensities on the same grid (shape, spacing, origin, direction, modality),
        ``metadata["bias_corrected"] = "N4"``. The array is read-only: it is shared with
        the cache.

    Raises
    ------
    InvalidInputError
        Not a 3D numeric volume, non-finite voxels, or a CT image.
    """
    settings = BiasFieldSettings() if settings is None else settings
    if not isinstance(settings, BiasFieldSettings):
        raise InvalidInputError(f"settings must be BiasFieldSettings, got {type(settings).__name__}")
    _check(volume)
    key = _key(volume, settings)
    corrected = _CACHE.get(key)
    if corrected is None:
        report(progress, 0.0, "bias field: correcting (N4)")
        corrected = _fit_and_divide(volume, settings, progress, cancel)
        corrected.setflags(write=False)
        _CACHE.put(key, corrected)
    report(progress, 1.0, "bias field corrected")
    meta = dict(volume.metadata or {})
    meta["bias_corrected"] = "N4"
    return volume.with_array(corrected, metadata=meta)
