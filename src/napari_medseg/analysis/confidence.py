"""Per-structure confidence of an automatic segmentation, and which structures to review.

The voxel maps come from the model (:class:`~napari_medseg.inference.resample.ConfidenceMaps`:
the softmax probability of the chosen class, the normalised entropy, the fold
disagreement). This module sums them up per structure:

* ``mean_confidence``: the mean probability of the chosen class inside the structure;
* ``fraction_below``: the fraction of its voxels whose probability is below
  ``thresholds.voxel``;
* ``boundary_confidence``: the mean probability on its surface voxels (a voxel of the
  structure with a face neighbour outside it), where errors of a good model live;

and flags a structure for review when any figure crosses its threshold
(:class:`ReviewThresholds`, documented defaults). These are the model's own
probabilities: a flag says "the model hesitated here", not "this is wrong", and an
unflagged structure can still be wrong (confidence is not accuracy).

:func:`fit_temperature` fits the softmax temperature that makes the probabilities match
the user's labelled cases (minimum negative log-likelihood).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np

from .._ndimage import erode, label_boxes

__all__ = ["ReviewThresholds", "StructureConfidence", "summarise_confidence", "flagged",
           "fit_temperature", "CONFIDENCE_COLUMNS"]

#: Column names the statistics table and the batch results gain.
CONFIDENCE_COLUMNS = ("mean_confidence", "fraction_below", "boundary_confidence", "review")


@dataclass(frozen=True)
class ReviewThresholds:
    """When a structure is flagged for review (defaults are documented in docs/auto_segmentation.md).

    Parameters
    ----------
    voxel : float
        A voxel is "unsure" when the probability of its class is below this (0.9).
    mean : float
        Flag when the mean probability inside the structure is below this (0.85).
    fraction_below : float
        Flag when more than this fraction of its voxels is unsure (0.25).
    boundary : float
        Flag when the mean probability on its surface is below this (0.7).
    """

    voxel: float = 0.9
    mean: float = 0.85
    fraction_below: float = 0.25
    boundary: float = 0.7

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"review threshold {name} must be in [0, 1], got {value!r}")


@dataclass
class StructureConfidence:
    """The confidence figures of one structure (see the module docstring)."""

    id: int
    name: str
    voxels: int
    mean_confidence: float
    fraction_below: float
    boundary_confidence: float
    review: bool
    reasons: list = field(default_factory=list)
    #: a voxel (z, y, x) to show: the structure's centre on its least sure axial slice
    view_point_vox: tuple = ()

    def as_dict(self) -> dict:
        d = asdict(self)
        d["view_point_vox"] = [int(v) for v in self.view_point_vox]
        for k in ("mean_confidence", "fraction_below", "boundary_confidence"):
            d[k] = round(float(d[k]), 4)
        return d


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face neighbour outside it (the image border counts as outside)."""
    from .._ndimage import structure

    return mask & ~erode(mask, structure(mask.ndim, 1), border_value=0)


