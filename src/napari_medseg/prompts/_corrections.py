"""Corrective clicks that act locally on the current mask (weights-free backend).

A radiologist's second and later clicks say "this part is missing" or "this part is
not the object". Re-segmenting from all clicks at once redraws the whole object and
can make it worse far from the click (a negative click that moves the intensity
interval, a positive click whose new seed leaks). Here a correction changes the mask
only near the click:

* **positive** (a missed region): the region grown from the new click alone (with the
  negative clicks as barriers) is added, limited to a ball around the click whose
  radius scales with the current object, and to its part connected to the click;
* **negative** (a leak): a competitive (marker watershed) split of the mask on the
  gradient, between the new negative click (and earlier ones) and *every mask voxel
  farther than a locality radius* plus the positive clicks: only the part of the mask
  that the negative click wins is removed, and it lies within that radius.

So the rest of the mask is never redrawn: a correction cannot lower the overlap far
from where the user clicked.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from scipy import ndimage as ndi

from .._ndimage import ball_offsets, bbox


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

    Marker watershed on the smoothed gradient magnitude inside the mask: the negative
    clicks' barrier balls against the positive clicks and every mask voxel farther than
    the locality radius from ``click`` (three times its depth in the mask plus 10 mm).
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
    img = np.asarray(array[box], dtype=np.float32)
    sigma = [max(0.5, smoothing_mm / s) for s in spacing]
    img = ndi.gaussian_filter(img, sigma, mode="nearest")
    grad = np.sqrt(sum(g.astype(np.float32) ** 2 for g in np.gradient(img, *spacing))) if min(img.shape) > 1 \
        else np.zeros_like(img)
    markers = np.zeros(region.shape, dtype=np.uint8)
    markers[far & region] = 1
    offsets = ball_offsets(barrier_mm, spacing)
    for p in pos:
        _mark(markers, tuple(int(round(c)) - b.start for c, b in zip(p, box)), offsets, 1)
    markers[~region] = 0
    for n in neg:
        _mark(markers, tuple(int(round(c)) - b.start for c, b in zip(n, box)), offsets, 2)
    inner = grad[region]
    floor = float(np.percentile(inner, 50)) if inner.size else 0.0
    scale = float(np.percentile(inner, 99)) if inner.size else 1.0
    levels = np.clip(np.floor((grad - floor) / max(scale - floor, 1e-12) * 12.0), 0, 12).astype(np.uint8)
    levels[~region] = 255
    if not (markers == 1).any():
        remove = region.copy()
    else:
        ws = _marker_watershed(levels, markers, max_voxels)
        remove = (ws == 2) & region
    out = np.zeros(mask.shape, dtype=bool)
    out[box] = remove
    return out | _intensity_leak(array, mask, spacing, pos, click, out, smoothing_mm)


def _intensity_leak(array, mask, spacing, pos, click, removed, smoothing_mm) -> np.ndarray:
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
    if abs(mn - mp) <= 3.0 * sd:
        return np.zeros(mask.shape, dtype=bool)
    sub = mask[box]
    like = sub & (np.abs(img - np.float32(mn)) < np.abs(img - np.float32(mp)))
    like |= removed[box]
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
