"""The object's boundary at its 50 % partial-volume surface.

Region growing on a smoothed image stops a voxel or two inside an object's border: the
scanner's blur and the smoothing spread every edge over a few voxels, and those voxels
fail the growth's edge test. The boundary voxels are added back here, one layer at a
time, each by a rule of its own neighbourhood: a voxel next to the object holds a mix of
the object and the tissue beyond it, and it belongs to the object when its value is
nearer the object's value than that tissue's (half or more of the voxel is object: the
50 % partial-volume surface, where an ideal blurred step crosses half-way).

"The tissue beyond it" is the value at the end of the ramp that starts at the voxel and
leads away from the object's value (a walk through the non-object voxels, each step to
the face neighbour farthest in value from the object, while the step moves by more than
the noise, within a few millimetres). It is the plateau right behind the voxel: a fat
voxel beside an organ has fat behind it (no ramp: it stays out), however dark the air
or gas a few voxels farther out is, and an interpolated grid's two-voxel ramp still
reaches the neighbour's plateau. A blurred edge's steps grow and then shrink; a step
larger than the one before it after they have shrunk is a second edge behind a short
plateau (fat two voxels thick with gas behind it), and the walk stops on that plateau.
A rule of the voxel's own surroundings, iterated while it holds, puts the surface at the
same place on every voxel size. (The most different value within a fixed window would be
a third tissue behind a thin neighbour - the air behind the fat beside the spleen - and
move the half-way value far out; a fixed number of dilations would take voxels two layers
out.)
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage as ndi

from ..errors import InvalidInputError

_CROSS = ndi.generate_binary_structure(3, 1)


def partial_volume_boundary(mask: np.ndarray, image: np.ndarray, centre: float, noise: float,
                            spacing, join: Optional[np.ndarray] = None, allowed: Optional[np.ndarray] = None,
                            reach_mm: float = 4.0, ramp_mm: float = 3.0, min_layers: int = 2,
                            max_layers: int = 6) -> np.ndarray:
    """``mask`` plus the voxels next to it that are mostly object (50 % partial-volume rule).

    Parameters
    ----------
    mask : ndarray of bool
        The object as grown (3-D).
    image : ndarray
        Intensities on the same grid (the unsmoothed image on CT; the smoothed one where
        the noise is of the order of the contrasts, as on MR).
    centre : float
        The object's value (e.g. the median of ``image`` over ``mask``).
    noise : float
        Standard deviation of the noise of ``image``: a ramp ends where a step changes the
        value by less than three times this (the neighbour's plateau).
    spacing : sequence of float
        Voxel size (z, y, x) in mm.
    join : ndarray of bool, optional
        Voxels that join whenever they touch the object (the growth's in-range voxels).
    allowed : ndarray of bool, optional
        Voxels that may join by the partial-volume rule (others only through ``join``).
    reach_mm : float
        How far (mm) the boundary may move out from ``mask``, in layers of one voxel: at
        least ``min_layers`` and at most ``max_layers``.
    ramp_mm : float
        How far (mm) behind a voxel the tissue beyond it is looked for (beyond the first
        step, which is always taken): the width of a blurred edge.

    Returns
    -------
    ndarray of bool
        The object with its boundary voxels.
    """
    mask, spacing = _checked(image, mask, spacing, "partial_volume_boundary")
    if not mask.any():
        return mask.copy()
    layers = min(int(max_layers), max(int(min_layers), int(round(reach_mm / float(spacing.min())))))
    # One voxel of padding: the walk and the neighbour look-ups never leave the array,
    # and a padded voxel is never a neighbour (it is marked "object" for the walk).
    img = np.pad(np.asarray(image, dtype=np.float32), 1, mode="edge")
    cur = np.pad(mask, 1, constant_values=False)
    outside = np.pad(np.zeros(mask.shape, dtype=bool), 1, constant_values=True)
    may = np.ones(cur.shape, dtype=bool) if allowed is None else np.pad(np.asarray(allowed, bool), 1)
    always = np.zeros(cur.shape, dtype=bool) if join is None else np.pad(np.asarray(join, bool), 1)
    may &= ~outside
    always &= ~outside
    candidates = may | always
    strides = np.array(img.strides) // img.itemsize
    offsets = np.array([s * d for s in strides for d in (-1, 1)], dtype=np.intp)
    step_mm = np.repeat(spacing, 2)
    flat = img.ravel()
    c = np.float32(centre)
    threshold = np.float32(3.0 * max(float(noise), 0.0))
    # The object's own plateau: the grown region and the voxels of the object's value
    # joined to it directly (not through a partial-volume voxel).
    plateau = cur.copy()
    cur_flat, cand_flat, plateau_flat = cur.ravel(), candidates.ravel(), plateau.ravel()
    blocked = (cur | outside).ravel()
    # The first layer's voxels from one dilation; later layers from the neighbours of
    # the voxels just added (the cost follows the object's surface, not its box).
    idx = np.flatnonzero(ndi.binary_dilation(cur, structure=_CROSS) & ~cur & candidates)
    for _ in range(layers):
        if idx.size == 0:
            break
        v = flat[idx]
        off = np.abs(v - c)
        nb = idx[:, None] + offsets[None, :]
        # The change from the object's value to the voxel's is the ramp's part behind
        # it (one noisy value, not two).
        beyond = _ramp_end(flat, blocked, idx, offsets, step_mm, c, threshold, ramp_mm, off)
        # Mostly object (the 50 % rule).
        ok = off < np.abs(v - beyond)
        # A voxel of the object's value (within the noise) beside the object's plateau
        # continues it: the growth stopped short of the border there, the partial
        # volume lies farther out. One beside a partial-volume voxel only is a
        # neighbour of the same value behind a thin gap (a bowel loop beside the
        # pancreas), not the object.
        flat_ok = (off <= threshold) & plateau_flat[nb].any(axis=1)
        ok |= flat_ok
        ok &= may.ravel()[idx]
        ok |= always.ravel()[idx]
        if not ok.any():
            break
        added = idx[ok]
        cur_flat[added] = True
        blocked[added] = True
        plateau_flat[idx[ok & flat_ok]] = True
        near = (added[:, None] + offsets[None, :]).ravel()
        idx = np.union1d(idx[~ok], near[~cur_flat[near] & cand_flat[near]])
    return cur[1:-1, 1:-1, 1:-1].copy()


def _ramp_end(flat: np.ndarray, blocked: np.ndarray, idx: np.ndarray, offsets: np.ndarray,
              step_mm: np.ndarray, centre: np.float32, threshold: np.float32, ramp_mm: float,
              inward: np.ndarray) -> np.ndarray:
    """Value at the end of the ramp leading from each voxel away from ``centre``.

    Each walker steps to its face neighbour (not blocked) farthest in value from
    ``centre`` while that moves the value away from it by more than ``threshold``; the
    first step is always allowed, later ones while the path stays within ``ramp_mm``.
    A blurred edge's steps grow and then shrink; once they have shrunk, a step larger
    than the one before is a second edge behind a short plateau (fat two voxels thick
    with gas behind it): the walk stops on the plateau. ``inward``: the change from the
    object's value to each voxel's.
    """
    pos = idx.copy()
    val = flat[pos]
    dist = np.abs(val - centre)
    prev = np.asarray(inward, dtype=np.float32).copy()
    shrunk = np.zeros(idx.size, dtype=bool)
    travelled = np.zeros(idx.size, dtype=float)
    active = np.ones(idx.size, dtype=bool)
    first = True
    while active.any():
        a = np.flatnonzero(active)
        nb = pos[a, None] + offsets[None, :]
        d = np.abs(flat[nb] - centre)
        d[blocked[nb]] = -np.inf
        if not first:
            d[travelled[a, None] + step_mm[None, :] > ramp_mm] = -np.inf
        k = np.argmax(d, axis=1)
        best = d[np.arange(a.size), k]
        step = best - dist[a]
        # Steps differ by more than the noise before they count as shrinking or growing
        # (a linear ramp's equal steps do neither).
        move = (step > threshold) & ~(shrunk[a] & (step > prev[a] + threshold))
        active[a[~move]] = False
        shrunk[a] |= step < prev[a] - threshold
        prev[a] = step
        a, k = a[move], k[move]
        pos[a] = nb[move, k]
        dist[a] = best[move]
        travelled[a] += step_mm[k]
        first = False
    return flat[pos]


def half_way_surface(mask: np.ndarray, image: np.ndarray, centre: float, noise: float, spacing,
                     reach_mm: float = 3.0, window: int = 2, margin: float = 4.0,
                     ceiling: Optional[float] = None) -> np.ndarray:
    """``mask`` without its rim voxels that are mostly the neighbour (50 % rule, peeling).

    A voxel on the object's surface holds a mix of the object and the tissue beside it.
    Growth and a rim step in whole voxels take such mixes on any grid finer than the
    image's blur (an interpolated or thin-slice scan spreads each edge over two or more
    voxels): the object ends a voxel or two outside its 50 % partial-volume surface. Here
    the rim is peeled, layer by layer within ``reach_mm``: a surface voxel leaves when its
    value is nearer the neighbour's level than the object's. The neighbour's level is
    measured beside each voxel, as the mean of ``image`` over the voxels ``window``
    voxels away along the 26 directions that lie outside ``mask`` and do not touch it
    (past the mixed rim: on the neighbour's plateau), so each part of the surface is judged
    against the tissue it faces. Where that level differs from ``centre`` by no more
    than ``margin`` noise levels the image does not tell the two apart, and the voxel
    stays.

    Parameters
    ----------
    mask : ndarray of bool
        The object (3-D).
    image : ndarray
        Intensities on the same grid (unsmoothed on CT).
    centre : float
        The object's value (e.g. the median of ``image`` over ``mask``).
    noise : float
        Standard deviation of the noise of ``image``.
    spacing : sequence of float
        Voxel size (z, y, x) in mm.
    reach_mm : float
        How far (mm) the surface may move in, in layers of one voxel (at least one).
    window : int
        How far (voxels) from a voxel the neighbour's level is sampled.
    margin : float
        How many noise levels the neighbour's level must differ from ``centre`` by.
    ceiling : float, optional
        A neighbour's level at or above this is not judged (on CT: bone, whose surface
        the bone rules draw; a shell of cortex around marrow is the object's own).

    Returns
    -------
    ndarray of bool
        The peeled object (a copy).
    """
    mask, spacing = _checked(image, mask, spacing, "half_way_surface")
    if not mask.any():
        return mask.copy()
    layers = max(1, int(round(reach_mm / float(spacing.min()))))
    pad = int(window) + 1
    img = np.pad(np.asarray(image, dtype=np.float32), pad, mode="edge")
    cur = np.pad(mask, pad, constant_values=False)
    # The neighbour's plateau: outside the object and not touching it.
    inner = np.zeros(cur.shape, dtype=bool)
    inner[pad:-pad, pad:-pad, pad:-pad] = True
    plateau = ~ndi.binary_dilation(cur, structure=_CROSS) & inner
    strides = np.array(img.strides) // img.itemsize
    # The plateau is sampled ``window`` voxels out along the 26 directions around a voxel.
    r = np.array([-1, 0, 1])
    rays = np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)
    rays = rays[np.any(rays != 0, axis=1)] * int(window)
    cube_off = (rays @ strides).astype(np.intp)
    faces = np.array([s * d for s in strides for d in (-1, 1)], dtype=np.intp)
    flat, cur_flat, plateau_flat, inner_flat = img.ravel(), cur.ravel(), plateau.ravel(), inner.ravel()
    c = np.float32(centre)
    least = np.float32(margin * max(float(noise), 0.0))
    idx = np.flatnonzero(cur & ~ndi.binary_erosion(cur, structure=_CROSS))
    for _ in range(layers):
        if idx.size == 0:
            break
        nb = idx[:, None] + cube_off[None, :]
        on = plateau_flat[nb]
        count = on.sum(axis=1)
        level = np.where(on, flat[nb], np.float32(0)).sum(axis=1) / np.maximum(count, 1)
        v = flat[idx]
        peel = (count > 0) & (np.abs(level - c) > least) & (np.abs(v - level) < np.abs(v - c))
        if ceiling is not None:
            peel &= level < np.float32(ceiling)
        if not peel.any():
            break
        gone = idx[peel]
        cur_flat[gone] = False
        near = np.unique(np.concatenate([gone, (gone[:, None] + faces[None, :]).ravel()]))
        # Voxels the peel leaves outside and no longer touching the object: the
        # neighbour's side now (the peeled voxels were mostly the neighbour).
        free = near[~cur_flat[near] & inner_flat[near]]
        plateau_flat[free[~cur_flat[free[:, None] + faces[None, :]].any(axis=1)]] = True
        idx = near[cur_flat[near]]
    return cur[pad:-pad, pad:-pad, pad:-pad].copy()


def _checked(image: np.ndarray, mask: np.ndarray, spacing, caller: str) -> tuple:
    """``(mask as bool, spacing as float array)``, after checking both arrays are 3-D
    and of one shape (a clear error naming ``caller`` otherwise)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise InvalidInputError(f"{caller} needs a 3-D mask, got {mask.ndim}-D")
    if image.shape != mask.shape:
        raise InvalidInputError(f"image shape {image.shape} differs from mask shape {mask.shape}")
    return mask, np.asarray(spacing, dtype=float)
