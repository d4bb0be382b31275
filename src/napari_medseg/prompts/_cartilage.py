"""A click on a bright bar of soft tissue in CT: costal cartilage (weights-free backend).

Costal cartilage is soft tissue of 80-200 HU, partly calcified, a bar 8-15 mm thick
that runs from a rib's end through the chest wall, in muscle (40-60 HU) and fat. Its
interior is uneven (calcified spots, a darker core), so intensity growing within a
few noise levels of the click stops after a fraction of the bar (real CT resampled to
1.5 mm: 635 of 8856 voxels, Dice 0.13), and a click on it is not bone (no cortex, not
wrapped in bone). What defines it is a step: the bar is clearly brighter than the soft
tissue around it, and every voxel of it is closer to the bar's level than to that soft
tissue's.

1. **Is it a bright bar?** Only on CT (Hounsfield units): the click's neighbourhood
   (median) within ``LEVEL_HU``, at least ``STEP_HU`` above the soft tissue within
   ``AROUND_MM`` (the median of its voxels between ``SOFT_LOW_HU`` and the click's level:
   muscle, not fat, so a click at the level of muscle beside fat is no step; at most
   ``SOFT_HIGH_HU``, not an enhancing organ around a contrast-filled vessel), with at
   least ``DARK_FRACTION`` of that ball below the threshold (the bar is a small part of
   its surroundings; an organ's interior is not).
2. **The bar.** Voxels of the lightly smoothed image at least ``FRACTION`` of the way
   from the soft tissue to the click's level and below the bone side's threshold
   (half-way between the click's level and compact bone, ``CORTEX_HU``: the rib the
   cartilage runs into is another object), connected to the click within ``REACH_MM``;
   enclosed gaps (calcified spots above the bone side's threshold) filled.
3. **Plausibility.** The object is kept only when it is the click's tissue (its median
   closer to the click's level than to the threshold: a threshold that lets the
   surrounding muscle's noise through gives a region mostly of muscle) and a bar (no
   deeper than ``DEPTH_MM``); otherwise the caller keeps its intensity-grown region.

Nothing here knows anatomy by name: the session sees the image, the spacing, the
modality and the clicks.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage as ndi

from .._ndimage import ball_offsets, bbox, values_at
from ._robust import click_level

#: the click's neighbourhood (median, HU) within this range: brighter than muscle,
#: below compact bone
LEVEL_HU = (70.0, 250.0)
#: ... at least this far (HU) above the soft tissue around it
STEP_HU = 40.0
#: the soft tissue around the click: within this radius (mm) ...
AROUND_MM = 12.0
#: ... the median of its voxels above this (HU; fat and its partial volume below) and
#: below the click's level
SOFT_LOW_HU = -30.0
#: ... at most this (HU): the bar lies in muscle and fat; a brighter tissue around the
#: click is an enhancing organ (a contrast-filled vessel in the liver is a bright tube in
#: 100-130 HU, the vessel rules' business)
SOFT_HIGH_HU = 80.0
#: ... and at least this fraction of that ball below the bar's threshold
DARK_FRACTION = 0.5
#: the bar's voxels lie at least this fraction of the way from the soft tissue to the
#: click's level: below the 50 % rule, because the bar's surface borders fat as well as
#: muscle, and a voxel half cartilage half fat reads below the muscle-based half-way
#: value (real CT, the two cartilages' first clicks: 3 mm 0.795 / 0.808 at 0.5, 0.837 /
#: 0.825 at 0.4; 1.5 mm 0.775 / 0.712 -> 0.798 / 0.745)
FRACTION = 0.4
#: compact bone (HU): the bar stops half-way between its level and this
CORTEX_HU = 250.0
#: the bar is looked for within this distance of the click (mm, per axis): a costal
#: cartilage runs 3-12 cm; farther, the bar's threshold reaches the next cartilage
#: along the sternum (80 mm: first clicks 0.837 / 0.825 -> 0.799 / 0.793 on the real CT
#: at 3 mm, 0.798 / 0.745 -> 0.738 / 0.698 at 1.5 mm)
REACH_MM = 60.0
#: the object is a bar: no deeper than this (mm, surface distance; real CT cartilage
#: 4.5-6 mm)
DEPTH_MM = 8.0


def bar_levels(raw: np.ndarray, spacing: Sequence[float], click: Sequence[int]) -> Optional[tuple]:
    """``(soft, level)`` at a click on a bright bar of soft tissue (step 1 of the module), or ``None``.

    Only the balls around the click are read, so ``raw`` may be the full volume.

    Parameters
    ----------
    raw : numpy.ndarray
        CT intensities (HU).
    spacing : sequence of float
        Its spacing (mm, z, y, x).
    click : sequence of int
        The click (indices into ``raw``).

    Returns
    -------
    tuple or None
        The soft tissue's level around the click and the click's own level (HU).
    """
    spacing = np.asarray(spacing, dtype=float)
    click = tuple(int(c) for c in click)
    level = click_level(raw, click, spacing)
    if level is None or not LEVEL_HU[0] <= level < LEVEL_HU[1]:
        return None
    around = values_at(raw, click, ball_offsets(AROUND_MM + float(spacing.max()), spacing))
    soft_part = around[(around > SOFT_LOW_HU) & (around < level)]
    if soft_part.size < 10:
        return None
    soft = float(np.median(soft_part))
    if soft > SOFT_HIGH_HU or level - soft < STEP_HU:
        return None
    if float(np.mean(around < soft + FRACTION * (level - soft))) < DARK_FRACTION:
        return None
    return soft, level


def bright_bar(raw: np.ndarray, spacing: Sequence[float], click: Sequence[int],
               barrier: Optional[np.ndarray] = None, neg: Sequence[Sequence[int]] = ()) -> Optional[np.ndarray]:
    """The bright bar of soft tissue holding ``click`` (costal cartilage), or ``None``.

    Parameters
    ----------
    raw : numpy.ndarray
        CT intensities (HU) of the working grid.
    spacing : sequence of float
        Its spacing (mm, z, y, x).
    click : sequence of int
        The positive click (indices into ``raw``).
    barrier : numpy.ndarray, optional
        Voxels never part of the object (outside a box).
    neg : sequence of tuple
        Negative clicks: their voxels and the face neighbours are never part of it.

    Returns
    -------
    numpy.ndarray or None
        Boolean mask on ``raw``'s grid, or ``None`` when the click is not on a bright
        bar (the caller keeps its intensity-grown region).
    """
    spacing = np.asarray(spacing, dtype=float)
    click = tuple(int(c) for c in click)
    levels = bar_levels(raw, spacing, click)
    if levels is None:
        return None
    soft, level = levels
    low = soft + FRACTION * (level - soft)
    high = 0.5 * (level + CORTEX_HU)
    r = [int(math.ceil(REACH_MM / s)) for s in spacing]
    box = tuple(slice(max(0, c - k), min(n, c + k + 1)) for c, k, n in zip(click, r, raw.shape))
    local = tuple(c - b.start for c, b in zip(click, box))
    # Half a voxel of smoothing: the noise of a single voxel neither joins nor cuts the bar.
    sub = ndi.gaussian_filter(np.asarray(raw[box], dtype=np.float32),
                              0.5 * float(spacing.max()) / spacing, mode="nearest")
    never = np.zeros(sub.shape, dtype=bool)
    if barrier is not None:
        never |= barrier[box]
    for q in neg:
        lq = tuple(int(c) - b.start for c, b in zip(q, box))
        if all(0 <= c < n for c, n in zip(lq, never.shape)):
            never[tuple(slice(max(0, c - 1), c + 2) for c in lq)] = True
    cand = (sub >= np.float32(low)) & (sub < np.float32(high)) & ~never
    cand[local] = True
    lab, _ = ndi.label(cand)
    obj = lab == lab[local]
    inner = bbox(obj, pad=1)
    obj[inner] = ndi.binary_fill_holes(obj[inner])
    if never.any():
        # Filling must not bring back a negative click's voxels (nor the box's outside).
        obj &= ~never
        if not obj[local]:
            return None
        lab, _ = ndi.label(obj)
        obj = lab == lab[local]
    values = np.asarray(raw[box], dtype=np.float32)[obj]
    if float(np.median(values)) < low + 0.5 * (level - low):
        return None  # mostly the surrounding tissue's noise above the threshold
    dist = ndi.distance_transform_edt(np.pad(obj[inner], 1), sampling=spacing)
    if float(dist.max()) - 0.5 * float(spacing.min()) > DEPTH_MM:
        return None  # not a bar
    out = np.zeros(raw.shape, dtype=bool)
    out[box] = obj
    return out
