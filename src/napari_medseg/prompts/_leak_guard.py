"""A size prior for one click's region: cut leaks that intensity alone cannot see.

The protocol (and a radiologist) clicks well inside the object, so the distance from
the click to the nearest edge of its grown region (the click's *depth* ``d``) is about
the object's inscribed radius. Organs hold ~3-8 balls of that radius; long tubes more,
but a region holding hundreds of them has run into a neighbour of the same intensity
(the inferior vena cava into the liver, a rib into the spine, the stomach into the
bowel). Such a region is cut back in two steps, each only when still needed:

1. an opening by reconstruction with a radius proportional to ``d``: contacts thinner
   than ~1.2 ``d`` are cut, the click's part is grown back inside the region (a tube of
   radius ``d`` survives along its length);
2. a ball of ``reach * d`` around the click (the part connected to the click).

A region that is as thin everywhere as at the click (its deepest voxel no deeper than
``SHEET_RATIO`` click depths: a sheet like the subcutaneous fat, a tube like the
spinal canal running through the field of view) has not run into a thicker neighbour
and is kept.

:func:`is_sheet` is that test alone: the growth skips its light opening (which cuts
every part thinner than 8 mm as if it were a bridge) for such a sheet, whose thin parts
are the sheet itself.

:func:`fills_in` tells the growth's leak test (a tolerance step that more than doubles
the region) a leak from a noisy tissue still filling in: a leak enters a neighbour
through a narrow contact, a noisy muscle at a tight tolerance is a sponge that the next
step joins along its whole surface.
"""

from __future__ import annotations

import math

from typing import Optional

import numpy as np
from scipy import ndimage as ndi

from .._ndimage import bbox, components_at, dilate, erode, face_dilate, fill_holes, stepped_ball

#: a region no deeper anywhere than this many click depths is a sheet or a tube of the
#: click's own thickness, not a leak into a thicker neighbour
SHEET_RATIO = 1.5

#: a tolerance step's new voxels touching the previous region on at least this many
#: times their own surface scale (``added ** (2 / 3)`` voxels) fill the object in
FILL_CONTACT = 2.5


def _outer_rim(sub: np.ndarray) -> np.ndarray:
    """Indices (n, 3) of the voxels outside ``sub`` with a face neighbour inside it.

    The nearest outside voxel of an inside voxel is always one of them: one step from
    it towards the inside voxel is closer, so inside. Distances to the outside need
    only this rim (thousands of voxels, not the whole box's background).
    """
    return np.argwhere(face_dilate(sub) & ~sub)


def _distance_to_outside(sub: np.ndarray, point: tuple, spacing: np.ndarray) -> float:
    """Euclidean distance (mm) from ``point`` to the nearest voxel outside ``sub``.

    Faces of the array are not outside (inf when ``sub`` is full). The same value as the
    distance transform at ``point`` (same arithmetic) without transforming the whole box.
    """
    idx = _outer_rim(sub)
    if not len(idx):
        return math.inf
    d = (idx - np.asarray(point)[None, :]).astype(np.float64) * np.asarray(spacing, dtype=np.float64)[None, :]
    np.multiply(d, d, out=d)
    return float(np.sqrt(np.add.reduce(d, axis=1).min()))


