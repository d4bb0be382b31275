"""A click on soft tissue sandwiched between two bones: an intervertebral disc (CT).

A disc is a slab of 60-120 HU soft tissue a few millimetres thick between two
endplates. Intensity growing fails on it: at 3 mm the slab is one or two voxels
thick, every voxel of it lies on the endplates' edge, and the gradient test stops the
growth after a few dozen voxels (0.08 Dice on the CT phantom's discs); the bone path
does not take it either (it is open all round, :func:`._bone.enclosure`). What
defines it is its position: bone on both sides along one axis, nothing but soft
tissue around it in the plane across that axis.

1. **Is it sandwiched?** Along each of 13 directions from the click, the nearest bone
   (a voxel at least ``BONE_STEP`` brighter than the click and at least ``BONE_HU``)
   on both sides within ``SIDE_MM``, the two together no more than ``GAP_MM`` apart
   (the working grid's face stands for the bone on one side: a disc cut by the first
   or last slice has its far endplate beyond it); and in the plane across the best such
   direction, at least ``OPEN_FRACTION`` of the directions run ``OPEN_MM`` without
   meeting bone (a disc; not the spinal canal or a vertebral body's marrow, which are
   walled in within the plane too).
2. **The slab.** The voxels like the click (within ``BAND_SD`` robust standard
   deviations, at least ``MIN_BAND_HU``) that have bone on both sides along that
   direction within the click's gap (plus a voxel), connected to the click; holes
   filled.

Nothing here knows anatomy by name: the session sees the image, the spacing, the
modality and the clicks.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage as ndi

from .._ndimage import ball_offsets, values_at
from ._robust import click_level, robust_stats

#: bone: at least this bright (HU) ...
BONE_HU = 150.0
#: ... and this much brighter than the click's neighbourhood (HU)
BONE_STEP = 60.0
#: the click's tissue is soft tissue: its neighbourhood's median within these (HU)
SOFT_RANGE = (20.0, 140.0)
#: the nearest bone on each side within this distance (mm) ...
SIDE_MM = 10.0
#: ... the two sides together (centre to centre) no more than this apart (mm)
GAP_MM = 14.0
#: across the sandwich axis, this fraction of the directions run free of bone ...
OPEN_FRACTION = 0.75
#: ... over this distance (mm)
OPEN_MM = 12.0
#: the slab's voxels lie within this many robust SD of the click's tissue ...
BAND_SD = 3.0
#: ... and never closer than this (HU) half-width
MIN_BAND_HU = 30.0
#: the slab is looked for within this distance of the click (mm; a disc is < 30 mm wide)
REACH_MM = 40.0


def _directions() -> np.ndarray:
    """The 13 directions of the 26-neighbourhood, one of each opposite pair."""
    dirs = [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) > (0, 0, 0)]
    return np.asarray(dirs, dtype=int)


def _first_hit(bone: np.ndarray, click: tuple, step: np.ndarray, spacing: np.ndarray, reach_mm: float,
               face: bool = False) -> float:
    """Distance (mm) along integer ``step`` from ``click`` to the first ``bone`` voxel (inf if none).

    ``face``: the first voxel beyond ``bone``'s faces counts as bone.
    """
    length = float(np.sqrt(((step * spacing) ** 2).sum()))
    pos = np.asarray(click)
    for k in range(1, int(reach_mm / length) + 1):
        q = pos + k * step
        if np.any(q < 0) or np.any(q >= np.asarray(bone.shape)):
            return k * length if face else math.inf
        if bone[tuple(q)]:
            return k * length
    return math.inf


def sandwich_axis(raw: np.ndarray, click: Sequence[int], spacing: np.ndarray) -> Optional[tuple]:
    """The direction along which ``click`` lies between two bones, or ``None``.

    Parameters
    ----------
    raw : numpy.ndarray
        CT intensities (HU) of the working grid.
    click : sequence of int
        The click (indices into ``raw``).
    spacing : numpy.ndarray
        Spacing (mm, z, y, x).

    Returns
    -------
    tuple or None
        ``(step, gap_mm, bone_level)``: the integer step of the sandwich direction,
        the bone-to-bone distance through the click and the bone threshold (HU).
    """
    spacing = np.asarray(spacing, dtype=float)
    click = tuple(int(c) for c in click)
    level = click_level(raw, click, spacing)
    if level is None or not SOFT_RANGE[0] <= level <= SOFT_RANGE[1]:
        return None
    bone_level = max(BONE_HU, level + BONE_STEP)
    reach = max(SIDE_MM, OPEN_MM) + float(spacing.max())
    r = [int(math.ceil(reach / s)) + 1 for s in spacing]
    box = tuple(slice(max(0, c - k), min(n, c + k + 1)) for c, k, n in zip(click, r, raw.shape))
    bone = raw[box] >= np.float32(bone_level)
    local = tuple(c - b.start for c, b in zip(click, box))
    best = None
    # The grid's faces count as bone on one side, not on both: what lies beyond them is
    # unknown (a disc cut by the first or last slice has its far endplate there; a
    # crop's face goes when the object touches it and the crop grows).
    for d in _directions():
        a = _first_hit(bone, local, d, spacing, SIDE_MM)
        b = _first_hit(bone, local, -d, spacing, SIDE_MM)
        if math.isinf(a) != math.isinf(b):
            a = min(a, _first_hit(bone, local, d, spacing, SIDE_MM, face=True))
            b = min(b, _first_hit(bone, local, -d, spacing, SIDE_MM, face=True))
        if a + b <= GAP_MM and (best is None or a + b < best[1]):
            best = (d, a + b)
    if best is None:
        return None
    axis = best[0] * spacing
    axis = axis / np.linalg.norm(axis)
    across = []
    for d in _directions():
        v = d * spacing
        if abs(float(np.dot(v / np.linalg.norm(v), axis))) < 0.5:
            across += [d, -d]
    free = [math.isinf(_first_hit(bone, local, d, spacing, OPEN_MM)) for d in across]
    if not across or float(np.mean(free)) < OPEN_FRACTION:
        return None
    return tuple(int(v) for v in best[0]), float(best[1]), bone_level


def _shifted_any(mask: np.ndarray, step: tuple, count: int) -> np.ndarray:
    """Voxels with a ``mask`` voxel at ``k * step`` from them for some k in 1..count."""
    out = np.zeros_like(mask)
    n = mask.shape
    for k in range(1, count + 1):
        off = [k * s for s in step]
        if any(abs(o) >= m for o, m in zip(off, n)):
            break
        dst = tuple(slice(max(0, -o), m - max(0, o)) for o, m in zip(off, n))
        src = tuple(slice(max(0, o), m - max(0, -o)) for o, m in zip(off, n))
        out[dst] |= mask[src]
    return out


def disc_object(raw: np.ndarray, spacing: np.ndarray, click: Sequence[int],
                barrier: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """The slab of soft tissue between two bones holding ``click``, or ``None``.

    Parameters
    ----------
    raw : numpy.ndarray
        CT intensities (HU) of the working grid.
    spacing : numpy.ndarray
        Spacing (mm, z, y, x).
    click : sequence of int
        The positive click.
    barrier : numpy.ndarray, optional
        Voxels never part of the object (outside a box, negative clicks).

    Returns
    -------
    numpy.ndarray or None
        Boolean mask on ``raw``'s grid, or ``None`` when the click is not sandwiched
        between two bones (the caller keeps its intensity-grown region).
    """
    spacing = np.asarray(spacing, dtype=float)
    click = tuple(int(c) for c in click)
    found = sandwich_axis(raw, click, spacing)
    if found is None:
        return None
    step, gap, bone_level = found
    r = [int(math.ceil(REACH_MM / s)) + 1 for s in spacing]
    box = tuple(slice(max(0, c - k), min(n, c + k + 1)) for c, k, n in zip(click, r, raw.shape))
    sub = raw[box]
    local = tuple(c - b.start for c, b in zip(click, box))
    vals = values_at(sub, local, ball_offsets(max(3.0, 1.01 * float(spacing.max())), spacing))
    vals = vals[vals < bone_level]
    med, sd = robust_stats(vals) if vals.size else (float(sub[local]), 0.0)
    band = max(BAND_SD * sd, MIN_BAND_HU)
    bone = sub >= np.float32(bone_level)
    length = float(np.sqrt(((np.asarray(step) * spacing) ** 2).sum()))
    count = int(math.ceil(gap / length)) + 1
    # Beyond the grid's faces lies the far endplate of a disc cut by them (as above),
    # on one side only.
    pad = [(count if b.start == 0 else 0, count if b.stop == n else 0) for b, n in zip(box, raw.shape)]
    walled = np.pad(bone, pad, constant_values=True)
    inner = tuple(slice(lo, lo + k) for (lo, _), k in zip(pad, bone.shape))
    back = tuple(-s for s in step)
    between = ((_shifted_any(walled, step, count) & _shifted_any(walled, back, count))[inner]
               & (_shifted_any(bone, step, count) | _shifted_any(bone, back, count)))
    cand = between & ~bone & (np.abs(sub - np.float32(med)) <= np.float32(band))
    if barrier is not None:
        cand &= ~barrier[box]
    cand[local] = True
    lab, _ = ndi.label(cand)
    part = ndi.binary_fill_holes(lab == lab[local])
    out = np.zeros(raw.shape, dtype=bool)
    out[box] = part
    return out
