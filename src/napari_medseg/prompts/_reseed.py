"""A click on an edge: move the seed to the nearest voxel that looks like the object.

The protocol's first click (the deepest point of the reference) and a user's click
can land on a rim: a fluid-gas level in the stomach or bowel, a partial-volume voxel
between a vessel and its wall. There the edge term of the k-map is high on every
side of the click, the region grown from it stays a handful of voxels, and the click
gives no object at all. :func:`reseed` finds the voxel of the click's neighbourhood
that is well inside the click's intensity interval and off any edge (k-map <= 1),
nearest to the click; growth restarts from it (and the click).

A click on the rim of a speck smaller than its surroundings (a gas or fat speck in the
stomach's content) has no such voxel: every voxel of its value is on the speck's edge.
:func:`dominant_seed` gives the nearest voxel of the tissue most of the wider
neighbourhood holds, which is grown with its own intensity model instead.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ._robust import robust_stats


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
    pts = _ball_points(kmap.shape, click, offsets)
    if not len(pts):
        return None
    ok = kmap[pts[:, 0], pts[:, 1], pts[:, 2]] <= level
    for e in exclude:
        ok &= ~np.all(pts == np.asarray(e, dtype=np.int64)[None, :], axis=1)
    if not ok.any():
        return None
    return _nearest(pts[ok], click, spacing)


def dominant_seed(image: np.ndarray, change: np.ndarray, click: Sequence[int], offsets: np.ndarray,
                  spacing: Sequence[float], noise: float, level: float = 1.0) -> Optional[tuple]:
    """The voxel of the click's neighbourhood nearest to it that holds the neighbourhood's own tissue, or None.

    A click whose own value gives no region and no voxel around it in that value's range
    (:func:`reseed`) lies on something smaller than its neighbourhood: the rim of a gas
    or fat speck inside the stomach's content, a partial-volume voxel of a vessel in an
    organ. The tissue the user pointed into is the one most of the neighbourhood holds:
    its robust centre and spread (values farther than 3 spreads from the first median
    left out) give a new intensity model, and the nearest voxel (mm) within ``level``
    spreads of that centre whose intensity change per voxel (``change``) is also within
    ``level`` spreads is that tissue's seed. None when the click itself is of that tissue
    (within 3 spreads: its failure is not a matter of which tissue) or no voxel
    qualifies.

    Parameters
    ----------
    image : numpy.ndarray
        Smoothed intensities (the growth's working grid).
    change : numpy.ndarray
        Per-voxel intensity change across one voxel (the growth's edge term before it is
        divided by the spread), same grid.
    click : sequence of int
        The click (z, y, x) on that grid.
    offsets : numpy.ndarray
        ``(n, 3)`` integer offsets of the neighbourhood (the click's ball).
    spacing : sequence of float
        Voxel spacing (mm, z, y, x).
    noise : float
        The image noise; the spread is at least this.
    level : float
        How many spreads from the tissue's centre, and of change per voxel, a seed may be.

    Returns
    -------
    tuple or None
        Integer index of the seed.
    """
    click = tuple(int(c) for c in click)
    pts = _ball_points(image.shape, click, offsets)
    if len(pts) < 3:
        return None
    values = np.asarray(image[pts[:, 0], pts[:, 1], pts[:, 2]], dtype=np.float64)
    centre, spread = robust_stats(values, reject=True)
    spread = max(float(spread), float(noise), 1e-6)
    if abs(float(image[click]) - centre) <= 3.0 * spread:
        return None
    steep = np.asarray(change[pts[:, 0], pts[:, 1], pts[:, 2]], dtype=np.float64)
    ok = (np.abs(values - centre) <= level * spread) & (steep <= level * spread)
    if not ok.any():
        return None
    return _nearest(pts[ok], click, spacing)


def _ball_points(shape: Sequence[int], click: Sequence[int], offsets: np.ndarray) -> np.ndarray:
    """``click + offsets`` inside an array of ``shape`` (``(n, 3)`` integer indices)."""
    pts = np.asarray(click, dtype=np.int64)[None, :] + np.asarray(offsets, dtype=np.int64)
    return pts[np.all((pts >= 0) & (pts < np.asarray(shape)[None, :]), axis=1)]


def _nearest(pts: np.ndarray, click: Sequence[int], spacing: Sequence[float]) -> tuple:
    """The point of ``pts`` nearest to ``click`` in millimetres."""
    d2 = (((pts - np.asarray(click)[None, :]) * np.asarray(spacing, dtype=float)[None, :]) ** 2).sum(axis=1)
    return tuple(int(v) for v in pts[int(np.argmin(d2))])
