"""Aerated lung on CT (weights-free backend): a click in the lung's parenchyma.

Lung parenchyma is air mixed with a little tissue and blood: -900..-700 HU where it is
well aerated, up to -500 HU where it is dependent or partial-volumed with the diaphragm,
crossed by vessels and bronchial walls of soft tissue. Its spread is one of texture,
not of noise, so intensity growing from one click (an interval of a few noise levels
around the click's value, stopped at every vessel's edge) gives a porous patch around
the click; the size prior then reads that patch's pores as a shallow object and cuts it
(real CT at 1.5 mm: a right lower lobe of 21824 voxels, 459 after one click).

:func:`lung_object` answers such a click with the lung itself: the connected voxels
darker than half-way from the click's value to water (0 HU: the soft tissue around the
lung, the 50 % partial-volume surface between the two), brighter than pure air (the
airways, bowel gas and the air outside the body are pure air: a click in the lung does
not run through the bronchi into the other lung or the trachea; the partial-volume
shells of those air spaces, one or two voxels thin, are cut off by an opening), with the
vessels enclosed in it filled. A click qualifies when the median of its neighbourhood
lies between pure air and ``LUNG_HU[1]``: fat, soft tissue and the content of bowel are
brighter, gas darker, and the ball around a click on the thin rim between gas and
soft tissue holds mostly one of the two.

CT only (Hounsfield units); nothing here knows anatomy by name: the session sees the
image, the spacing, the modality and the clicks. A fissure is a sheet thinner than a voxel
of most scans: lobes are told apart only where the opening cuts their contact (the real
CT's left lobes at its bases), else the object is the lung around the click.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .._ndimage import components_at, dilate, erode, fill_holes, stepped_ball, values_at

#: water (HU): the soft tissue around a lung lies at about this value
WATER_HU = 0.0
#: pure air (HU, smoothed): the airways, bowel gas and the air outside the body; aerated
#: lung stays above it
AIR_HU = -950.0
#: a click's neighbourhood median in this interval (HU, smoothed) is aerated lung
LUNG_HU = (AIR_HU, -500.0)


def lung_object(smoothed: np.ndarray, spacing: Sequence[float], click: tuple, offsets: np.ndarray,
                barrier: Optional[np.ndarray] = None,
                resolution_mm: Optional[Sequence[float]] = None) -> Optional[np.ndarray]:
    """The aerated lung holding ``click``, or ``None`` when the click is not in aerated lung.

    Parameters
    ----------
    smoothed : numpy.ndarray
        Lightly smoothed CT intensities (HU) of the working grid.
    spacing : sequence of float
        Voxel spacing (mm, z, y, x) of that grid.
    click : tuple
        The click (integer indices into ``smoothed``).
    offsets : numpy.ndarray
        Offsets (n, 3) of the click's neighbourhood (its statistics ball).
    barrier : numpy.ndarray, optional
        Voxels the object may not hold (outside a box).
    resolution_mm : sequence of float, optional
        The image's own resolution per axis (mm, ``_resolution``); None: the grid's.

    Returns
    -------
    numpy.ndarray or None
        Boolean mask of ``smoothed``'s shape.
    """
    values = values_at(smoothed, click, offsets)
    if not values.size:
        return None
    centre = float(np.median(values))
    if not LUNG_HU[0] < centre < LUNG_HU[1]:
        return None
    level = np.float32(0.5 * (centre + WATER_HU))
    candidates = (smoothed < level) & (smoothed > np.float32(AIR_HU))
    if barrier is not None:
        candidates &= ~barrier
    if not candidates[click]:
        return None
    region = components_at(candidates, [click])
    # The partial-volume shell around a space of pure air (an airway's lumen inside its
    # wall, bowel gas) passes through the lung's values too, one resolution element of
    # the image thin (a grid finer than the image spreads it over several voxels): an
    # opening by reconstruction of that radius cuts it where it leaves the lung.
    step = np.asarray(spacing, dtype=float)
    if resolution_mm is not None:
        step = np.maximum(step, np.asarray(resolution_mm, dtype=float))
    radius = float(step.max())
    core = erode(region, stepped_ball(radius, spacing), border_value=1)
    if core[click]:
        core = components_at(core, [click])
        region = dilate(core, stepped_ball(radius + float(np.max(spacing)), spacing), within=region)
    return fill_holes(region)
