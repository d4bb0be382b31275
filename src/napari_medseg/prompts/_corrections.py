"""Corrective clicks that act locally on the current mask (weights-free backend).

A radiologist's second and later clicks say "this part is missing" or "this part is
not the object". Re-segmenting from all clicks at once redraws the whole object and
can make it worse far from the click (a negative click that moves the intensity
interval, a positive click whose new seed leaks). Here a correction changes the mask
only near the click, and by no more than the click's own evidence supports:

* **positive** (a missed region): the region grown from the new click alone (with the
  negative clicks as barriers) is added, limited to a ball around the click of twice
  the missed region's depth (the click lies at its deepest point: the smaller of the
  click's depth in its own region and its distance to the mask), and to its part
  connected to the click. A region that fills that whole ball was bounded by no edge
  there (a same-intensity neighbour): only a ball of the click's depth is added. A
  positive click never removes anything.
* **negative** (a leak): a leak of clearly different intensity (a lesion inside the
  organ, fat, bowel content) goes whole, by intensity. Otherwise the mask is split by
  competition between seeds: "not the object" = the negative clicks; "object" = the
  positive clicks, the mask voxels nearer a positive click than the negative one,
  those beyond a locality radius, and the mask's *core* (voxels deeper than the
  negative click: a leak is no thicker than where it was clicked). The fronts meet
  at the narrowest neck or the strongest edge between them (marker watershed on the
  larger of the gradient and the mask's shallowness); only what the negative click
  wins is removed.

So the rest of the mask is never redrawn: a correction cannot lower the overlap far
from where the user clicked.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from scipy import ndimage as ndi

from .._ndimage import ball_offsets, bbox
from ._leak_guard import click_depth

#: a leak is no thicker than where the user clicked in it: mask voxels deeper than
#: this many times the negative click's depth (plus a voxel) are the object's core
CORE_DEPTH = 1.25
#: a positive correction adds at most this many times the missed region's depth
#: around the click (and never less than ``MIN_ADD_MM``)
ADD_REACH = 2.0
MIN_ADD_MM = 6.0
#: an addition filling more than this fraction of its limit ball was bounded by
#: nothing there: only a ball of the click's depth is added
FILL_LIMIT = 0.6
#: the missed region's depth is measured within this distance of the click (mm)
NEAR_MM = 6.0
#: a negative click this many robust SDs from the positive clicks is another tissue
INTENSITY_SD = 4.0


def _ball_box(shape: tuple, centre: tuple, radius_mm: float, spacing: np.ndarray) -> tuple:
    r = [int(math.ceil(radius_mm / s)) for s in spacing]
    return tuple(slice(max(0, int(c) - k), min(n, int(c) + k + 1)) for c, k, n in zip(centre, r, shape))


def _distance_from(shape: tuple, centre: tuple, spacing: np.ndarray) -> np.ndarray:
    """Euclidean distance (mm) of every voxel of a ``shape`` array from ``centre``."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing))
    return np.sqrt(d2)


def object_radius_mm(mask_sub: np.ndarray, spacing: np.ndarray) -> float:
    """Radius (mm) of the sphere with the mask's volume."""
    vol = float(np.count_nonzero(mask_sub)) * float(np.prod(spacing))
    return (3.0 * vol / (4.0 * math.pi)) ** (1.0 / 3.0)


def distance_to(mask: np.ndarray, click: tuple, spacing: np.ndarray, cap_mm: float) -> float:
    """Distance (mm) from ``click`` to the nearest voxel of ``mask`` (at most ``cap_mm``)."""
    box = _ball_box(mask.shape, click, cap_mm + float(np.max(spacing)), spacing)
    sub = mask[box]
    if not sub.any():
        return float(cap_mm)
    local = tuple(int(c) - b.start for c, b in zip(click, box))
    return float(min(cap_mm, ndi.distance_transform_edt(~sub, sampling=spacing)[local]))


def local_addition(added: np.ndarray, old: np.ndarray, old_box: tuple, click: tuple,
                   spacing: np.ndarray) -> np.ndarray:
    """What a positive ``click`` outside the mask adds: ``added`` limited to a ball around it.

    The click lies at the deepest point of a missed region, so that region's depth is
    about the smaller of the click's depth in its own grown region and its distance to
    the current mask; the addition may reach ``ADD_REACH`` times that depth (at most
    1.5 x the object's equivalent-sphere radius or 15 mm). A region that fills its
    whole ball was not bounded by an edge there (a neighbour of the same intensity: the
    portal vein in a non-enhanced liver): only a ball of the click's depth is added.
    """
    radius = max(15.0, 1.5 * object_radius_mm(old[old_box], spacing))
    box = _ball_box(old.shape, click, radius + float(np.max(spacing)), spacing)
    local = tuple(int(c) - b.start for c, b in zip(click, box))
    new = added[box] & ~old[box]
    to_mask = distance_to(old[box], local, spacing, radius)
    # The depth after closing small gaps (noise, vessels: a big organ does not look
    # thin), and the plain depth for the fallback below.
    depth = min(click_depth(new, local, spacing, cap_mm=radius, near_mm=NEAR_MM, closing=True), to_mask)
    limit = min(radius, max(ADD_REACH * depth, MIN_ADD_MM))
    out = limit_addition(added, old, click, spacing, limit)
    ball = (4.0 / 3.0) * math.pi * limit ** 3 / float(np.prod(spacing))
    if np.count_nonzero(out) > FILL_LIMIT * ball:
        plain = min(click_depth(new, local, spacing, cap_mm=radius), to_mask)
        out = limit_addition(added, old, click, spacing, max(plain, MIN_ADD_MM))
    return out


