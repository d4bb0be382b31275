"""A local intensity model for one click's region: follow slow intensity drift (MR).

Region growing compares every voxel with the click's intensity. On MR the same tissue
is not one intensity across the field of view: the receive coil's shading (the bias
field) scales it by +-20 % or more over tens of centimetres, far more than the noise
band the growth accepts, so a click on a long structure (the aorta, the vena cava, a
bowel loop, a fat compartment) grows only the part near the click.

:func:`follow_drift` regrows the region against a *local* reference instead: the
mean intensity of the region itself around each voxel (a normalised convolution with a
wide Gaussian, on a coarse grid), extrapolated a little beyond the region's edge. A
slow drift moves the reference with it; a neighbour of another intensity still
differs from the reference next to it by as much as it differed from the click, and
edges (the gradient term of the caller's k-map) still stop the growth. A few rounds
let the reference catch up along a long structure; growth that multiplies the region
by more than ``max_growth`` in one round is a leak and stops the rounds.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage as ndi


def local_reference(image: np.ndarray, region: np.ndarray, spacing: Sequence[float], sigma_mm: float,
                    fallback: float, cell_mm: Optional[float] = None) -> np.ndarray:
    """The region's mean intensity around every voxel (normalised convolution), float32.

    Parameters
    ----------
    image : numpy.ndarray
        Intensities (z, y, x).
    region : numpy.ndarray
        Boolean region of ``image``'s shape whose voxels give the reference.
    spacing : sequence of float
        Voxel spacing (mm, z, y, x).
    sigma_mm : float
        Width (mm) of the Gaussian that averages the region's intensities.
    fallback : float
        The reference where no region voxel is near (farther than ~3 ``sigma_mm``).
    cell_mm : float, optional
        Grid step (mm) the average is computed on (default ``sigma_mm / 3``); the result
        is interpolated back to ``image``'s grid.

    Returns
    -------
    numpy.ndarray
        float32 array of ``image``'s shape.
    """
    if image.shape != region.shape:
        raise ValueError(f"image {image.shape} and region {region.shape} differ in shape")
    if sigma_mm <= 0:
        raise ValueError(f"sigma_mm must be positive, got {sigma_mm}")
    spacing = np.asarray(spacing, dtype=float)
    cell = float(cell_mm) if cell_mm else sigma_mm / 3.0
    step = tuple(max(1, int(cell // s)) for s in spacing)
    sl = tuple(slice(f // 2, None, f) for f in step)
    # Strided samples suffice: the wide Gaussian averages the noise the stride skips.
    w = np.asarray(region[sl], dtype=np.float32)
    v = np.asarray(image[sl], dtype=np.float32) * w
    sigma = [sigma_mm / (s * f) for s, f in zip(spacing, step)]
    den = ndi.gaussian_filter(w, sigma, mode="constant")
    num = ndi.gaussian_filter(v, sigma, mode="constant")
    # Far from the region the weight vanishes and the ratio is noise: use the fallback.
    far = den < 1e-3
    ref = np.where(far, np.float32(fallback), num / np.maximum(den, np.float32(1e-12))).astype(np.float32)
    if step == (1, 1, 1):
        return ref
    zoom = [n / m for n, m in zip(image.shape, ref.shape)]
    out = ndi.zoom(ref, zoom, order=1, mode="nearest", grid_mode=True)
    if out.shape != image.shape:  # rounding of the zoomed shape
        pad = [(0, max(0, n - m)) for n, m in zip(image.shape, out.shape)]
        out = np.pad(out, pad, mode="edge")[tuple(slice(0, n) for n in image.shape)]
    return out.astype(np.float32, copy=False)


def follow_drift(image: np.ndarray, edge: np.ndarray, barrier: np.ndarray, region: np.ndarray,
                 seeds: list, k: float, sd: float, centre: float, spacing: Sequence[float], *,
                 sigma_mm: float = 8.0, rounds: int = 12, max_growth: float = 3.0,
                 min_gain: float = 0.1) -> np.ndarray:
    """Regrow ``region`` against the region's local mean intensity instead of the click's.

    Parameters
    ----------
    image : numpy.ndarray
        Smoothed intensities of the crop.
    edge : numpy.ndarray
        The edge term of the k-map (gradient in robust standard deviations per voxel);
        a voxel with ``edge > k`` is never crossed.
    barrier : numpy.ndarray
        Boolean: voxels that are never part of the region (negative clicks, outside a box).
    region : numpy.ndarray
        The region grown against the click's intensity (contains the seeds).
    seeds : list of tuple
        The click (and its relocated voxel).
    k : float
        Tolerance (robust standard deviations) the region was grown at.
    sd : float
        Robust standard deviation of the click's intensities.
    centre : float
        The click's robust intensity (reference where the region is far).
    spacing : sequence of float
        Voxel spacing (mm, z, y, x).
    sigma_mm : float
        Width of the local mean (shorter than the drift's scale, longer than the noise).
    rounds : int
        How many times the reference is re-estimated from the grown region.
    max_growth : float
        A round that multiplies the region by more than this has leaked: the previous
        region is kept.
    min_gain : float
        A drift that adds less than this fraction of the region is not one: the region
        is returned unchanged (a handful of extra voxels would only change how the
        caller's clean-up treats the region, not what it covers).

    Returns
    -------
    numpy.ndarray
        The region (``region`` itself when the drift added less than ``min_gain``).
    """
    import SimpleITK as sitk

    seed_list = [(int(s[2]), int(s[1]), int(s[0])) for s in seeds]
    n = n0 = int(np.count_nonzero(region))
    original = region
    inv = np.float32(1.0 / max(sd, 1e-12))
    for _ in range(max(0, int(rounds))):
        ref = local_reference(image, region, spacing, sigma_mm, centre)
        kmap = np.maximum(np.abs(image - ref) * inv, edge)
        kmap[barrier] = np.inf
        for s in seeds:
            kmap[tuple(s)] = 0.0
        img = sitk.GetImageFromArray(np.minimum(kmap, np.float32(1e6)).astype(np.float32, copy=False))
        grown = sitk.GetArrayFromImage(sitk.ConnectedThreshold(img, seedList=seed_list, lower=-1.0,
                                                               upper=float(k), replaceValue=1)).view(bool)
        m = int(np.count_nonzero(grown))
        if m > max_growth * n:
            break
        grown |= region  # what the click's own intensity gave stays (slow drift only adds)
        m = int(np.count_nonzero(grown))
        changed = m > n * 1.01
        region, n = grown, m
        if not changed:
            break
    return original if n < (1.0 + min_gain) * n0 else region


def drift_sigma_mm(spacing: Sequence[float]) -> float:
    """Default width (mm) of the local mean: 8 mm, at least 3 voxels of the coarsest axis."""
    return max(8.0, 3.0 * float(max(spacing)))