def click_depth(region: np.ndarray, click: tuple, spacing: np.ndarray, cap_mm: float = 60.0,
                near_mm: float = 0.0, closing: bool = False) -> float:
    """Distance (mm) from ``click`` to the nearest voxel outside ``region`` (capped at ``cap_mm``).

    With ``near_mm``, the largest such distance within ``near_mm`` of the click (a click
    next to a noisy gap in the region still measures the object). Computed in a box of
    ``cap_mm + near_mm`` around the click only, so the cost does not grow with the region.
    """
    r = [int(math.ceil((cap_mm + near_mm) / s)) + 1 for s in spacing]
    box = tuple(slice(max(0, c - k), min(n, c + k + 1)) for c, k, n in zip(click, r, region.shape))
    # Pinholes and thin channels (noisy voxels, vessels through an organ left out of
    # the region) would make every click shallow: close (2 voxels) and fill first.
    sub = region[box]
    if closing:
        sub = ndi.binary_closing(np.pad(sub, 2, mode="edge"), ndi.generate_binary_structure(3, 1),
                                 iterations=2)[2:-2, 2:-2, 2:-2] | sub
    sub = fill_holes(sub)
    local = tuple(c - b.start for c, b in zip(click, box))
    if not sub[local]:
        return 0.0
    if near_mm <= 0:
        return float(min(cap_mm, _distance_to_outside(sub, local, spacing)))
    # Neither the box faces nor the volume's faces bound the object (it goes on past
    # the field of view: a click on the last slice of a liver is not shallow).
    grids = np.ogrid[tuple(slice(0, k) for k in sub.shape)]
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, local, spacing))
    near = np.argwhere((d2 <= near_mm ** 2) & sub)
    return float(min(cap_mm, _deepest_of(sub, near, spacing)))


def _deepest_of(sub: np.ndarray, points: np.ndarray, spacing: np.ndarray) -> float:
    """The largest distance (mm) from one of ``points`` (inside ``sub``) to the nearest voxel outside ``sub``.

    Faces of the array are not outside. Only the outer rim (:func:`_outer_rim`) is
    searched, with a k-d tree: a few thousand rim voxels instead of a distance
    transform of the whole box (a click's box of 60 mm holds ~10^5-10^6 voxels).
    Distances use the distance transform's arithmetic, so the value is that of
    ``distance_transform_edt`` of the face-padded box.
    """
    from scipy.spatial import cKDTree

    spacing = np.asarray(spacing, dtype=np.float64)
    rim = _outer_rim(sub)
    if not len(rim):
        # No outside voxel in the box: the distance transform's value for a box
        # without background (the caller caps it), so both paths agree.
        padded = np.pad(sub, [(1, 1)] * 3, constant_values=True)
        dist = ndi.distance_transform_edt(padded, sampling=spacing)[1:-1, 1:-1, 1:-1]
        return float(dist[tuple(points.T)].max())
    _, j = cKDTree(rim * spacing).query(points * spacing, k=1)
    d = (rim[j] - points).astype(np.float64) * spacing
    np.multiply(d, d, out=d)
    return float(np.sqrt(d[:, 0] + d[:, 1] + d[:, 2]).max())


def size_limit(region: np.ndarray, click: tuple, spacing: np.ndarray, ratio: float,
               min_depth_mm: float = 2.0, near_mm: float = 0.0) -> tuple:
    """``(limit, depth)``: the most voxels a region grown from ``click`` may hold, ``ratio`` balls of the click's depth (mm).

    The depth is :func:`click_depth` after closing small gaps, at least ``min_depth_mm``
    and one voxel of the coarsest axis (a click on a one-voxel-thin spot).
    """
    d = max(click_depth(region, click, spacing, near_mm=near_mm, closing=True), min_depth_mm, float(spacing.max()))
    return ratio * (4.0 / 3.0 * math.pi * d ** 3) / float(np.prod(spacing)), d


