"""A click on a thin layer between two different tissues: grow the layer.

The skin is a sheet one to three voxels thick between air and subcutaneous fat. The
smoothing blends it with both neighbours and every one of its voxels lies on a strong
edge, so the edge-aware growth from a click on it stops after a voxel or two, and a
reseed (``_reseed``) finds no voxel of the click's tissue off an edge. Yet the
unsmoothed image shows the layer plainly: a band of the click's value with a plateau
of another tissue on either side.

:func:`thin_layer` recognises that neighbourhood and grows the layer on the unsmoothed
intensities:

* the *plateaus*: the nearest value clusters of the click's ball (6 mm) more than 4
  noise levels below and above the click's value. The click is on a layer when the
  clicked tissue is either brighter (or darker) than the nearest plateau with no plateau
  on the other side (a ridge such as the CT skin, +40 HU between air and fat: no mix of
  the two neighbours gives it) or lies between a plateau below and one above with at
  least half of its face neighbours at its own value (a terrace such as the MR skin
  between dark air and bright fat; a one-voxel partial-volume rim, a gas-fluid level,
  has the neighbours' values on both sides instead and is left to ``_reseed``);
* the *band*: voxels closer to the click's value than to the nearest plateau on each
  side (the 50 % partial-volume rule); on a side with no plateau the band is as wide as
  on the other side;
* the *layer*: the band's connected part holding the click, minus the parts thicker
  than ``max_thickness_mm`` (the band can touch a thick tissue of the same value: the
  muscle under a thin fat layer; an opening finds those parts and they are dropped),
  plus the partial-volume voxels at its faces (a face neighbour closer to the click's
  value than to the most different value of its own 3 x 3 x 3 neighbourhood).

A click with a plateau on neither side, a ridge that is not thin, or a band that holds
no more than the click gives ``None`` and the caller keeps its own result.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage as ndi

from .._ndimage import ball_offsets, components_at, dilate, erode, stepped_ball, values_at

#: a value cluster is a plateau of another tissue when it lies this many noise levels
#: from the click's value (the growth's own widest tolerance is 3)
PLATEAU_NOISE = 4.0


def _nearest_plateau(values: np.ndarray, noise: float, min_count: int) -> Optional[float]:
    """Median of the first cluster (``min_count`` values within 2 noise levels) of ``values``
    taken in order; ``values`` sorted from the click's value outwards."""
    if values.size < min_count:
        return None
    # For each value, how many values lie within 2 noise levels of it (sorted: two
    # binary searches); the first value with enough company is the nearest plateau.
    order = np.sort(values)
    lo = np.searchsorted(order, values - 2.0 * noise, side="left")
    hi = np.searchsorted(order, values + 2.0 * noise, side="right")
    dense = np.flatnonzero(hi - lo >= min_count)
    if not dense.size:
        return None
    u = values[dense[0]]
    return float(np.median(order[(order >= u - 2.0 * noise) & (order <= u + 2.0 * noise)]))


