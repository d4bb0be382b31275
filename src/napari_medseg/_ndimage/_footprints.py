"""Structuring elements with a physical (millimetre) radius on anisotropic grids.

A footprint is either one boolean array, or a *decomposition*: a tuple of
``(array, repeats)`` pairs applied one after the other (scikit-image's convention for
``ball(..., decomposition="sequence")``). A decomposition approximates a large ball with
small elements, at a cost linear (not cubic) in the radius.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def mm_to_voxels(radius_mm: float, spacing: Sequence[float]) -> tuple:
    """Per-axis radius in whole voxels covering ``radius_mm`` (ceil, at least 0)."""
    return tuple(int(np.ceil(radius_mm / s - 1e-9)) for s in spacing)


def ellipsoid(radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Boolean ellipsoidal footprint of physical radius ``radius_mm`` (exact ball in mm).

    A voxel offset ``d`` (in voxels) is inside when ``sum((d * spacing)^2) <= r^2``, so
    the element is round in millimetres even for anisotropic voxels. An axis whose
    spacing exceeds the radius gets extent 1 (no reach across thick slices). Works for
    any number of axes (``len(spacing)``).
    """
    rad = [int(np.floor(radius_mm / s + 1e-9)) for s in spacing]
    grids = np.ogrid[tuple(slice(-r, r + 1) for r in rad)]
    dist2 = sum((g * s) ** 2 for g, s in zip(grids, spacing))
    return dist2 <= radius_mm**2 + 1e-9


def ball_offsets(radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Integer offsets (N, ndim) from the centre of the voxels of :func:`ellipsoid`."""
    fp = ellipsoid(radius_mm, spacing)
    return np.argwhere(fp) - np.asarray(fp.shape) // 2


def values_at(image: np.ndarray, centre: Sequence[int], offsets: np.ndarray) -> np.ndarray:
    """The values of ``image`` at ``centre + offsets`` (e.g. :func:`ball_offsets`) that lie
    inside it (a click near the volume's face reads the part of its ball that exists)."""
    pts = np.asarray(centre)[None, :] + offsets
    pts = pts[np.all((pts >= 0) & (pts < np.asarray(image.shape)[None, :]), axis=1)]
    return image[tuple(pts.T)]


def stepped_ball(radius_mm: float, spacing: Sequence[float]) -> tuple:
    """Decomposition of a 3D ball of ``radius_mm`` into 3x3x3 face-neighbour steps.

    Step ``k`` reaches along axis ``a`` only while ``k <= round(radius / spacing[a])``, so
    every axis gets its extent in millimetres (a diamond-like, not round, shape: cheap,
    for leak cutting and openings where the exact shape does not matter). Equal
    consecutive steps are grouped as ``(structure, repeats)``.
    """
    n = [int(round(radius_mm / s)) for s in spacing]
    out: list = []
    for k in range(1, max(n) + 1 if n else 1):
        st = np.zeros((3, 3, 3), dtype=bool)
        st[1, 1, 1] = True
        for axis in range(3):
            if k <= n[axis]:
                idx = [1, 1, 1]
                for v in (0, 2):
                    idx[axis] = v
                    st[tuple(idx)] = True
        if out and np.array_equal(out[-1][0], st):
            out[-1][1] += 1
        else:
            out.append([st, 1])
    return tuple((st, reps) for st, reps in out)


#: In-plane (y, x) 4- and 8-neighbour 3x3x3 elements (no reach along z).
PLANE4 = np.zeros((3, 3, 3), bool)
PLANE4[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
PLANE8 = np.zeros((3, 3, 3), bool)
PLANE8[1] = True


def octagon_disk(radius_mm: float, spacing_yx: Sequence[float]) -> tuple:
    """Decomposition of an in-plane disk of ``radius_mm`` (per axial slice, no z reach).

    Alternating the 8-neighbour square and the 4-neighbour cross gives an octagon whose
    axis reach is ``a + b`` steps and diagonal reach about ``1.06 (a + b)``: close to a
    disk. The step is the mean in-plane spacing. Returns ``((PLANE8, a), (PLANE4, b))``
    without the zero-repeat entries.
    """
    wy, wx = (float(s) for s in spacing_yx)
    r = radius_mm / (0.5 * (wy + wx))
    n = max(0, int(round(r)))
    a, b = n // 2, n - n // 2
    return tuple((st, k) for st, k in ((PLANE8, a), (PLANE4, b)) if k)


def is_decomposition(footprint) -> bool:
    """Whether ``footprint`` is a sequence of ``(array, repeats)`` pairs."""
    return isinstance(footprint, (tuple, list)) and not isinstance(footprint, np.ndarray)