def summarise_confidence(labels: np.ndarray, max_prob: np.ndarray,
                         names: Optional[Mapping[int, str]] = None,
                         thresholds: Optional[ReviewThresholds] = None,
                         ids: Optional[Sequence[int]] = None) -> list:
    """Per-structure confidence figures and review flags.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer label map (0 = background).
    max_prob : numpy.ndarray
        The probability of each voxel's class, same shape (``ConfidenceMaps.max_prob``).
    names : mapping, optional
        ``{id: name}``.
    thresholds : ReviewThresholds, optional
        Defaults: :class:`ReviewThresholds()`.
    ids : sequence of int, optional
        The structures to summarise (default: every non-zero id present).

    Returns
    -------
    list of StructureConfidence
        In id order.

    Raises
    ------
    ValueError
        The two arrays differ in shape.
    """
    labels = np.asarray(labels)
    conf = np.asarray(max_prob)
    if labels.shape != conf.shape:
        raise ValueError(f"the confidence map {conf.shape} is not on the labels' grid {labels.shape}")
    t = thresholds or ReviewThresholds()
    names = dict(names or {})
    boxes = label_boxes(labels, ids=None if ids is None else [int(i) for i in ids if int(i) > 0])
    if boxes is None:  # negative or huge ids: fall back to one pass per id
        present = [int(i) for i in np.unique(labels) if i > 0]
        boxes = {i: tuple(slice(0, n) for n in labels.shape) for i in present}
    out = []
    for sid in sorted(boxes):
        box = boxes[sid]
        mask = labels[box] == sid
        n = int(mask.sum())
        if n == 0:
            continue
        c = conf[box]
        inside = c[mask].astype(np.float64)
        surface = _surface(mask)
        on_surface = c[surface].astype(np.float64) if surface.any() else inside
        mean = float(inside.mean())
        below_mask = mask & (c < t.voxel)
        below = float(below_mask.sum()) / n
        boundary = float(on_surface.mean())
        reasons = []
        if mean < t.mean:
            reasons.append(f"mean confidence {mean:.2f} < {t.mean:g}")
        if below > t.fraction_below:
            reasons.append(f"{below:.0%} of voxels below {t.voxel:g} (> {t.fraction_below:.0%})")
        if boundary < t.boundary:
            reasons.append(f"boundary confidence {boundary:.2f} < {t.boundary:g}")
        # where to look: the axial slice with the most unsure voxels (else the largest)
        per_slice = below_mask.sum(axis=(1, 2)) if below_mask.any() else mask.sum(axis=(1, 2))
        z = int(np.argmax(per_slice))
        yy, xx = np.nonzero(mask[z])
        cy, cx = yy.mean(), xx.mean()
        k = int(np.argmin((yy - cy) ** 2 + (xx - cx) ** 2))  # a voxel of the structure
        point = (z + box[0].start, int(yy[k]) + box[1].start, int(xx[k]) + box[2].start)
        out.append(StructureConfidence(
            id=int(sid), name=str(names.get(int(sid), f"label {int(sid)}")), voxels=n,
            mean_confidence=mean, fraction_below=below, boundary_confidence=boundary,
            review=bool(reasons), reasons=reasons, view_point_vox=point))
    return out


def flagged(summary: Sequence[StructureConfidence]) -> list:
    """The structures to review, least confident first."""
    return sorted((s for s in summary if s.review), key=lambda s: s.mean_confidence)


def fit_temperature(logit_sets: Sequence, label_sets: Sequence, *, bounds=(0.05, 20.0),
                    max_voxels: int = 2_000_000, seed: int = 0) -> float:
    """The softmax temperature minimising the negative log-likelihood of the true labels.

    Parameters
    ----------
    logit_sets : sequence of array-like
        Per case, (C, Z, Y, X) class scores on the labels' grid.
    label_sets : sequence of array-like
        Per case, the reference labels (ids 0..C-1).
    bounds : (float, float)
        Search interval (the NLL is convex in 1/T: a bounded scalar search suffices).
    max_voxels : int
        A fixed random sample of at most this many voxels over all cases keeps it fast.
    seed : int
        Seeds the sample.

    Returns
    -------
    float
        T > 1 when the model is over-confident on these cases, < 1 when under-confident.

    Raises
    ------
    ValueError
        No cases, shapes that do not match, or label ids outside the model's classes.
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    if len(logit_sets) == 0 or len(logit_sets) != len(label_sets):
        raise ValueError("give as many label maps as score arrays (at least one case)")
    rng = np.random.default_rng(seed)
    total = sum(int(np.asarray(y).size) for y in label_sets)
    zs, ys = [], []
    for k, (z, y) in enumerate(zip(logit_sets, label_sets)):
        z, y = np.asarray(z), np.asarray(y)
        if z.shape[1:] != y.shape:
            raise ValueError(f"case {k + 1}: scores {z.shape[1:]} and labels {y.shape} differ in shape")
        if int(y.min()) < 0 or int(y.max()) >= z.shape[0]:
            raise ValueError(f"case {k + 1}: label ids {int(y.min())}..{int(y.max())} are outside the "
                             f"model's {z.shape[0]} classes")
        take = max(1, int(round(max_voxels * y.size / max(total, 1))))
        idx = rng.choice(y.size, size=min(take, y.size), replace=False)
        zs.append(z.reshape(z.shape[0], -1)[:, idx].astype(np.float64))
        ys.append(y.ravel()[idx].astype(np.int64))
    z = np.concatenate(zs, axis=1)
    y = np.concatenate(ys)
    true = z[y, np.arange(y.size)]

    def nll(t):
        return float(np.mean(logsumexp(z / t, axis=0) - true / t))

    res = minimize_scalar(nll, bounds=bounds, method="bounded", options={"xatol": 1e-3})
    return float(res.x)
