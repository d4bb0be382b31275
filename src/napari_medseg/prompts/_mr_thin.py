"""MR: a click on a thin band of one tissue inside another (a rib in the body wall's muscle).

A rib, an intervertebral disc or a strand of fat between bowel loops is a few voxels
thick, and on MR its intensity differs from the tissue around it by only a few noise
levels (the MR-like phantom's T1: rib 250, muscle 360, noise 18). The edge-aware growth does not suit it:
the smoothing blends a three-voxel band with its neighbours, nearly every voxel of it
lies on a ramp, so the growth from the click stops after a part of the band, and the
boundary step then adds the muscle around it (a shell as large as the band: Dice 0.5).
The unsmoothed image, however, separates the two tissues voxel by voxel: half-way
between them lies three noise levels from each.

:func:`thin_band` grows the band on the unsmoothed intensities:

* the clicked tissue's value is the value cluster of the click's ball (6 mm) nearest the
  click's own value, and the *plateau* is the nearest cluster more than 4 noise levels
  from it (``_sheet``'s rule: a plateau fills a sixth of the ball); it lies on one side
  only (a band inside one tissue: a layer between a darker and a brighter tissue, the
  skin, is ``_sheet``'s);
* the band holds the voxels closer to the clicked tissue's value than to the plateau
  (the 50 % partial-volume rule; on the other side the band is as wide), connected to
  the click; a voxel more than 3 noise levels from the band's value only beside one
  within them (a partial-volume voxel lies on the band's face; a tissue valued between
  the band and the plateau, which the ball did not see, is not crossed);
* the coil's shading scales every tissue by the same slowly varying factor, so the
  thresholds follow the band's own local mean (a normalised convolution of the band's
  voxels within 2 noise levels of it, ``_drift.local_reference``). The band grows front
  by front: each round reaches at most one local-mean width (8 mm) beyond the band
  found so far, where that local mean is known, instead of running along a fixed
  threshold into a part of the image shaded differently;
* the band is thin: parts of it thicker than ``max_thickness_mm`` (an opening of the
  band with its one-voxel noise holes closed keeps them), and the band's voxels touching
  them, are another tissue of the band's value that the band touches (a bowel loop
  beside a rib) and are left out; the band runs on beside them. A click on
  such a thick part is not on a band (``None``: the caller's growth handles it);
* a round that leaves the band is stopped, and the band found before it kept: its new
  voxels are not of the band's value (their median lies more than 1.5 noise levels from
  the local mean: a neighbour that crosses the threshold only with its noise, voxel by
  voxel), or it adds more than 4 times as many voxels as any round before (a band's
  front advances by its own cross-section each round; a sheet of another tissue does
  not).

A band deeper than 2.5 voxels near the click (more than about 4 voxels across: a rib at
0.8 mm) or a band larger than ``max_volume_ml`` is no thin structure either: ``None``,
and the edge-aware growth, which is built for objects that span its smoothing and edge
stencil, handles it.

:func:`band_correction` is a corrective click on such a band's boundary (a partial-volume
voxel, the neighbour's noise tail): it moves the half-way cut at the click to the clicked
voxel's value, locally, and only in the click's direction.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage as ndi

from .._ndimage import (ball_offsets, bbox, components_at, dilate, erode, face_dilate, grow_box, stepped_ball,
                        values_at)
from ._drift import drift_sigma_mm, local_reference
from ._sheet import PLATEAU_NOISE, _nearest_plateau

#: new voxels of a round whose median lies farther than this many noise levels from the
#: band's local mean are another tissue's noise tail, not the band
NEW_VOXEL_NOISE = 1.5
#: voxels within this many noise levels of the band's local mean are of its own value;
#: those farther (but within the thresholds) join only beside them
OWN_VALUE_NOISE = 3.0
#: a round adding more than this many times the voxels of any earlier round has left the band
MAX_FRONT_GROWTH = 4.0
#: a corrective click within this many noise levels of the band's value is on the band's
#: own tissue, not on its boundary
SAME_TISSUE_NOISE = 1.5
#: the band's local mean counts only its voxels within this many noise levels of it
#: (partial-volume voxels at the band's faces would pull it towards the neighbour)
REFERENCE_NOISE = 2.0


def band_thresholds(values: np.ndarray, click_value: float, noise: float) -> Optional[tuple]:
    """``(value, lower, upper)`` of the clicked tissue's band in a ball's ``values``, or ``None``.

    ``value`` is the cluster of ``values`` nearest ``click_value``. The band lies inside
    one other tissue: the nearest plateau (a cluster more than 4 noise levels away) is
    either above or below ``value``, not both; the threshold on its side lies half-way
    to it, the other one as far from ``value`` on the other side. ``None`` when the
    clicked tissue cannot be found, no plateau is near, or plateaus lie on both sides
    (a layer between two tissues, such as the skin between air and fat: ``_sheet``).
    """
    values = np.asarray(values, dtype=np.float64)
    noise = float(max(noise, 1e-6))
    min_count = max(5, int(values.size / 6))
    order = values[np.argsort(np.abs(values - click_value), kind="stable")]
    v = _nearest_plateau(order, noise, min_count)
    if v is None:
        return None
    far = PLATEAU_NOISE * noise
    p_lo = _nearest_plateau(-np.sort(-values[values < v - far]), noise, min_count)
    p_hi = _nearest_plateau(np.sort(values[values > v + far]), noise, min_count)
    if (p_lo is None) == (p_hi is None):
        # No other tissue near, or a layer between a darker and a brighter one (the
        # skin between air and fat: ``_sheet``'s case), not a band inside one tissue.
        return None
    if p_hi is not None:
        upper = 0.5 * (v + p_hi)
        return v, v - (upper - v), upper
    lower = 0.5 * (v + p_lo)
    return v, lower, v + (v - lower)


def thin_band(image: np.ndarray, spacing: Sequence[float], click: Sequence[int], noise: float, *,
              negatives: Sequence[Sequence[int]] = (), negative_radius_mm: float = 3.0,
              radius_mm: float = 6.0, max_thickness_mm: float = 8.0, max_volume_ml: float = 50.0,
              rounds: int = 40, follow_shading: bool = True, max_depth_voxels: float = 2.5) -> Optional[tuple]:
    """The thin band of the clicked tissue, or ``None`` when the click is not on one.

    Parameters
    ----------
    image : numpy.ndarray
        Unsmoothed intensities (z, y, x), the whole volume (only the band's neighbourhood
        is read).
    spacing : sequence of float
        Voxel spacing (mm, z, y, x).
    click : sequence of int
        The click (z, y, x).
    noise : float
        Standard deviation of the noise of ``image`` near the click.
    negatives : sequence of sequence of int
        Negative clicks: a ball of ``negative_radius_mm`` around each is never in the band.
    negative_radius_mm : float
        Radius of the negative clicks' barrier balls.
    radius_mm : float
        Radius of the click's neighbourhood whose value clusters give the thresholds.
    max_thickness_mm : float
        Parts of the band thicker than this are another tissue, not the band.
    max_volume_ml : float
        A band larger than this is not a thin structure (``None``).
    rounds : int
        At most this many fronts of one local-mean width are grown.
    follow_shading : bool
        Whether the thresholds follow the band's local mean (False: the click's
        thresholds everywhere).
    max_depth_voxels : float
        A band deeper than this many voxels within ``radius_mm`` of the click (more than
        about twice as many voxels across) is no thin band (``None``).

    Returns
    -------
    tuple or None
        ``(box, mask)``: a tuple of slices into ``image`` and the band's boolean mask
        inside it.
    """
    spacing = np.asarray(spacing, dtype=float)
    shape = image.shape
    click = tuple(int(c) for c in click)
    if not all(0 <= c < n for c, n in zip(click, shape)):
        raise ValueError(f"click {click} lies outside the image {shape}")
    noise = float(max(noise, 1e-6))
    values = values_at(image, click, ball_offsets(radius_mm, spacing))
    if values.size < 8:
        return None
    found = band_thresholds(values, float(image[click]), noise)
    if found is None:
        return None
    v, lower, upper = found
    lo_ratio, hi_ratio = np.float32(lower / v), np.float32(upper / v)
    footprint = stepped_ball(max(0.5 * max_thickness_mm, 1.01 * float(spacing.min())), spacing)
    sigma = drift_sigma_mm(spacing)
    step = [max(1, int(round(sigma / s))) for s in spacing]
    neg_ball = ball_offsets(negative_radius_mm, spacing)
    max_voxels = max_volume_ml * 1000.0 / float(np.prod(spacing))
    box = tuple(slice(c, c + 1) for c in click)
    band = np.ones((1, 1, 1), dtype=bool)  # the band inside ``box``
    fronts: list = []
    for k in range(max(1, int(rounds))):
        # One more front: the band's box grown by one local-mean width.
        new_box = grow_box(box, step, shape)
        sub = np.asarray(image[new_box], dtype=np.float32)
        prev = np.zeros(sub.shape, dtype=bool)
        prev[tuple(slice(b.start - n.start, b.stop - n.start) for b, n in zip(box, new_box))] = band
        local = tuple(c - n.start for c, n in zip(click, new_box))
        if k == 0 or not follow_shading:
            ref = np.float32(v)
        else:
            # The coil's shading: the band's own local mean, from its voxels near it.
            ref = local_reference(sub, prev, spacing, sigma, fallback=v)
            core = prev & (np.abs(sub - ref) <= np.float32(REFERENCE_NOISE * noise))
            if core.any():
                ref = local_reference(sub, core, spacing, sigma, fallback=v)
        grown = (sub > lo_ratio * ref) & (sub < hi_ratio * ref)
        # Voxels of the band's own value, and partial-volume voxels only beside them: a
        # tissue valued between the band and its plateau that the click's ball did not
        # see (fat between a T2-bright disc and the vertebra) is no partial volume, and
        # the band does not run through it.
        own = grown & (np.abs(sub - ref) <= np.float32(OWN_VALUE_NOISE * noise))
        grown &= face_dilate(own)
        for n in negatives:
            _clear_ball(grown, tuple(int(round(c)) - b.start for c, b in zip(n, new_box)), neg_ball)
        grown |= prev
        grown[local] = True
        grown = components_at(grown, [local])
        # Thick parts (and the band's voxels touching them) are a thick tissue of the
        # band's value; the band itself may run on beside them (a rib along a bowel loop).
        # (Found after closing the band's one-voxel holes: a tissue near one of the
        # band's thresholds has its noise tail outside the band, and holes that
        # scattered keep the opening from finding it thick.)
        closed = ~face_dilate(~face_dilate(grown)) | grown
        core = erode(closed, footprint, border_value=1)
        thick = dilate(core, footprint) & grown if core.any() else np.zeros_like(grown)
        if thick[local]:
            return None
        if k == 0 and _depth_voxels(closed, local, spacing, radius_mm) > max_depth_voxels:
            # Thicker than a few voxels, the band is an object the edge-aware growth
            # handles (the smoothing and the edge stencil no longer span it).
            return None
        if thick.any():
            grown &= ~face_dilate(thick)
            grown[local] = True
            grown = components_at(grown, [local])
        new = grown & ~prev
        n_new = int(np.count_nonzero(new))
        if k > 0 and n_new:
            ref_new = ref[new] if np.ndim(ref) else ref
            if np.median(np.abs(sub[new] - ref_new)) > NEW_VOXEL_NOISE * noise:
                break  # the new voxels are a neighbour's noise tail
            if len(fronts) > 1 and n_new > MAX_FRONT_GROWTH * max(fronts):
                break  # the front widened into a sheet of another tissue
        box, band = new_box, grown
        if np.count_nonzero(band) > max_voxels:
            return None
        if k > 0 and n_new <= 0.01 * np.count_nonzero(band):
            break
        fronts.append(max(n_new, 1))
    tight = bbox(band)
    if tight is None or np.count_nonzero(band) < 8:
        return None
    return (tuple(slice(b.start + t.start, b.start + t.stop) for b, t in zip(box, tight)), band[tight])


def _depth_voxels(mask: np.ndarray, point: tuple, spacing: np.ndarray, radius_mm: float) -> float:
    """How deep (voxels to the nearest voxel outside) ``mask`` is within ``radius_mm`` of ``point``.

    The deepest voxel near the click, not the click's own depth: a click on the rim of
    a thick object (a corrective click in its missed partial-volume shell) is shallow
    itself.
    """
    grid = np.ogrid[tuple(slice(-c, n - c) for c, n in zip(point, mask.shape))]
    near = sum((g * s) ** 2 for g, s in zip(grid, spacing)) <= radius_mm ** 2
    return float(ndi.distance_transform_edt(mask)[near & mask].max(initial=0.0))


def _clear_ball(mask: np.ndarray, centre: tuple, offsets: np.ndarray) -> None:
    pts = np.asarray(centre)[None, :] + offsets
    keep = np.all((pts >= 0) & (pts < np.asarray(mask.shape)[None, :]), axis=1)
    pts = pts[keep]
    mask[pts[:, 0], pts[:, 1], pts[:, 2]] = False


def band_correction(image: np.ndarray, mask: np.ndarray, spacing: Sequence[float], click: Sequence[int],
                    positive: bool, noise: float, *, radius_mm: float = 6.0,
                    negatives: Sequence[Sequence[int]] = (), negative_radius_mm: float = 3.0) -> Optional[tuple]:
    """A corrective click on a thin band's boundary: the voxels it moves across, or ``None``.

    The band was cut half-way between its tissue and the tissue around it; a corrective
    click on a partial-volume voxel or on the noise tail of the neighbour says where
    the boundary lies at that spot. With ``b`` the band's value near the click (the
    median of the mask within twice ``radius_mm``) and ``c`` the clicked voxel's value:

    * a positive click adds the voxels within ``radius_mm`` at least as like the band as
      the click (``|value - b| <= |c - b|``), connected to it;
    * a negative click removes the mask's voxels within ``radius_mm`` at least as unlike
      the band as the click on the click's side (``(value - b) * sign(c - b) >= |c - b|``),
      connected to it.

    A click within 1.5 noise levels of ``b`` (on the band's own tissue: another part of
    the band, or a neighbour of the band's value) is no boundary correction: ``None``,
    and the caller corrects as usual.

    Parameters
    ----------
    image : numpy.ndarray
        Unsmoothed intensities (z, y, x).
    mask : numpy.ndarray
        The current object (boolean, ``image``'s shape).
    spacing : sequence of float
        Voxel spacing (mm, z, y, x).
    click : sequence of int
        The corrective click (z, y, x): outside ``mask`` when ``positive``, inside otherwise.
    positive : bool
        Whether the click adds (True) or removes (False).
    noise : float
        Standard deviation of the noise of ``image`` near the click.
    radius_mm : float
        The correction's reach around the click.
    negatives : sequence of sequence of int
        Negative clicks: a positive correction adds nothing within ``negative_radius_mm``
        of them.
    negative_radius_mm : float
        Radius of the negative clicks' barrier balls.

    Returns
    -------
    tuple or None
        ``(box, voxels)``: a tuple of slices into ``image`` and the boolean voxels inside
        it that the click adds (positive) or removes (negative).
    """
    spacing = np.asarray(spacing, dtype=float)
    click = tuple(int(c) for c in click)
    # The band's value from twice the reach: a click in a small leak off the band's
    # side has few of the band's voxels within the reach itself.
    reach = [int(2.0 * radius_mm // s) for s in spacing]
    box = tuple(slice(max(0, c - r), min(n, c + r + 1)) for c, r, n in zip(click, reach, image.shape))
    local = tuple(c - b.start for c, b in zip(click, box))
    sub = np.asarray(image[box], dtype=np.float32)
    grid = np.ogrid[tuple(slice(b.start - c, b.stop - c) for b, c in zip(box, click))]
    dist2 = sum((g * s) ** 2 for g, s in zip(grid, spacing))
    own = np.asarray(mask[box], dtype=bool)
    near = own & (dist2 <= (2.0 * radius_mm) ** 2)
    if np.count_nonzero(near) < 8:
        return None
    b = np.float32(np.median(sub[near]))
    c = np.float32(sub[local])
    if abs(float(c - b)) <= SAME_TISSUE_NOISE * noise:
        return None
    ball = dist2 <= radius_mm ** 2
    if positive:
        like = (np.abs(sub - b) <= abs(c - b)) & ball & ~own
        neg_ball = ball_offsets(negative_radius_mm, spacing)
        for n in negatives:
            _clear_ball(like, tuple(int(round(v)) - s.start for v, s in zip(n, box)), neg_ball)
    else:
        # Only voxels at least as unlike the band as the click, on its side: a click on
        # a voxel two or three noise levels off the band must not take the band's own
        # noisy voxels with it.
        side = np.float32(1.0 if c > b else -1.0)
        like = ((sub - b) * side >= abs(c - b)) & ball & own
    like[local] = True
    return box, components_at(like, [local])