def thin_layer(raw: np.ndarray, spacing: Sequence[float], click: Sequence[int], noise: float,
               allowed: Optional[np.ndarray] = None, radius_mm: float = 6.0,
               max_thickness_mm: float = 6.0) -> Optional[np.ndarray]:
    """The thin layer of the clicked tissue, or ``None`` when the click is not on one.

    Parameters
    ----------
    raw : numpy.ndarray
        Unsmoothed intensities (z, y, x) of the working grid.
    spacing : sequence of float
        Voxel spacing (mm, z, y, x).
    click : sequence of int
        The click (z, y, x) on ``raw``'s grid.
    noise : float
        Standard deviation of the noise of ``raw`` (intensity units).
    allowed : numpy.ndarray, optional
        Boolean mask of voxels the layer may hold (negative clicks' barriers and a box
        are ``False``).
    radius_mm : float
        Radius of the click's neighbourhood whose value clusters are the plateaus.
    max_thickness_mm : float
        Parts of the band thicker than this are another tissue of the click's value,
        not the layer.

    Returns
    -------
    numpy.ndarray or None
        Boolean mask of ``raw``'s shape.
    """
    spacing = np.asarray(spacing, dtype=float)
    click = tuple(int(c) for c in click)
    noise = float(max(noise, 1e-6))
    offsets = ball_offsets(radius_mm, spacing)
    values = values_at(raw, click, offsets).astype(np.float64)
    if values.size < 8:
        return None
    v = float(raw[click])
    # A plateau must fill a sixth of the ball (a few noisy or partial-volume voxels are
    # not a tissue).
    min_count = max(5, int(values.size / 6))
    far = PLATEAU_NOISE * noise
    below = -np.sort(-values[values < v - far])  # nearest (highest) first
    above = np.sort(values[values > v + far])  # nearest (lowest) first
    p_lo = _nearest_plateau(below, noise, min_count)
    p_hi = _nearest_plateau(above, noise, min_count)
    if p_lo is None and p_hi is None:
        return None
    if p_lo is not None and p_hi is not None:
        # Between a darker and a brighter tissue: a layer only if the click's tissue
        # has its own value here. A partial-volume rim between the two takes every
        # value between them along a curved surface; a layer's voxels stay at its value:
        # most of the ball's voxels in the band lie within 2 noise levels of the click.
        lower, upper = 0.5 * (v + p_lo), 0.5 * (v + p_hi)
        in_band = values[(values > lower) & (values < upper)]
        if np.count_nonzero(np.abs(in_band - v) <= 2.0 * noise) < 0.5 * in_band.size:
            return None
    else:
        # Brighter (darker) than the nearest plateau: a ridge (valley) only when the
        # click is an extreme of its ball, with hardly a voxel beyond it. A fluid click
        # beside gas has the gas's partial-volume voxels below it and is no valley.
        other = above if p_lo is not None else below
        if other.size >= 0.5 * min_count:
            return None
        if p_lo is not None:
            lower = 0.5 * (v + p_lo)
            upper = v + (v - lower)
        else:
            upper = 0.5 * (v + p_hi)
            lower = v - (upper - v)
    band = (raw > np.float32(lower)) & (raw < np.float32(upper))
    if allowed is not None:
        band &= allowed
    band[click] = True
    layer = components_at(band, [click])
    # Thick parts of the band (an opening of radius max_thickness / 2 keeps them) are a
    # thick tissue of the same value reached through the layer, not the layer. The
    # image's faces are not the band's surface (a layer cut by the last slice is not
    # thicker there).
    # On a coarse grid the opening's ball is at least one voxel: a layer is then at
    # most two voxels thick.
    r = max(0.5 * max_thickness_mm, 1.01 * float(spacing.min()))
    if True:
        footprint = stepped_ball(r, spacing)
        thick = dilate(erode(layer, footprint, border_value=1), footprint) & layer
        # The click on a thin spot of a thick tissue (most of its band is thick) is not
        # on a layer either.
        if thick[click] or np.count_nonzero(thick) > 0.5 * np.count_nonzero(layer):
            return None
        layer &= ~thick
        layer = components_at(layer, [click])
    if np.count_nonzero(layer) < 8:
        return None
    # The partial-volume voxels at the layer's faces: closer to the layer's value than to
    # the most different value around them (the far tissue, e.g. air for the skin).
    size = tuple(3 if n >= 3 else n for n in raw.shape)
    lo = ndi.minimum_filter(raw, size=size, mode="nearest")
    hi = ndi.maximum_filter(raw, size=size, mode="nearest")
    out = np.where(np.abs(lo - np.float32(v)) > np.abs(hi - np.float32(v)), lo, hi)
    rim = ndi.binary_dilation(layer, ndi.generate_binary_structure(3, 1)) & ~layer
    rim &= np.abs(raw - np.float32(v)) < np.abs(raw - out)
    if allowed is not None:
        rim &= allowed
    return layer | rim
