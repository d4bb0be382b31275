"""A simulated user for interactive-segmentation tests (the usual evaluation protocol).

The first click is the reference mask's deepest point (largest distance to its
boundary, in mm). Every further click goes to the deepest point of the largest error
region: inside a missed part (positive click) or inside a leak (negative click),
whichever is larger. This is how interactive methods are usually benchmarked, and it
is what a radiologist does: click where the mask is wrong.

:func:`structures` lists the objects a protocol run clicks on (each connected part of
>= 200 voxels of each label), :func:`run_protocol` runs the clicks on one object and
records Dice and latency after each (and, with ``explain=True``, what each correction
added and removed: :class:`Correction`), :func:`mr_like` gives the MR-like contrast of the
CT phantom the protocol benchmark uses (:func:`napari_medseg.phantom.mr_contrast`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

#: Dice drop of a corrective click that counts as "made it worse".
WORSE = 0.02


def _box(mask: np.ndarray, pad: int = 1) -> tuple:
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(axis=0) - pad, 0)
    hi = np.minimum(idx.max(axis=0) + pad + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def deepest_point(mask: np.ndarray, spacing_zyx) -> tuple:
    """The voxel of ``mask`` farthest from its boundary (mm); the volume's faces count as boundary."""
    box = _box(mask)
    sub = mask[box]
    dist = ndi.distance_transform_edt(np.pad(sub, 1), sampling=spacing_zyx)[1:-1, 1:-1, 1:-1]
    j = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return tuple(int(v) + b.start for v, b in zip(j, box))


def interior_points(mask: np.ndarray, spacing_zyx, n: int, seed: int = 0, depth: float = 0.5) -> list:
    """``n`` voxels of ``mask`` drawn at random among those at least ``depth`` times the
    deepest point's distance from the boundary (mm): where else a user might click first.

    The draw is reproducible (``seed``); fewer points come back when fewer voxels qualify.
    """
    box = _box(mask)
    sub = mask[box]
    dist = ndi.distance_transform_edt(np.pad(sub, 1), sampling=spacing_zyx)[1:-1, 1:-1, 1:-1]
    candidates = np.argwhere(dist >= depth * dist.max())
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(candidates), size=min(n, len(candidates)), replace=False)
    return [tuple(int(v) + b.start for v, b in zip(candidates[i], box)) for i in sorted(chosen)]


def next_click(prediction: np.ndarray, reference: np.ndarray, spacing_zyx) -> tuple:
    """``(zyx, positive)`` of the next corrective click, or ``None`` if nothing is wrong.

    The largest connected error region (face connectivity) decides: a missed region
    gives a positive click, a leaked one a negative click, each at its deepest point.
    """
    union = prediction | reference
    if not union.any():
        return None
    box = _box(union)
    pred, ref = prediction[box], reference[box]
    best = None
    for error, positive in ((ref & ~pred, True), (pred & ~ref, False)):
        if not error.any():
            continue
        lab, n = ndi.label(error)
        sizes = np.bincount(lab.ravel())[1:]
        j = int(np.argmax(sizes)) + 1
        if best is None or sizes[j - 1] > best[0]:
            best = (int(sizes[j - 1]), lab == j, positive)
    if best is None:
        return None
    p = deepest_point(best[1], spacing_zyx)
    return tuple(c + b.start for c, b in zip(p, box)), best[2]


def error_region(prediction: np.ndarray, reference: np.ndarray, click: tuple, positive: bool) -> np.ndarray:
    """The connected error region (face connectivity) holding ``click``.

    Parameters
    ----------
    prediction, reference : numpy.ndarray
        Boolean masks of the same shape (z, y, x).
    click : tuple of int
        The click's voxel (z, y, x).
    positive : bool
        True: the region of missed voxels (reference, not predicted); False: of leaked
        voxels (predicted, not reference).

    Returns
    -------
    numpy.ndarray
        Boolean mask of the region (all False when the click lies in no such error).
    """
    error = (reference & ~prediction) if positive else (prediction & ~reference)
    if not error[tuple(click)]:
        return np.zeros(error.shape, dtype=bool)
    box = _box(error)
    lab, _ = ndi.label(error[box])
    out = np.zeros(error.shape, dtype=bool)
    out[box] = lab == lab[tuple(int(c) - b.start for c, b in zip(click, box))]
    return out


