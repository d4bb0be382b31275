"""Vessels: a click on a tube follows the tube, and what lies beside it is cut off.

Intensity growing treats a vessel badly in two ways. Where a vein runs along or
through an organ of its own intensity (the vena cava in the liver, a vein beside the
pancreas or a muscle), the region spreads sideways into the organ: nothing in the
intensities stops it. And the clean-up opening (a few millimetres) is as wide as a
vessel's thinner parts, so a click at the portal confluence keeps the confluence and
loses the veins running away from it. What a vessel has that its neighbours lack is
its shape: a round cross-section of steady calibre, moving along an axis.

So, for a single positive click (the protocol, and a user, click on a vessel's widest,
deepest part):

1. the click's radius ``r`` is its depth in the grown region
   (:func:`._leak_guard.click_depth`); the axis at the click is the principal axis of
   the region within ``AXIS_RADII_BLOOD`` (3) radii of a click in blood on CT,
   ``AXIS_RADII`` (2) otherwise;
2. the axis is followed both ways (:func:`_track`), one step of ``0.75 rho`` at a time:
   the cross-section is the part of the candidates (within ``tolerance`` robust standard
   deviations of a reference intensity that follows the tube, off strong edges)
   connected to what was already accepted. Where it is no wider than ``RADIUS_JUMP``
   radii and round the tube runs free: centre, radius ``rho`` and reference follow it.
   Where it is wider the tube runs through an organ of its own intensity; where it is
   flat a neighbour of its intensity lies along its side (an organ or a muscle the
   vessel touches), or the section is a sheet of tissue or a fork (two tubes side by
   side). There only the cylinder of the last free radius is taken, while candidates
   fill it: a sheet thinner than the tube and a fork's diverging branch leave it empty
   (branches are not followed, the region the growth gave them stays). The walk stops
   where the cross-section turns sharply or ends, or where the cylinder is not filled;
3. the result is a tube when it was followed freely over ``MIN_FREE_STEPS`` steps with a
   steady calibre (coefficient of variation of the free radii <= ``MAX_RADIUS_CV``);
   then the object is the grown region without what it holds beside the tube (in the
   slabs the walk measured, beyond the tube's envelope of ``RADIUS_JUMP`` radii plus a
   voxel; through an organ, the radius plus a voxel), plus the tube's own sections.
   A trim that would take more than ``MAX_TRIM`` (half) of the region is no leak
   beside a tube but the object itself (a kidney, a lung): the region is kept. With
   ``extend=False`` the tube's sections outside the grown region are not added: the
   walk only trims what lies beside the tube (a walked section that reaches into a
   branch the reference leaves out is what costs later clicks; see the session's
   ``tube_extend``), unless the grown region holds less than ``MIN_COVER`` (half) of
   the tube's sections: then the growth stopped short inside the vessel (the intensity
   model of the click's neighbourhood ended it within a few voxels: a click off the
   centre line, or a vein whose value drifts along it), and the sections the walk
   followed are the vessel.

On CT the click's intensity must be blood's: unenhanced blood is 30-60 HU (``BLOOD_HU``
allows for partial volume) and contrast-enhanced blood is brighter than any enhanced
parenchyma's 80-120 HU (``ENHANCED_HU``). Tubes of other contents (bowel loops of fluid,
the gallbladder's bile, costal cartilage at 90-100 HU) have a round, steady
cross-section too, but they are no vessels: the walk trims them where their wall or
a neighbour of their own intensity belongs to them.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage as ndi

from .._ndimage import ball_offsets, components_at, face_dilate, values_at
from ._robust import robust_stats
from ._leak_guard import click_depth

#: a cross-section wider than this many radii is an organ the tube runs into or along
RADIUS_JUMP = 1.5
#: vessels of the trunk are at most this thick (radius, mm): deeper clicks are organs
MAX_RADIUS_MM = 16.0
#: the axis at the click is the principal axis of the region within this many radii;
#: where the click's content is blood (CT) the tube's piece in a ball of three radii is
#: three times longer than wide, so a leak beside it (a neighbour of the vessel's
#: intensity, such as the diaphragm's crus along the aorta) tilts the axis less than in
#: a ball of two radii, where the piece is only twice as long. Without a content test
#: (MR) the larger ball finds an axis in an organ as deep as a vessel (a lung's piece),
#: which the walk's shape tests alone do not refuse: there the smaller ball is used
AXIS_RADII = 2.0
AXIS_RADII_BLOOD = 3.0
#: the tube is followed this many millimetres each way from the click at most
REACH_MM = 200.0
#: a tube turns by at most this much per step
MAX_TURN_DEG = 60.0
#: a vessel's cross-section is at most this many times longer than wide (standard deviations)
MAX_FLATNESS = 2.5
#: inside an organ of its own intensity the tube's cylinder must be this full of candidates
ORGAN_FILL = 0.7
#: at most this many steps in a row through an organ
MAX_ORGAN_STEPS = 12
#: a tube is followed freely over at least this many steps ...
MIN_FREE_STEPS = 5
#: ... with radii this steady (standard deviation over mean)
MAX_RADIUS_CV = 0.3
#: the trim beside a tube removes at most this fraction of the grown region: a leak
#: into an organ of the tube's intensity (the liver beside the vena cava) can be as
#: large as the tube itself, but a region mostly beside the tube is the object
MAX_TRIM = 0.5
#: a grown region holding less than this fraction of the tube's walked sections
#: stopped short inside the vessel: the sections are added even with ``extend=False``.
#: A region that fills most of the tube is the vessel as grown, and the walk's
#: sections beyond it (into a branch, along a neighbour) are left out
MIN_COVER = 0.5
#: CT: unenhanced blood's range (HU), widened by partial volume and noise
BLOOD_HU = (30.0, 70.0)
#: CT: contrast-enhanced blood is at least this bright (HU)
ENHANCED_HU = 120.0


def tube_object(image: np.ndarray, spacing: Sequence[float], pos: list, grown: np.ndarray,
                barrier: Optional[np.ndarray] = None, *, tolerance: float = 3.0,
                noise_floor: float = 0.0, gradient: Optional[np.ndarray] = None,
                hu: bool = False, extend: bool = True) -> np.ndarray:
    """The vessel holding a single positive click, or ``grown`` itself when it is no tube.

    Parameters
    ----------
    image : numpy.ndarray
        Smoothed intensities of the working grid (z, y, x).
    spacing : sequence of float
        Its spacing (mm, z, y, x).
    pos : list of tuple
        Positive clicks (indices into ``image``); only a single click is followed.
    grown : numpy.ndarray
        The click's region as grown by intensity (boolean, ``image``'s shape).
    barrier : numpy.ndarray, optional
        Voxels that are never part of the object (negative clicks' balls, outside a box).
    tolerance : float
        Half-width of the intensity interval, in robust standard deviations.
    noise_floor : float
        Smallest standard deviation of the intensity model (intensity units).
    gradient : numpy.ndarray, optional
        Gradient magnitude per mm of ``image`` (computed in the work box when omitted).
    hu : bool
        ``image`` is CT in Hounsfield units: only a click of blood's intensity
        (``BLOOD_HU`` or at least ``ENHANCED_HU``) is followed.
    extend : bool
        Add the tube's sections outside ``grown`` (True) or only trim what ``grown``
        holds beside the tube (False; the sections are still added where ``grown``
        holds less than ``MIN_COVER`` of them).

    Returns
    -------
    numpy.ndarray
        Boolean mask of ``image``'s shape: the tube, or ``grown`` itself (the same
        object) when the click's region is no tube.
    """
    spacing = np.asarray(spacing, dtype=float)
    if len(pos) != 1 or grown.ndim != 3 or image.shape != grown.shape:
        return grown
    s = tuple(int(c) for c in pos[0])
    if not grown[s]:
        return grown
    r = click_depth(grown, s, spacing, cap_mm=MAX_RADIUS_MM + 1.0, closing=True)
    # A vessel thinner than ~1.5 voxels has no cross-section to measure, and a click
    # deeper than MAX_RADIUS_MM is in an organ.
    if r < 1.5 * float(spacing.max()) or r > MAX_RADIUS_MM:
        return grown

    # Work box: REACH_MM (plus the cross-section's reach) around the click.
    reach = [int(math.ceil((REACH_MM + 3.0 * r) / h)) for h in spacing]
    box = tuple(slice(max(0, c - k), min(n, c + k + 1)) for c, k, n in zip(s, reach, image.shape))
    img = np.asarray(image[box], dtype=np.float32)
    region = grown[box]
    local = tuple(c - b.start for c, b in zip(s, box))

    # The tube's intensity model: the grown region's voxels within r of the click.
    offsets = ball_offsets(max(r, 1.01 * float(spacing.min())), spacing)
    inside = values_at(region.astype(np.uint8), local, offsets).astype(bool)
    values = values_at(img, local, offsets)[inside]
    if values.size < 5:
        return grown
    med, sd = robust_stats(values)
    if hu:
        # The content's value from the tube's core (within half its radius of the
        # click): the rim's partial volume with the surrounding fat pulls a thin
        # vessel's median over the whole section well below its blood value.
        core = ball_offsets(max(0.5 * r, 1.01 * float(spacing.min())), spacing)
        held = values_at(region.astype(np.uint8), local, core).astype(bool)
        content = float(np.median(values_at(img, local, core)[held]))
        if not (BLOOD_HU[0] <= content <= BLOOD_HU[1] or content >= ENHANCED_HU):
            return grown
    sd = max(sd, noise_floor, 1e-6)
    axis = _axis(region, local, spacing, (AXIS_RADII_BLOOD if hu else AXIS_RADII) * r)
    if axis is None:
        return grown
    if gradient is None:
        grad = np.sqrt(sum(g * g for g in np.gradient(img, *spacing))).astype(np.float32)
    else:
        grad = np.asarray(gradient[box], dtype=np.float32)
    # Off strong edges (the growth's edge rule) and barriers; the intensity is tested
    # along the way, against a reference that follows the tube.
    open_ = grad * np.float32(float(np.mean(spacing)) / sd) <= np.float32(tolerance)
    if barrier is not None:
        open_ &= ~barrier[box]

    tube = np.zeros(img.shape, dtype=bool)
    env = np.zeros(img.shape, dtype=bool)
    slabs = np.zeros(img.shape, dtype=bool)
    radii: list = []
    for sign in (1.0, -1.0):
        sections, envelope, measured, free = _track(img, open_, spacing, local, sign * axis, r, med, sd,
                                                    tolerance, region)
        tube |= sections
        env |= envelope
        slabs |= measured
        radii += free
    if len(radii) < MIN_FREE_STEPS or np.std(radii) > MAX_RADIUS_CV * np.mean(radii):
        return grown
    # Beside the tube (in a measured slab, outside the envelope) is a leak.
    kept = region & (env | ~slabs)
    if np.count_nonzero(region & ~kept) > MAX_TRIM * np.count_nonzero(region):
        return grown
    # A region holding little of the tube stopped short inside it: the walk's sections
    # are the vessel there, whatever the caller's extend says.
    short = np.count_nonzero(tube & region) < MIN_COVER * np.count_nonzero(tube)
    sub = components_at((kept | tube) if extend or short else kept, [local])
    if not sub[local]:
        # The trim took the clicked voxel itself: the click said it is the object, so
        # the walk found some other tube beside it; the grown region stands.
        return grown
    out = grown.copy()
    out[box] = sub
    return out


def _axis(region: np.ndarray, centre: tuple, spacing: np.ndarray, radius_mm: float) -> Optional[np.ndarray]:
    """Principal axis (unit vector, mm space) of ``region``'s voxels within ``radius_mm`` of ``centre``."""
    r = [int(math.ceil(radius_mm / h)) for h in spacing]
    win = tuple(slice(max(0, c - k), min(n, c + k + 1)) for c, k, n in zip(centre, r, region.shape))
    pts = (np.argwhere(region[win]) + [w.start for w in win] - np.asarray(centre)) * spacing
    pts = pts[(pts ** 2).sum(axis=1) <= radius_mm ** 2]
    if len(pts) < 10:
        return None
    _, vectors = np.linalg.eigh(np.cov(pts, rowvar=False))
    return vectors[:, -1]


