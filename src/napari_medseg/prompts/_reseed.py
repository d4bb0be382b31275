"""A click on an edge: move the seed to the nearest voxel that looks like the object.

The protocol's first click (the deepest point of the reference) and a user's click
can land on a rim: a fluid-gas level in the stomach or bowel, a partial-volume voxel
between a vessel and its wall. There the edge term of the k-map is high on every
side of the click, the region grown from it stays a handful of voxels, and the click
gives no object at all. :func:`reseed` finds the voxel of the click's neighbourhood
that is well inside the click's intensity interval and off any edge (k-map <= 1),
nearest to the click; growth restarts from it (and the click).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def reseed(kmap: np.ndarray, click: Sequence[int], offsets: np.ndarray, spacing: Sequence[float],
           level: float = 1.0, exclude: Sequence[Sequence[int]] = ()) -> Optional[tuple]:
    """The voxel of ``click + offsets`` with ``kmap <= level`` nearest to the click (mm), or None.

    Parameters
    ----------
    kmap : numpy.ndarray
        Per-voxel distance from the click's intensity model, in robust standard
        deviations, with the edge term (the caller's k-map).
    click : sequence of int
        The click (z, y, x) on ``kmap``'s grid.
    offsets : numpy.ndarray
        ``(n, 3)`` integer offsets of the neighbourhood searched (a ball).
    spacing : sequence of float
        Voxel spacing (mm, z, y, x).
    level : float
        The k-map value a voxel must not exceed.
    exclude : sequence of tuple
        Voxels that are not candidates (the seeds already tried, whose k-map the caller
        set to 0).

    Returns
    -------
    tuple or None
        Integer index of the new seed.
    """
    pts = np.asarray(click, dtype=np.int64)[None, :] + np.asarray(offsets, dtype=np.int64)
    keep = np.all((pts >= 0) & (pts < np.asarray(kmap.shape)[None, :]), axis=1)
    pts = pts[keep]
    if not len(pts):
        return None
    ok = kmap[pts[:, 0], pts[:, 1], pts[:, 2]] <= level
    for e in exclude:
        ok &= ~np.all(pts == np.asarray(e, dtype=np.int64)[None, :], axis=1)
    if not ok.any():
        return None
    pts = pts[ok]
    d2 = (((pts - np.asarray(click)[None, :]) * np.asarray(spacing, dtype=float)[None, :]) ** 2).sum(axis=1)
    return tuple(int(v) for v in pts[int(np.argmin(d2))])
