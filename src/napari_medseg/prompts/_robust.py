"""Robust intensity statistics of the weights-free backend (one home for median / MAD).

A click's neighbourhood, a region grown from it or a mask holds mostly one tissue plus
a few voxels of its neighbours (a partial-volume rim, a vessel, noise outliers): the
median and the median absolute deviation describe the tissue and ignore the rest.
"""

from __future__ import annotations

import numpy as np

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
