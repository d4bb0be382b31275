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

from .._ndimage import bbox, grow_box, union_box


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
    box, ref = reference_in_box(image, region, spacing, sigma_mm, fallback, cell_mm)
    out = np.full(image.shape, np.float32(fallback), dtype=np.float32)
    if box is not None:
        out[box] = ref
    return out


def reference_in_box(image: np.ndarray, region: np.ndarray, spacing: Sequence[float], sigma_mm: float,
                     fallback: float, cell_mm: Optional[float] = None) -> tuple:
    """:func:`local_reference` computed only where it can differ from ``fallback``.

    The convolution is zero-padded and its kernel ends at 4 sigma (scipy's truncation),
    so farther than that from every region sample the weight is exactly 0 and the
    reference is the fallback. Only the region's bounding box grown by that reach is
    convolved and interpolated: the cost follows the region's extent, not the grid's.

    Parameters
    ----------
    image, region, spacing, sigma_mm, fallback, cell_mm
        As for :func:`local_reference`.

    Returns
    -------
    tuple
        ``(box, ref)``: a tuple of slices into ``image``'s grid and the float32
        reference inside it (``fallback`` everywhere outside); ``(None, None)`` for an
        empty region.
    """
    if image.shape != region.shape:
        raise ValueError(f"image {image.shape} and region {region.shape} differ in shape")
    if sigma_mm <= 0:
        raise ValueError(f"sigma_mm must be positive, got {sigma_mm}")
    spacing = np.asarray(spacing, dtype=float)
    cell = float(cell_mm) if cell_mm else sigma_mm / 3.0
    step = tuple(max(1, int(cell // s)) for s in spacing)
    # Strided samples suffice: the wide Gaussian averages the noise the stride skips.
    samples = region[tuple(slice(f // 2, None, f) for f in step)]
    coarse_shape = samples.shape
    sigma = [sigma_mm / (s * f) for s, f in zip(spacing, step)]
    # The kernel's reach (scipy: int(4 sigma + 0.5)) plus one sample, so the box's rim
    # holds the exact fallback that the interpolation below blends towards.
    cbox = bbox(samples, pad=[int(4.0 * sg + 0.5) + 1 for sg in sigma])
    if cbox is None:
        return None, None
    fine = tuple(slice(f // 2 + b.start * f, f // 2 + (b.stop - 1) * f + 1, f) for f, b in zip(step, cbox))
    w = np.asarray(region[fine], dtype=np.float32)
    v = np.asarray(image[fine], dtype=np.float32) * w
    den = ndi.gaussian_filter(w, sigma, mode="constant")
    num = ndi.gaussian_filter(v, sigma, mode="constant")
    # Far from the region the weight vanishes and the ratio is noise: use the fallback.
    far = den < 1e-3
    ref = np.where(far, np.float32(fallback), num / np.maximum(den, np.float32(1e-12))).astype(np.float32)
    if step == (1, 1, 1):
        return cbox, ref
    # Back to the image's grid by linear interpolation (the mapping of
    # ``ndi.zoom(order=1, mode="nearest", grid_mode=True)``), only for the voxels whose
    # two neighbouring samples lie in the box; farther ones read two fallback samples.
    box, axes = [], []
    for n_out, n_in, b in zip(image.shape, coarse_shape, cbox):
        c = np.clip((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
        i0 = np.floor(c).astype(np.intp)
        i1 = np.minimum(i0 + 1, n_in - 1)
        inside = np.flatnonzero((i0 >= b.start) & (i1 < b.stop))
        lo, hi = int(inside[0]), int(inside[-1]) + 1
        box.append(slice(lo, hi))
        axes.append((i0[lo:hi] - b.start, i1[lo:hi] - b.start, (c[lo:hi] - i0[lo:hi]).astype(np.float32)))
    out = ref
    for axis, (i0, i1, t) in enumerate(axes):
        shape = [1, 1, 1]
        shape[axis] = -1
        t = t.reshape(shape)
        a = np.take(out, i0, axis=axis)
        out = a + (np.take(out, i1, axis=axis) - a) * t
    return tuple(box), out.astype(np.float32, copy=False)


def follow_drift(image: np.ndarray, edge: np.ndarray, barrier: np.ndarray, region: np.ndarray,
                 seeds: list, k: float, sd: float, centre: float, spacing: Sequence[float], *,
                 sigma_mm: float = 8.0, rounds: int = 12, max_growth: float = 3.0,
                 min_gain: float = 0.1, cell_mm: Optional[float] = None) -> np.ndarray:
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
    cell_mm : float, optional
        Grid step (mm) of the local mean (default ``sigma_mm / 3``, see
        :func:`local_reference`).

    Returns
    -------
    numpy.ndarray
        The region (``region`` itself when the drift added less than ``min_gain``).
    """
    n = n0 = int(np.count_nonzero(region))
    original = region
    inv = np.float32(1.0 / max(sd, 1e-12))
    cap = np.float32(1e6)  # barriers: finite for SimpleITK, far above any tolerance

    def kmap_of(ref, box):
        part = np.maximum(np.abs(image[box] - ref) * inv, edge[box])
        part[barrier[box]] = cap
        return np.minimum(part, cap, out=part)

    # Far from the region the reference is the click's own intensity. Each round
    # rewrites only the box where the region's local mean applies; the region only
    # grows, so each round's box holds the previous one and the rest stays valid.
    everywhere = tuple(slice(0, n) for n in image.shape)
    kmap = kmap_of(np.float32(centre), everywhere)
    extent = bbox(region)  # the region's bounding box, kept up to date as it grows
    if extent is None:
        return original
    for _ in range(max(0, int(rounds))):
        box, ref = reference_in_box(image, region, spacing, sigma_mm, centre, cell_mm)
        if box is None:
            # a region too small for the strided samples to see: no local mean, so the
            # reference stays the click's own intensity and nothing can drift
            break
        kmap[box] = kmap_of(ref, box)
        for s in seeds:
            kmap[tuple(s)] = 0.0
        # Grow inside the reference box (and the region). Outside it the k-map is the
        # one the region was grown on, so the growth can leave the box only through
        # its faces: when it touches one, the round is redone on the whole grid.
        work = union_box(box, grow_box(extent, (1, 1, 1), image.shape))
        local = [tuple(int(c) - b.start for c, b in zip(s, work)) for s in seeds]
        grown = _connected(kmap[work], local, k)
        if _touches_inner_face(grown, work, image.shape):
            work = everywhere
            grown = _connected(kmap, seeds, k)
        m = int(np.count_nonzero(grown))
        if m > max_growth * n:
            break
        if region is original:
            region = original.copy()
        region[work] |= grown  # what the click's own intensity gave stays (slow drift only adds)
        extent = union_box(extent, _shift_box(bbox(grown), work))
        m = int(np.count_nonzero(region))
        changed = m > n * 1.01
        n = m
        if not changed:
            break
    return original if n < (1.0 + min_gain) * n0 else region


def _connected(kmap: np.ndarray, seeds: list, k: float) -> np.ndarray:
    """The connected part of ``kmap <= k`` holding ``seeds`` (boolean array)."""
    import SimpleITK as sitk

    seed_list = [(int(s[2]), int(s[1]), int(s[0])) for s in seeds]
    img = sitk.GetImageFromArray(np.ascontiguousarray(kmap))
    return sitk.GetArrayFromImage(sitk.ConnectedThreshold(img, seedList=seed_list, lower=-1.0,
                                                          upper=float(k), replaceValue=1)).view(bool)


def _touches_inner_face(mask: np.ndarray, box: tuple, shape: Sequence[int]) -> bool:
    """Whether ``mask`` (the contents of ``box``) reaches a face of ``box`` inside ``shape``."""
    for a, (b, n) in enumerate(zip(box, shape)):
        if b.start > 0 and np.take(mask, 0, axis=a).any():
            return True
        if b.stop < n and np.take(mask, mask.shape[a] - 1, axis=a).any():
            return True
    return False


def _shift_box(inner: Optional[tuple], outer: tuple) -> Optional[tuple]:
    """``inner`` (slices relative to ``outer``) as slices of the grid ``outer`` indexes."""
    if inner is None:
        return None
    return tuple(slice(o.start + i.start, o.start + i.stop) for i, o in zip(inner, outer))


def drift_sigma_mm(spacing: Sequence[float]) -> float:
    """Default width (mm) of the local mean: 8 mm, at least 3 voxels of the coarsest axis."""
    return max(8.0, 3.0 * float(max(spacing)))