def limit_addition(added: np.ndarray, old: np.ndarray, click: tuple, spacing: np.ndarray,
                   radius_mm: float) -> np.ndarray:
    """``added`` (full grid) limited to a ball of ``radius_mm`` around ``click``, connected to it."""
    box = _ball_box(added.shape, click, radius_mm, spacing)
    local = added[box] & ~old[box]
    centre = tuple(int(c) - b.start for c, b in zip(click, box))
    local &= _distance_from(local.shape, centre, spacing) <= radius_mm
    # Keep the part connected to the click (through the old mask too: a missed region
    # next to the object joins it).
    lab, _ = ndi.label(local | old[box])
    keep = lab == lab[centre] if lab[centre] else np.zeros_like(local)
    out = np.zeros(added.shape, dtype=bool)
    out[box] = local & keep
    return out


def negative_cut(array: np.ndarray, mask: np.ndarray, spacing: np.ndarray, neg: list, pos: list,
                 click: tuple, smoothing_mm: float = 1.0, max_voxels: int = 400_000,
                 barrier_mm: float = 3.0) -> np.ndarray:
    """The voxels of ``mask`` that the negative ``click`` wins (to remove); full grid.

    The like-intensity part of the mask joined to the click when its intensity clearly
    differs from the positive clicks'; otherwise a marker watershed inside the mask on
    the larger of the smoothed gradient and the mask's shallowness: the negative clicks'
    barrier balls against the positive clicks, the mask's core deeper than the click,
    the voxels nearer a positive click, and every mask voxel farther than the locality
    radius from ``click`` (three times its depth in the mask plus 10 mm).
    """
    from .region_growing import _marker_watershed

    depth_box = _ball_box(mask.shape, click, 100.0, spacing)
    sub = mask[depth_box]
    centre = tuple(int(c) - b.start for c, b in zip(click, depth_box))
    dist = ndi.distance_transform_edt(np.pad(sub, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    depth = float(dist[centre])
    radius = min(3.0 * depth + 10.0, 150.0)
    box = _ball_box(mask.shape, click, radius + 2.0 * float(spacing.max()), spacing)
    region = mask[box]
    if not region.any():
        return np.zeros(mask.shape, dtype=bool)
    # A leak of clearly different intensity (a lesion inside an organ, fat, bowel
    # content) goes whole by intensity; the shape split is for same-intensity leaks.
    by_intensity = _intensity_leak(array, mask, spacing, pos, click, smoothing_mm)
    if by_intensity.any():
        return by_intensity
    local_centre = tuple(int(c) - b.start for c, b in zip(click, box))
    d_neg = _distance_from(region.shape, local_centre, spacing)
    # Object markers: mask voxels beyond the locality radius that are nearer to a
    # positive click than to the negative one (the far side of a leak is left to the
    # competition, so a big leak goes in a few clicks).
    d_pos = np.full(region.shape, np.inf)
    for p in pos:
        d_pos = np.minimum(d_pos, _distance_from(region.shape, tuple(int(round(c)) - b.start
                                                                     for c, b in zip(p, box)), spacing))
    far = (d_neg > radius) & (d_pos < d_neg)
    # Voxels nearer a positive click than the negative one stay (the click speaks for
    # its own side only): a thin object that ran into a thick neighbour is not taken
    # with the neighbour; a big leak goes in a few clicks.
    far |= d_pos < d_neg
    img = np.asarray(array[box], dtype=np.float32)
    sigma = [max(0.5, smoothing_mm / s) for s in spacing]
    img = ndi.gaussian_filter(img, sigma, mode="nearest")
    grad = np.sqrt(sum(g.astype(np.float32) ** 2 for g in np.gradient(img, *spacing))) if min(img.shape) > 1 \
        else np.zeros_like(img)
    markers = np.zeros(region.shape, dtype=np.uint8)
    markers[far & region] = 1
    dist = ndi.distance_transform_edt(np.pad(region, 1, constant_values=True), sampling=spacing)[1:-1, 1:-1, 1:-1]
    # The mask deeper than the negative click is the object's core: a leak is no
    # thicker than where the user clicked in it, so the click never claims it (a click
    # in a one-voxel leaked rim takes the rim near it, not the organ behind it).
    markers[region & (dist > CORE_DEPTH * depth + float(spacing.max()))] = 1
    offsets = ball_offsets(barrier_mm, spacing)
    for p in pos:
        _mark(markers, tuple(int(round(c)) - b.start for c, b in zip(p, box)), offsets, 1)
    markers[~region] = 0
    for n in neg:
        _mark(markers, tuple(int(round(c)) - b.start for c, b in zip(n, box)), offsets, 2)
    inner = grad[region]
    floor = float(np.percentile(inner, 50)) if inner.size else 0.0
    scale = float(np.percentile(inner, 99)) if inner.size else 1.0
    n_levels = 48.0
    levels = np.clip(np.floor((grad - floor) / max(scale - floor, 1e-12) * n_levels), 0, n_levels)
    # Shape: the mask's depth (distance to its edge, box faces excluded). Flooding the
    # deep voxels first puts the split at the narrowest neck between the clicks, where
    # a leak joins the object, unless a stronger edge lies elsewhere.
    dcap = max(float(dist[region].max()), 1e-6)
    levels = np.maximum(levels, np.clip(np.floor((1.0 - dist / dcap) * n_levels), 0, n_levels))
    levels = levels.astype(np.uint8)
    levels[~region] = 255
    if not (markers == 1).any():
        remove = region.copy()
    else:
        ws = _marker_watershed(levels, markers, max_voxels)
        remove = (ws == 2) & region
    out = np.zeros(mask.shape, dtype=bool)
    out[box] = remove
    return out


def _intensity_leak(array, mask, spacing, pos, click, smoothing_mm) -> np.ndarray:
    """Mask voxels that look like the negative click rather than the object, joined to its cut.

    Only when the negative click's intensity clearly differs from the positive clicks'
    (more than 3 robust standard deviations): a leak into a neighbour of another
    intensity is then removed whole, also beyond the locality radius.
    """
    box = bbox(mask, pad=1)
    img = ndi.gaussian_filter(np.asarray(array[box], dtype=np.float32),
                              [max(0.5, smoothing_mm / s) for s in spacing], mode="nearest")
    offsets = ball_offsets(4.0, spacing)

    def values(p):
        pts = np.asarray([int(round(c)) - b.start for c, b in zip(p, box)])[None, :] + offsets
        keep = np.all((pts >= 0) & (pts < np.asarray(img.shape)[None, :]), axis=1)
        pts = pts[keep]
        return img[pts[:, 0], pts[:, 1], pts[:, 2]]

    if not pos:
        return np.zeros(mask.shape, dtype=bool)
    vp = np.concatenate([values(p) for p in pos])
    vn = values(click)
    mp, mn = float(np.median(vp)), float(np.median(vn))
    sd = max(1.4826 * float(np.median(np.abs(vp - mp))), 1.4826 * float(np.median(np.abs(vn - mn))), 1e-6)
    if abs(mn - mp) <= INTENSITY_SD * sd:
        return np.zeros(mask.shape, dtype=bool)
    sub = mask[box]
    like = sub & (np.abs(img - np.float32(mn)) < np.abs(img - np.float32(mp)))
    lab, _ = ndi.label(like)
    centre = tuple(int(c) - b.start for c, b in zip(click, box))
    if not lab[centre]:
        return np.zeros(mask.shape, dtype=bool)
    out = np.zeros(mask.shape, dtype=bool)
    # Never the positive clicks' own voxels.
    keep = lab == lab[centre]
    for p in pos:
        q = tuple(int(round(c)) - b.start for c, b in zip(p, box))
        if all(0 <= a < n for a, n in zip(q, keep.shape)) and keep[q]:
            return np.zeros(mask.shape, dtype=bool)
    out[box] = keep
    return out


def _mark(markers: np.ndarray, centre: tuple, offsets: np.ndarray, value: int) -> None:
    pts = np.asarray(centre)[None, :] + offsets
    keep = np.all((pts >= 0) & (pts < np.asarray(markers.shape)[None, :]), axis=1)
    pts = pts[keep]
    markers[pts[:, 0], pts[:, 1], pts[:, 2]] = value


def incremental_click(prev_points: tuple, prev_labels: tuple, points: tuple, labels: tuple) -> Optional[int]:
    """Index of the one new click when ``points`` extends the previous prompts by one, else None."""
    n = len(prev_points)
    if n == 0 or len(points) != n + 1 or tuple(points[:n]) != tuple(prev_points) \
            or tuple(labels[:n]) != tuple(prev_labels):
        return None
    return n