def _track(img: np.ndarray, open_: np.ndarray, spacing: np.ndarray, start: Sequence[int],
           direction: np.ndarray, r0: float, med: float, sd: float, tolerance: float,
           known: np.ndarray) -> tuple:
    """Follow a tube's axis from ``start`` (voxel indices) along ``direction`` (mm space).

    Where the connected cross-section is no wider than ``RADIUS_JUMP`` radii and round
    (the tube runs free between tissues of other intensity) it is taken within that
    bound and the radius, centre and reference intensity follow it. Where it is wider
    (the tube runs through an organ of its own intensity: the vena cava in the liver) or
    flat (:func:`_flat`: a neighbour of its intensity along its side), only the cylinder
    of the tube's last free radius is taken, and only while the candidates fill most of
    it. ``known`` (the grown region) connects the first cross-section to the click.

    Returns
    -------
    tuple
        ``(sections, envelope, slabs, radii)``: the tube's voxels, its envelope (radius
        bound plus a voxel: the partial-volume rim the candidates leave out), the slabs
        it was measured in (boolean masks of ``img``'s shape) and the radius (mm) of
        each free cross-section.
    """
    p = np.asarray(start, dtype=float)
    d = direction / np.linalg.norm(direction)
    rho = r0
    ref = float(med)
    shape = np.asarray(img.shape)
    mine = np.zeros(img.shape, dtype=bool)
    env = np.zeros(img.shape, dtype=bool)
    slabs = np.zeros(img.shape, dtype=bool)
    hmin = float(spacing.min())
    hmean = float(spacing.mean())
    travelled, free, organ_run = 0.0, [], 0
    while travelled < REACH_MM:
        # Steps shorter than the radius: a bend of the tube stays inside the next
        # window, and each slab is thick enough (>= 1.5 voxels) to hold a cross-section.
        step = max(0.75 * rho, 1.5 * hmin)
        q = p + d * step / spacing
        if np.any(q < 0) or np.any(q > shape - 1):
            break
        # The window holds every voxel looked at (within 2.5 rho + 2 voxels of the axis,
        # from 1.5 steps back to half a step ahead), no more: its size is the cost.
        reach = math.hypot(2.5 * rho + 2.0 * hmean, 1.5 * step) + hmean
        lo = np.maximum(0, np.floor(q - reach / spacing).astype(int))
        hi = np.minimum(shape, np.ceil(q + reach / spacing).astype(int) + 1)
        win = tuple(slice(a, b) for a, b in zip(lo, hi))
        z, y, x = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
        z, y, x = [((g - c) * h).astype(np.float32) for g, c, h in zip((z, y, x), q, spacing)]
        along = z * np.float32(d[0]) + y * np.float32(d[1]) + x * np.float32(d[2])
        lat2 = (z * z + y * y + x * x) - along * along
        c = (np.abs(img[win] - np.float32(ref)) <= np.float32(tolerance * sd)) & open_[win]
        near = c & (along >= -1.5 * step) & (along <= 0.5 * step) & (lat2 <= (2.5 * rho) ** 2)
        seen = (known[win] | mine[win]) & near
        if not seen.any():
            break
        lab, _ = ndi.label(near)
        ids = np.unique(lab[seen])
        joined = np.isin(lab, ids[ids > 0])
        slab = np.abs(along) <= 0.5 * step
        conn = joined & slab
        area = np.count_nonzero(conn) * float(np.prod(spacing)) / step
        # Voxel indices of the connected slab once (the section is part of it).
        cidx = np.nonzero(conn)
        clat2 = lat2[cidx]
        conn_idx = np.stack(cidx, axis=1)
        # Free: the connected slab within RADIUS_JUMP radii, and round (the whole
        # connected section near the axis: a sheet of tissue is flat there even where
        # its part within the bound looks round).
        if area <= math.pi * (RADIUS_JUMP * rho) ** 2 and not _flat((conn_idx + lo - q) * spacing, d):
            mode = "free"
        else:
            # Through an organ, or along a neighbour of the tube's intensity: the
            # tube's own cylinder, while it is filled.
            inner = slab & (lat2 <= (0.8 * rho) ** 2)  # the axis is known to a voxel or so
            if np.count_nonzero(joined & inner) < ORGAN_FILL * np.count_nonzero(inner) or organ_run >= MAX_ORGAN_STEPS:
                break
            mode = "organ"
        ins = clat2 <= ((RADIUS_JUMP * rho) ** 2 if mode == "free" else rho ** 2)
        if not ins.any():
            break
        idx = conn_idx[ins]
        # The centre from the section's core (within one radius of the axis): a
        # neighbour touching the tube's side does not pull the axis towards it.
        core = idx[clat2[ins] <= rho ** 2]
        centre = (core if len(core) else idx).mean(axis=0) + lo
        move = (centre - p) * spacing
        norm = float(np.linalg.norm(move))
        if norm < 0.25 * step:
            break
        d_new = move / norm
        if float(np.dot(d_new, d)) < math.cos(math.radians(MAX_TURN_DEG)):
            break
        bound = (RADIUS_JUMP * rho) ** 2 if mode == "free" else rho ** 2
        taken = joined & (lat2 <= bound) & (along <= 0.5 * step)
        if mode == "free":
            # The partial-volume rim, which the edge rule leaves out of the candidates:
            # voxels next to the section whose value is closer to the tube's than to
            # the tissue around it (the half-way rule of the region's boundary).
            ring = slab & ~c & (lat2 > bound) & (lat2 <= (math.sqrt(bound) + 2.0 * hmean) ** 2)
            if ring.any():
                vals = img[win]
                outside = np.float32(np.median(vals[ring]))
                rim = slab & ~taken & (lat2 <= bound) & (np.abs(vals - np.float32(ref)) < np.abs(vals - outside))
                taken |= rim & face_dilate(taken)
        mine[win] |= taken
        # The tube's envelope (its partial-volume rim included, which the candidates
        # leave out) and the slab it was measured in: what the region holds in the
        # slab outside the envelope lies beside the tube.
        reach_env = (RADIUS_JUMP * rho + hmean) if mode == "free" else (rho + hmean)
        env[win] |= slab & (lat2 <= reach_env ** 2)
        slabs[win] |= slab
        if mode == "free":
            free.append(math.sqrt(area / math.pi))
            organ_run = 0
            rho = float(np.clip(math.sqrt(area / math.pi), 0.5 * rho, r0))
            # The reference follows the tube's contrast (half-way per step: one noisy
            # section does not move it far).
            ref = 0.5 * ref + 0.5 * float(np.median(img[win][tuple(idx.T)]))
        else:
            organ_run += 1
        d = d + d_new
        d /= np.linalg.norm(d)
        travelled += norm
        p = centre
    return mine, env, slabs, free


def _flat(offsets: np.ndarray, direction: np.ndarray) -> bool:
    """Whether a cross-section is longer than ``MAX_FLATNESS`` times its width.

    ``offsets``: its voxels' positions (mm) relative to a point of the axis;
    ``direction``: the axis (unit vector, mm space). Length and width are the standard
    deviations of the offsets across the axis along their two principal directions.
    """
    if len(offsets) < 4:
        return False
    lat = offsets - np.outer(offsets @ direction, direction)
    ev = np.sort(np.linalg.eigvalsh(np.cov(lat, rowvar=False)))[::-1]
    return bool(ev[1] > 0 and math.sqrt(ev[0] / ev[1]) > MAX_FLATNESS)
