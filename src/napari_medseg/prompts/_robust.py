"""Robust intensity statistics of the weights-free backend (one home for median / MAD).

A click's neighbourhood, a region grown from it or a mask holds mostly one tissue plus
a few voxels of its neighbours (a partial-volume rim, a vessel, noise outliers): the
median and the median absolute deviation describe the tissue and ignore the rest.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .._ndimage import ball_offsets, values_at

#: MAD -> standard deviation for Gaussian noise
MAD_TO_SD = 1.4826


def robust_stats(values: np.ndarray, reject: bool = False) -> tuple:
    """Median and robust standard deviation (1.4826 x MAD) of ``values``.

    Parameters
    ----------
    values : numpy.ndarray
        Intensities (any shape; at least one value).
    reject : bool
        One outlier rejection pass: the statistics are recomputed from the values within
        3 robust SDs of the first median (when at least 3 remain). A click's ball near an
        edge then does not mix in the neighbour's voxels.

    Returns
    -------
    tuple of float
        ``(median, sd)``.
    """
    values = np.asarray(values)
    if values.size == 0:
        raise ValueError("robust_stats needs at least one value")
    if reject:
        # float64 for the rejection pass: the kept set must not depend on float32
        # rounding of values right at 3 SDs.
        values = values.astype(np.float64, copy=False)
    med = float(np.median(values))
    sd = MAD_TO_SD * float(np.median(np.abs(values - med)))
    if reject and sd > 0:
        kept = values[np.abs(values - med) <= 3.0 * sd]
        if kept.size >= 3:
            med = float(np.median(kept))
            sd = MAD_TO_SD * float(np.median(np.abs(kept - med)))
    return med, sd


def click_level(raw: np.ndarray, click: Sequence[int], spacing: Sequence[float]) -> Optional[float]:
    """The clicked tissue's level: the median of the click's 1.5 mm neighbourhood.

    At least the click's face neighbours on the finest axis are included, so one noisy
    or partial-volume voxel does not decide what the click is on.

    Parameters
    ----------
    raw : numpy.ndarray
        The image (z, y, x).
    click : sequence of int
        The click (indices into ``raw``).
    spacing : sequence of float
        Spacing (mm, z, y, x).

    Returns
    -------
    float or None
        The median, or ``None`` when the neighbourhood holds no voxel of ``raw``.
    """
    spacing = np.asarray(spacing, dtype=float)
    near = values_at(raw, tuple(int(c) for c in click), ball_offsets(max(1.5, 1.01 * float(spacing.min())), spacing))
    return float(np.median(near)) if near.size else None
