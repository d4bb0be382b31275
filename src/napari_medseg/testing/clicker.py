"""A simulated user for interactive-segmentation tests (the usual evaluation protocol).

The first click is the reference mask's deepest point (largest distance to its
boundary, in mm). Every further click goes to the deepest point of the largest error
region: inside a missed part (positive click) or inside a leak (negative click),
whichever is larger. This is how interactive methods are usually benchmarked, and it
is what a radiologist does: click where the mask is wrong.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def deepest_point(mask: np.ndarray, spacing_zyx) -> tuple:
    """The voxel of ``mask`` farthest from its boundary (mm)."""
    dist = ndi.distance_transform_edt(np.pad(mask, 1), sampling=spacing_zyx)[1:-1, 1:-1, 1:-1]
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(dist)), dist.shape))


def next_click(prediction: np.ndarray, reference: np.ndarray, spacing_zyx) -> tuple:
    """``(zyx, positive)`` of the next corrective click, or ``None`` if nothing is wrong."""
    missed = reference & ~prediction
    leaked = prediction & ~reference
    best = None
    for error, positive in ((missed, True), (leaked, False)):
        if not error.any():
            continue
        lab, n = ndi.label(error)
        sizes = np.bincount(lab.ravel())[1:]
        j = int(np.argmax(sizes)) + 1
        if best is None or sizes[j - 1] > best[0]:
            best = (int(sizes[j - 1]), lab == j, positive)
    if best is None:
        return None
    return deepest_point(best[1], spacing_zyx), best[2]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float((a & b).sum()) / total


def simulate(session, reference: np.ndarray, n_clicks: int = 3) -> list:
    """Run up to ``n_clicks`` simulated clicks; return the Dice after each click."""
    spacing = session.volume.spacing_zyx
    scores = []
    update = session.add_point(deepest_point(reference, spacing), positive=True)
    scores.append(dice(update.mask, reference))
    for _ in range(n_clicks - 1):
        click = next_click(update.mask, reference, spacing)
        if click is None:
            break
        update = session.add_point(click[0], positive=click[1])
        scores.append(dice(update.mask, reference))
    return scores