@dataclass
class Correction:
    """What one corrective click did, measured against the reference.

    ``target``: voxels of the error region the click was placed in (the missed part for
    a positive click, the leak for a negative one); ``added`` / ``removed``: voxels the
    click added to / removed from the mask, ``*_in_reference``: of those, the ones inside
    the reference (an addition's are right, a removal's are wrong), ``*_in_target``: the
    ones inside the targeted error region; ``value``: the image's value at the click.
    """

    positive: bool
    value: float
    target: int
    added: int
    added_in_reference: int
    added_in_target: int
    removed: int
    removed_in_reference: int
    removed_in_target: int

    def describe(self) -> str:
        """One line: sign, click value, the targeted region and what changed in it."""
        sign = "+" if self.positive else "-"
        return (f"{sign} at {self.value:7.0f} | target {self.target:6d} | added {self.added:6d} "
                f"(in reference {self.added_in_reference}, in target {self.added_in_target}) | removed "
                f"{self.removed:6d} (in reference {self.removed_in_reference}, in target {self.removed_in_target})")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two masks (1.0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float((a & b).sum()) / total


@dataclass
class ProtocolResult:
    """Dice and latency after each click of one protocol run."""

    dice: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    clicks: list = field(default_factory=list)  # (zyx, positive)
    #: what each corrective click did (:class:`Correction`; ``run_protocol(explain=True)``)
    corrections: list = field(default_factory=list)

    def worse(self, drop: float = WORSE) -> list:
        """Indices (0-based click number) of corrections that lowered Dice by more than ``drop``."""
        return [i for i in range(1, len(self.dice)) if self.dice[i] < self.dice[i - 1] - drop]

    def padded(self, n: int) -> list:
        """Dice after clicks 1..n; a run that stopped early (perfect mask) repeats its last value."""
        d = list(self.dice) or [0.0]
        return d + [d[-1]] * (n - len(d))


def run_protocol(session, reference: np.ndarray, n_clicks: int = 5, explain: bool = False) -> ProtocolResult:
    """Click on ``reference`` like the standard protocol; the session must hold the volume.

    The session is reset first. Click 1 is at the deepest point of ``reference``;
    clicks 2..n correct the largest error region. Stops early when the mask is perfect.
    ``explain``: also record what each correction added and removed
    (``ProtocolResult.corrections``; costs a copy of the mask per click, outside the
    timed call).
    """
    spacing = session.volume.spacing_zyx
    session.reset()
    out = ProtocolResult()
    click = (deepest_point(reference, spacing), True)
    previous = None
    for _ in range(n_clicks):
        target = None
        if explain and previous is not None:
            target = error_region(previous, reference, click[0], click[1])
        t = time.perf_counter()
        update = session.add_point(click[0], positive=click[1])
        out.seconds.append(time.perf_counter() - t)
        out.clicks.append(click)
        out.dice.append(dice(update.mask, reference))
        if target is not None:
            mask = np.asarray(update.mask, dtype=bool)
            added, removed = mask & ~previous, previous & ~mask
            out.corrections.append(Correction(
                positive=bool(click[1]), value=float(session.volume.array[tuple(click[0])]),
                target=int(target.sum()), added=int(added.sum()),
                added_in_reference=int((added & reference).sum()), added_in_target=int((added & target).sum()),
                removed=int(removed.sum()), removed_in_reference=int((removed & reference).sum()),
                removed_in_target=int((removed & target).sum())))
        if explain:
            previous = np.array(update.mask, dtype=bool)
        click = next_click(update.mask, reference, spacing)
        if click is None:
            break
    return out


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


def structures(labels: np.ndarray, names: dict, min_voxels: int = 200) -> dict:
    """``name -> mask`` of every connected part (>= ``min_voxels``) of every label.

    One click session segments one connected object, so a label in several pieces
    (ribs, a lung cut by the field of view) gives one structure per piece
    (``"ribs#2"``); the largest piece keeps the plain name.
    """
    out = {}
    for i in np.unique(labels):
        if i == 0:
            continue
        name = names.get(int(i), f"label_{int(i)}")
        for k, piece in enumerate(pieces(labels, int(i), min_voxels)):
            out[name if k == 0 else f"{name}#{k + 1}"] = piece
    return out


def pieces(labels: np.ndarray, label_id: int, min_voxels: int = 200) -> list:
    """The connected pieces (>= ``min_voxels``) of one label, largest first."""
    lab, _ = ndi.label(labels == label_id)
    sizes = np.bincount(lab.ravel())[1:]
    return [lab == (j + 1) for j in np.argsort(sizes)[::-1] if sizes[j] >= min_voxels]


def mr_like(phantom, seed: int = 0, noise: float = 18.0, bias: float = 0.2, weighting: str = "T1"):
    """An MR-like contrast of a CT phantom for the click protocol: a Volume, modality ``"MR"``.

    :func:`napari_medseg.phantom.mr_contrast` (the one home of the phantom's MR contrast,
    what ``medseg sample --modality mr`` writes) with this benchmark's defaults: T1-weighted-
    like, seed 0, noise 18, a +-20 % bias field. The label map stays the ground truth.
    """
    from ..phantom import mr_contrast

    return mr_contrast(phantom, weighting, seed=seed, noise=noise, bias=bias)