def beyond_prior(region: np.ndarray, click: tuple, spacing: np.ndarray, ratio: float, *,
                 near_mm: float = 0.0, first: bool = True) -> tuple:
    """``(leaked, limit)``: whether ``region`` (grown from ``click``) is beyond the click's size prior.

    ``limit`` is :func:`size_limit`'s ``(limit, depth)`` for the click itself (what
    :func:`guard_leak` cuts to). A region within it has not leaked. A first click beside
    a gap of another tissue (a kidney's sinus fat, a vessel) is shallow while the organ
    around it is thick: when a voxel within ``near_mm`` of the click lies at least 25 %
    deeper than the click and the region is within that voxel's size prior, it has not
    leaked either. Only for a first click (``first``): a correction's region is merged
    into the object near the click, where a whole neighbour kept would redraw the
    object. (Each size limit is a closing and a depth search: the near one only for a
    region beyond the click's own.)

    Parameters
    ----------
    region : numpy.ndarray
        Boolean region grown from the click.
    click : tuple
        The click (integer indices into ``region``).
    spacing : numpy.ndarray
        Voxel spacing (mm, z, y, x).
    ratio : float
        Balls of the click's depth a plausible region holds at most.
    near_mm : float
        How far from the click a deeper voxel speaks for the organ around a gap.
    first : bool
        The click is a first click (no mask yet).

    Returns
    -------
    tuple
        ``(bool, (limit, depth))``.
    """
    n = int(np.count_nonzero(region))
    own = size_limit(region, click, spacing, ratio)
    if n <= own[0]:
        return False, own
    if first and near_mm > 0:
        near = size_limit(region, click, spacing, ratio, near_mm=near_mm)
        if near[1] >= 1.25 * own[1] and n <= near[0]:
            return False, own
    return True, own


def fills_in(before: np.ndarray, after: np.ndarray, click: tuple, spacing: np.ndarray, ratio: float,
             near_mm: float = 6.0, contact: float = FILL_CONTACT) -> bool:
    """Whether ``after`` (grown at a higher tolerance) fills in ``before``'s own tissue rather than leaking.

    A leak reaches a neighbour through a narrow contact (a partial-volume bridge, a gap
    in a vessel's wall): the new voxels touch the previous region at a few voxels, far
    fewer than the surface of what they add (measured over the first clicks of the real
    CT and the phantoms: 0.02-0.16 x ``added ** (2 / 3)`` for the aorta, portal vein,
    pancreas and iliopsoas leaks, up to 2.3 through a thick contact: a vertebra, a
    kidney at 1.5 mm). A large noisy tissue grown at a tight tolerance (a back muscle of
    the 3 mm CT: a spread of 6 HU against noise and fat streaks of the same order) is a
    sponge that the next step joins along its whole surface: the new voxels touch it on
    2.6-4.8 times their surface scale. Such a step is the tissue itself and is not taken
    for a leak, while ``before`` is still of a plausible size (at most ``ratio`` balls of
    the click's depth, the size prior of :func:`guard_leak`): a region already that
    large has leaked at the lower tolerance (a click on a thin structure among
    same-intensity tissue), and its step joins more of the neighbour (measured: 10-17
    balls for the muscles; 200-470 for the adrenal, iliopsoas and rib clicks at 1.5 mm
    whose steps also touch along 3-17 times their surface scale).

    Parameters
    ----------
    before, after : numpy.ndarray
        Boolean regions grown from ``click``, ``before`` inside ``after``.
    click : tuple
        The click (integer indices).
    spacing : numpy.ndarray
        Voxel spacing (mm, z, y, x).
    ratio : float
        ``before`` holding more than this many balls of the click's depth is a leak.
    near_mm : float
        The depth is the largest within this distance of the click (a sponge's depth at
        the click itself is a noise voxel's).
    contact : float
        The smallest contact, in units of ``added ** (2 / 3)`` voxels, that fills in.

    Returns
    -------
    bool
    """
    added = after & ~before
    n = int(np.count_nonzero(added))
    if n == 0:
        return True
    touching = int(np.count_nonzero(added & face_dilate(before)))
    if touching < contact * n ** (2.0 / 3.0):
        return False
    return bool(before[click]) and np.count_nonzero(before) <= size_limit(before, click, spacing, ratio,
                                                                          near_mm=near_mm)[0]


def _thin_everywhere(region: np.ndarray, spacing: np.ndarray, depth: float) -> bool:
    """Whether ``region`` is nowhere deeper than ``SHEET_RATIO`` x ``depth`` (mm).

    The region's own deepest voxel, after hole filling (as the click's depth is
    measured); the array's faces are not edges.
    """
    if SHEET_RATIO <= 0:
        return False
    filled = fill_holes(region)
    return float(ndi.distance_transform_edt(filled, sampling=spacing).max()) <= SHEET_RATIO * depth


def is_sheet(region: np.ndarray, click: tuple, spacing: np.ndarray, ratio: float) -> bool:
    """Whether ``region`` (grown from ``click``) is a sheet of tissue: too large for the click's depth, no thicker anywhere.

    :func:`guard_leak`'s test for the regions it keeps: more voxels than ``ratio`` balls
    of the click's depth (an organ's region that large has leaked) and no deeper
    anywhere than ``SHEET_RATIO`` click depths (a leak runs into a thicker neighbour;
    the subcutaneous fat is nowhere thicker than where it was clicked, and thinner than
    8 mm in places). Such a region's thin parts are the sheet itself, not bridges to a
    neighbour, and an opening that cuts thin parts would cut it up. (The phantom's
    muscle label, back muscles 17 mm deep joined by a 6-9 mm wall around the trunk,
    holds fewer than 50 balls of its click's depth: not a sheet by this test.)
    """
    n = int(np.count_nonzero(region))
    if n == 0 or not region[click]:
        return False
    limit, d = size_limit(region, click, spacing, ratio)
    if n <= limit:
        return False
    return _thin_everywhere(region[bbox(region, pad=1)], spacing, d)


def guard_leak(region: np.ndarray, click: tuple, spacing: np.ndarray, *, ratio: float = 25.0,
               open_factor: float = 0.6, reach: float = 4.0, min_depth_mm: float = 2.0,
               near_mm: float = 0.0, limit: Optional[tuple] = None) -> np.ndarray:
    """``region`` (the connected region grown from ``click``) with an implausible leak cut.

    Parameters
    ----------
    region : numpy.ndarray
        Boolean region grown from the click (working grid).
    click : tuple
        The click (integer indices into ``region``).
    spacing : numpy.ndarray
        Voxel spacing (mm, z, y, x) of ``region``'s grid.
    ratio : float
        A region larger than ``ratio`` balls of the click's depth is a leak.
    open_factor : float
        Radius of the opening, as a fraction of the depth.
    reach : float
        Last resort: the region is limited to ``reach`` depths around the click.
    min_depth_mm : float
        Floor of the depth (a click on a 1-voxel-thin spot).
    near_mm : float
        The depth is the largest within this distance of the click (a vessel or a noisy
        gap next to the click does not make a big organ look thin).
    limit : tuple, optional
        ``(limit, depth)`` of :func:`size_limit` for these arguments, when the caller
        has it already (each is a closing and a depth search).

    Returns
    -------
    numpy.ndarray
        The region itself when plausible, else the cut one (a new array).
    """
    n = int(np.count_nonzero(region))
    if n == 0 or not region[click]:
        return region
    limit, d = limit if limit is not None else size_limit(region, click, spacing, ratio,
                                                          min_depth_mm=min_depth_mm, near_mm=near_mm)
    if n <= limit:
        return region
    box = bbox(region, pad=1)
    sub = region[box]
    local = tuple(c - b.start for c, b in zip(click, box))
    if _thin_everywhere(sub, spacing, d):
        return region
    r = open_factor * d
    if r >= 1.01 * float(spacing.min()):
        core = erode(sub, stepped_ball(r, spacing), border_value=1)
        if core[local]:
            core = components_at(core, [local])
            sub = dilate(core, stepped_ball(r + float(spacing.max()), spacing), within=sub)
            sub = components_at(sub, [local])
    if np.count_nonzero(sub) > limit:
        grids = np.ogrid[tuple(slice(0, k) for k in sub.shape)]
        d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, local, spacing))
        sub = components_at(sub & (d2 <= (reach * d) ** 2), [local])
    out = np.zeros(region.shape, dtype=bool)
    out[box] = sub
    return out
