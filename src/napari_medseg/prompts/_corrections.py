"""Corrective clicks that act locally on the current mask (weights-free backend).

A radiologist's second and later clicks say "this part is missing" or "this part is
not the object". Re-segmenting from all clicks at once redraws the whole object and
can make it worse far from the click (a negative click that moves the intensity
interval, a positive click whose new seed leaks). Here a correction changes the mask
only near the click, and by no more than the click's own evidence supports:

* **positive** (a missed region): the region grown from the new click alone (with the
  negative clicks as barriers) is added, limited to a ball around the click of twice
  the missed region's depth (the click lies at its deepest point: the smaller of the
  click's depth in its own region and its distance to the mask), and to its part
  connected to the click. A region that fills that whole ball was bounded by no edge
  there (a same-intensity neighbour): only a ball of the click's own depth is added
  (depths are measured after closing gaps of a few voxels: noise, vessels). A
  positive click never removes anything. When the grown region is not made of the
  clicked tissue (a partial-volume click on the object's rim, moved by the session
  into the neighbour's interior), only its object-like voxels are added; a click apart
  from the mask whose value is nearer the region's than the object's is the region's
  tissue (another compartment), not a rim.
* **negative** (a leak): a leak of clearly different intensity (a lesion inside the
  organ, fat, bowel content) goes whole, by intensity: the mask voxels joined to the
  click whose value is nearer the click's than the object's and not beyond the click's
  by more than half the step (the object's rim blurred with a brighter third tissue is
  not the clicked tissue), outside the mask's core. Otherwise the mask is split by
  competition between seeds: "not the object" = the negative clicks; "object" = the
  positive clicks, the mask voxels nearer a positive click than the negative one
  (for a click at least 6 mm deep and deeper than the mask at the positive clicks,
  only those no deeper than twice that: a thin object's thick leak goes on its side
  too; when the click's value differs from the object's by more than ``MARKER_SD``
  spreads, only those nearer the object's value than the click's: the click is a
  seed of its tissue, a muscle layer a thin cartilage leaked into runs past the
  positive click), those beyond a locality radius, and the mask's *core* (voxels deeper than the
  negative click: a leak is no thicker than where it was clicked). The fronts meet
  at the narrowest neck or the strongest edge between them (marker watershed on the
  larger of the gradient and the mask's shallowness); for a leak thinner than the
  mask at the positive clicks the split is made twice, with the mask's depth counted
  fully and only up to the click's own depth (a leak widening into its junction with
  the object has no neck), and the click takes what it wins in either; when the mask
  at the positive clicks is deeper than the click's core depth (a layer leaked along
  a thick object: the layer and the object's rim beside it are equally shallow), a
  third split on the gradient alone runs along the layer. Of what the click wins, when
  the click's tissue still differs from the object's (a thin rib along the muscle it
  leaked into), only the click-like voxels.

So the rest of the mask is never redrawn: a correction cannot lower the overlap far
from where the user clicked.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from scipy import ndimage as ndi

from .._ndimage import ball_offsets, bbox
from ._leak_guard import click_depth
from ._robust import robust_stats

#: a leak is no thicker than where the user clicked in it: mask voxels deeper than
#: this many times the negative click's depth (plus a voxel) are the object's core
CORE_DEPTH = 1.25
#: the object's core (deeper than a negative click) tells the object's value when it
#: holds at least this many voxels
CORE_MIN_VOXELS = 27
#: a positive correction adds at most this many times the missed region's depth
#: around the click (and never less than ``MIN_ADD_MM``)
ADD_REACH = 2.0
MIN_ADD_MM = 6.0
#: an addition filling more than this fraction of its limit ball was bounded by
#: nothing there: only a ball of the click's depth is added
FILL_LIMIT = 0.6
#: the missed region's depth is measured within this distance of the click (mm)
NEAR_MM = 6.0
#: a missed part of the object's own tissue holding at most this many balls of its
#: depth is added whole, wherever it reaches (the volume of the ``ADD_REACH`` ball)
WHOLE_BALLS = ADD_REACH ** 3
#: a correction works on at most this many voxels (a strided grid around the click beyond)
WORK_VOXELS = 1_000_000
#: a negative click at least this deep (mm) in the mask may compete for the mask beyond
#: its locality radius (a thick leak, a neighbour organ, goes in a few clicks); a
#: shallower one (a thin leak along a rib or a rim) acts within the radius only
FAR_DEPTH_MM = 6.0
#: no correction reaches farther from its click (mm)
MAX_REACH_MM = 150.0
#: the object's depth at a positive click is measured up to this distance (mm)
OBJECT_DEPTH_CAP_MM = 40.0
#: a negative click this many robust SDs from the positive clicks is another tissue
INTENSITY_SD = 4.0
#: a positive click whose value is within this fraction of the object-to-region
#: difference from its grown region's median is in the region's tissue (else the
#: region was grown from a voxel the session moved it to: a neighbour)
REGION_LIKE = 0.15
#: two tissues whose medians differ by this many robust SDs (of the more homogeneous
#: one) are told apart by the half-way value with few errors (< 7 % each side)
PV_SD = 3.0
#: a negative click's value differing from the object's by this many robust SDs (or
#: noise levels) makes only the object-like voxels on the positive clicks' side object
#: markers of its split: fewer than ``PV_SD``, since a marker left out is not removed,
#: only contested by the shape and the edges (a thin cartilage's spread at its click is
#: half partial volume)
MARKER_SD = 2.0
#: a negative click's value rule applies only when the click-like voxels are at
#: least this fraction of the shape split's removal
LIKE_MIN = 0.25


def _ball_box(shape: tuple, centre: tuple, radius_mm: float, spacing: np.ndarray) -> tuple:
    r = [int(math.ceil(radius_mm / s)) for s in spacing]
    return tuple(slice(max(0, int(c) - k), min(n, int(c) + k + 1)) for c, k, n in zip(centre, r, shape))


def _distance_from(shape: tuple, centre: tuple, spacing: np.ndarray) -> np.ndarray:
    """Euclidean distance (mm) of every voxel of a ``shape`` array from ``centre``."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing))
    return np.sqrt(d2)


def object_radius_mm(mask_sub: np.ndarray, spacing: np.ndarray) -> float:
    """Radius (mm) of the sphere with the mask's volume."""
    vol = float(np.count_nonzero(mask_sub)) * float(np.prod(spacing))
    return (3.0 * vol / (4.0 * math.pi)) ** (1.0 / 3.0)


def distance_to(mask: np.ndarray, click: tuple, spacing: np.ndarray, cap_mm: float) -> float:
    """Distance (mm) from ``click`` to the nearest voxel of ``mask`` (at most ``cap_mm``)."""
    box = _ball_box(mask.shape, click, cap_mm + float(np.max(spacing)), spacing)
    sub = mask[box]
    if not sub.any():
        return float(cap_mm)
    local = np.asarray([int(c) - b.start for c, b in zip(click, box)])
    # The nearest mask voxel directly (the same Euclidean distance as a distance
    # transform of the box, without transforming every voxel of it).
    d2 = (((np.argwhere(sub) - local) * np.asarray(spacing, dtype=float)) ** 2).sum(axis=1)
    return float(min(cap_mm, math.sqrt(float(d2.min()))))


def _depth_at(mask: np.ndarray, point: tuple, spacing: np.ndarray, cap_mm: float) -> float:
    """Distance (mm) from ``point`` to the nearest voxel outside ``mask`` (at most ``cap_mm``)."""
    box = _ball_box(mask.shape, point, cap_mm + float(np.max(spacing)), spacing)
    local = tuple(int(round(c)) - b.start for c, b in zip(point, box))
    return distance_to(~mask[box], local, spacing, cap_mm)


def local_addition(added: np.ndarray, old: np.ndarray, old_box: tuple, click: tuple,
                   spacing: np.ndarray, array: Optional[np.ndarray] = None) -> np.ndarray:
    """What a positive ``click`` outside the mask adds: ``added`` limited to a ball around it.

    The click lies at the deepest point of a missed region, so that region's depth is
    about the smaller of the click's depth in its own grown region and its distance to
    the current mask; the addition may reach ``ADD_REACH`` times that depth (at most
    1.5 x the object's equivalent-sphere radius or 15 mm). A region that fills its
    whole ball was not bounded by an edge there (a neighbour of the same intensity: the
    portal vein in a non-enhanced liver): only a ball of the click's depth is added.

    With the image (``array``, full grid), a missed part of the object's own tissue
    small for its depth is added whole (:func:`whole_missed_part`), and a click on a
    partial-volume voxel between the object and another tissue adds only what looks
    like the object (see :func:`partial_volume_rim`).
    """
    spacing = np.asarray(spacing, dtype=float)
    radius = max(15.0, 1.5 * object_radius_mm(old[old_box], spacing))
    if array is not None:
        whole = whole_missed_part(array, added, old, old_box, click, spacing, radius)
        if whole is not None:
            return whole
    box = _ball_box(old.shape, click, radius + float(np.max(spacing)), spacing)
    out = _on_work_grid(lambda subs, clicks, sp: _local_addition(subs[0], subs[1], clicks[0], sp, radius),
                        (added, old), box, [click], spacing, within=lambda b: added[b] & ~old[b])
    if array is not None and out[box].any():
        out = partial_volume_rim(array, old, old_box, out, click, within=box)
    return out


def whole_missed_part(array: np.ndarray, added: np.ndarray, old: np.ndarray, old_box: tuple, click: tuple,
                      spacing: np.ndarray, cap_mm: float) -> Optional[np.ndarray]:
    """The whole missed part a positive ``click`` grew (full grid), or ``None`` when it is not one.

    The ball of :func:`local_addition` guards against a region that ran on into a
    neighbour, but it also cuts a missed part that is simply long: the rest of a lung
    lobe beyond the click, a kidney pole, a bowel loop. Such a part holds few balls of
    its own depth, while a leak into a neighbour (a thicker organ beyond a neck, a
    sheet along a fascia) holds many more for the depth at the click. So the part of
    the grown region joined to the click (through the mask too) is added whole when it
    holds at most ``WHOLE_BALLS`` balls of the missed part's depth (the volume of the
    ``ADD_REACH`` ball: the same amount, not the same shape) and is made of the
    object's tissue (medians within ``PV_SD`` robust SDs of the more homogeneous of the
    two, as in :func:`partial_volume_rim`: another tissue is left to that rule).

    Parameters
    ----------
    array : numpy.ndarray
        The image (full grid).
    added : numpy.ndarray
        Boolean, full grid: the region grown from the click alone.
    old : numpy.ndarray
        Boolean, full grid: the current mask; ``old_box`` its bounding box.
    click : tuple of int
        The positive click (outside ``old``).
    spacing : numpy.ndarray
        Voxel size (mm, z y x).
    cap_mm : float
        The most the missed part's depth is taken to be (mm).

    Returns
    -------
    numpy.ndarray or None
        The voxels to add, or ``None`` (the ball rule decides).
    """
    spacing = np.asarray(spacing, dtype=float)
    box = bbox(added, pad=1)
    if box is None or old[click]:
        return None
    new = added[box] & ~old[box]
    local = tuple(int(c) - b.start for c, b in zip(click, box))
    if not new[local]:
        return None
    # The region was grown from the click alone, so all of it is joined to the click
    # (through the mask where the mask cuts it): it is the part. Its count says how deep
    # the missed part must be for it to hold at most WHOLE_BALLS balls; the depth (as
    # :func:`_local_addition` measures it: the click's depth in its region after closing
    # small gaps, at most its distance to the mask) is then searched only that far, so
    # the cost follows the part's size, not the object's.
    n = np.count_nonzero(new)
    need = (3.0 * n * float(np.prod(spacing)) / (4.0 * math.pi * WHOLE_BALLS)) ** (1.0 / 3.0)
    if need > cap_mm or click_depth(new, local, spacing, cap_mm=need, near_mm=NEAR_MM, closing=True) < need \
            or distance_to(old, click, spacing, need) < need:
        return None
    stats = _object_stats(array, old, old_box)
    if stats is None or not _same_tissue(stats, robust_stats(np.asarray(array[box], dtype=np.float32)[new])):
        return None
    out = np.zeros(added.shape, dtype=bool)
    out[box] = new
    return out


def _object_stats(array: np.ndarray, old: np.ndarray, old_box: tuple) -> Optional[tuple]:
    """Median and robust SD of the mask's values (``old`` in ``old_box``, about 200 000 sampled), or ``None``."""
    obj_sub = old[old_box]
    if not obj_sub.any():
        return None
    step = max(1, int(round((np.count_nonzero(obj_sub) / 200_000) ** (1 / 3))))
    obj_values = np.asarray(array[old_box][::step, ::step, ::step], dtype=np.float32)[obj_sub[::step, ::step, ::step]]
    return robust_stats(obj_values) if obj_values.size else None


def _same_tissue(object_stats: tuple, region_stats: tuple) -> bool:
    """Whether two ``(median, robust SD)`` are one tissue.

    The medians differ by at most ``PV_SD`` robust SDs of the more homogeneous of the
    two: two tissues farther apart are told apart by the half-way value.
    """
    (mo, so), (ma, sa) = object_stats, region_stats
    return abs(ma - mo) <= PV_SD * max(min(so, sa), 1e-6)


def partial_volume_rim(array: np.ndarray, old: np.ndarray, old_box: tuple, addition: np.ndarray,
                       click: tuple, within: Optional[tuple] = None) -> np.ndarray:
    """A positive correction's ``addition`` (full grid) when it is not made of the clicked tissue.

    A voxel on the boundary between the object and a neighbouring tissue holds a mix of
    both: its value lies between theirs. Region growing cannot grow from such a voxel
    (an edge on every side), so the session moves the click into the nearest
    homogeneous tissue - the neighbour's interior, when the click lies on the object's
    outer rim (a 90 HU voxel beside a rib, a fissure's partial volume beside a lung
    lobe). The region grown there is then the neighbour, not a missed part of the
    object. Such an addition is recognised by its intensity: it differs clearly from
    the object's (more than ``PV_SD`` robust SDs of the more homogeneous of the two)
    and the click's own value is not the region's (farther from its interior's median
    than ``REGION_LIKE`` of the object-to-region difference). A click in another
    compartment of a mixed object (gas in the colon) has the compartment's value and
    its region is kept whole; so is the region of a click nearer the region's value
    than the object's with no mask voxel among its 26 neighbours (partial volume lies
    on the object's boundary: such a click is the compartment's, blurred). Otherwise
    only the addition's voxels closer in value to the object than to the region (the
    50 % partial-volume rule) that join the click or the object are added, and the
    click's voxel itself. ``within``: a box holding
    the whole addition (spares a bounding box search over the full grid).
    """
    box = _box_of(addition, within)
    new = addition[box]
    img = np.asarray(array[box], dtype=np.float32)
    stats = _object_stats(array, old, old_box)
    if stats is None:
        return addition
    region = robust_stats(img[new])
    mo, ma = stats[0], region[0]
    if _same_tissue(stats, region):
        return addition  # the same tissue: an ordinary missed part
    # The click's value: the median of the voxel and its face neighbours (a mean
    # would be pulled by a bright neighbour such as bone).
    v = float(np.median(_face_values(array, [click])))
    # The region's tissue value is its interior's: a small or thin missed part is much
    # partial-volume rim, which pulls its median towards the object's value.
    core = ndi.binary_erosion(new)
    mc = float(np.median(img[core])) if np.count_nonzero(core) >= 27 else ma
    if abs(v - mc) <= REGION_LIKE * abs(mc - mo):
        return addition  # the click looks like its region: another compartment of the object
    near = tuple(slice(max(0, int(c) - 1), int(c) + 2) for c in click)
    if abs(v - mc) < abs(v - mo) and not old[near].any():
        # Partial volume lies where the object meets its neighbour: a click nearer the
        # region's value than the object's (the 50 % rule) with no mask voxel among its
        # 26 neighbours is not the object's rim but a voxel of the region's tissue (a
        # bowel's gas compartment whose deepest missed voxel reads -740 HU on a grid
        # interpolated from thicker slices), and the region is another compartment.
        return addition
    like_object = new & (np.abs(img - np.float32(mo)) < np.abs(img - np.float32(ma)))
    local = tuple(int(c) - b.start for c, b in zip(click, box))
    seeds = like_object | old[box]
    seeds[local] = True
    lab, _ = ndi.label(seeds)
    keep = np.isin(lab, np.unique(lab[old[box] | (lab == lab[local])])) & like_object
    keep[local] = True
    out = np.zeros(addition.shape, dtype=bool)
    out[box] = keep & new
    return out


def _local_addition(added: np.ndarray, old: np.ndarray, click: tuple, spacing: np.ndarray,
                    radius: float) -> np.ndarray:
    local = click
    added = added.copy()
    added[click] = True  # the click's voxel may fall between the samples of a strided grid
    old = old & ~added if old[click] else old
    new = added & ~old
    to_mask = distance_to(old, local, spacing, radius)
    # The depth after closing small gaps (noise, vessels: a big organ does not look
    # thin).
    depth = min(click_depth(new, local, spacing, cap_mm=radius, near_mm=NEAR_MM, closing=True), to_mask)
    limit = min(radius, max(ADD_REACH * depth, MIN_ADD_MM))
    out = limit_addition(added, old, click, spacing, limit)
    ball = (4.0 / 3.0) * math.pi * limit ** 3 / float(np.prod(spacing))
    if np.count_nonzero(out) > FILL_LIMIT * ball:
        # Bounded by nothing: a ball of the click's own depth, gap-closed too (one noisy
        # voxel or a vessel beside the click would shrink it to a voxel: a click in a
        # missed muscle slab then added a few dozen voxels).
        own = min(click_depth(new, local, spacing, cap_mm=radius, closing=True), to_mask)
        out = limit_addition(added, old, click, spacing, max(own, MIN_ADD_MM))
    return out


def _work_strides(shape: tuple, spacing: np.ndarray, budget: int) -> tuple:
    """Integer strides per axis so that a ``shape`` box has at most ``budget`` samples (finest axis first)."""
    f = [1, 1, 1]
    while int(np.prod([-(-n // k) for n, k in zip(shape, f)])) > budget:
        work = [spacing[a] * f[a] if shape[a] > f[a] else np.inf for a in range(3)]
        a = int(np.argmin(work))
        if not np.isfinite(work[a]):
            break
        f[a] += 1
    return tuple(f)


def _on_work_grid(fn, arrays: tuple, box: tuple, clicks: list, spacing: np.ndarray, within=None) -> np.ndarray:
    """``fn(arrays_in_box, clicks_in_box, spacing)`` on ``box``, on a strided grid when the box is large.

    A correction's cost then does not grow with the voxel size (0.8 mm CT): the box is
    sampled every f-th voxel (at most ``WORK_VOXELS`` samples), the result is brought
    back by repetition and limited to ``within(full_box)``. Returns a full-grid mask.
    """
    shape = tuple(b.stop - b.start for b in box)
    full_shape = arrays[1].shape
    f = _work_strides(shape, spacing, WORK_VOXELS)
    view = tuple(slice(b.start, b.stop, k) for b, k in zip(box, f))
    subs = [np.asarray(a[view]) for a in arrays]
    # Clicks inside the box map to their sample; clicks outside keep their (outside) place.
    local = [tuple((int(round(c)) - b.start) // k for c, b, k in zip(p, box, f)) for p in clicks]
    small = fn(subs, local, spacing * np.asarray(f))
    out = np.zeros(full_shape, dtype=bool)
    sbox = bbox(small)
    if sbox is None:
        return out
    part = small[sbox]
    for a, k in enumerate(f):
        if k > 1:
            part = np.repeat(part, k, axis=a)
    full = tuple(slice(b.start + s.start * k, min(b.stop, b.start + s.stop * k)) for b, s, k in zip(box, sbox, f))
    part = part[tuple(slice(0, x.stop - x.start) for x in full)]
    out[full] = part & within(full) if within is not None else part
    return out


def limit_addition(added: np.ndarray, old: np.ndarray, click: tuple, spacing: np.ndarray,
                   radius_mm: float) -> np.ndarray:
    """``added`` (full grid) limited to a ball of ``radius_mm`` around ``click``, connected to it."""
    box = _ball_box(added.shape, click, radius_mm, spacing)
    local = added[box] & ~old[box]
    centre = tuple(int(c) - b.start for c, b in zip(click, box))
    local &= _distance_from(local.shape, centre, spacing) <= radius_mm
    # Keep the part connected to the click (through the old mask too: a missed region
    # next to the object joins it).
    lab, _ = ndi.label(local | old[box])
    keep = lab == lab[centre] if lab[centre] else np.zeros_like(local)
    out = np.zeros(added.shape, dtype=bool)
    out[box] = local & keep
    return out


def negative_cut(array: np.ndarray, mask: np.ndarray, spacing: np.ndarray, neg: list, pos: list,
                 click: tuple, smoothing_mm: float = 1.0, max_voxels: int = 400_000,
                 barrier_mm: float = 3.0, bone: bool = False) -> np.ndarray:
    """The voxels of ``mask`` that the negative ``click`` wins (to remove); full grid.

    Works within ``MAX_REACH_MM`` of the click, on a strided grid when that box holds
    more than ``WORK_VOXELS`` voxels (see :func:`_negative_cut`). ``bone``: intensities
    are Hounsfield units; a click on bone splits it at the narrowest neck between the
    click and the positive clicks (``_bone.bone_cut``).
    """
    spacing = np.asarray(spacing, dtype=float)
    # The locality radius needs the click's depth: measured first on a (strided) box.
    probe = _ball_box(mask.shape, click, 100.0, spacing)
    f = _work_strides(tuple(b.stop - b.start for b in probe), spacing, WORK_VOXELS)
    sub = np.asarray(mask[tuple(slice(b.start, b.stop, k) for b, k in zip(probe, f))])
    c = tuple(min(n - 1, (int(round(x)) - b.start) // k) for x, b, k, n in zip(click, probe, f, sub.shape))
    depth = float(ndi.distance_transform_edt(np.pad(sub, 1), sampling=spacing * np.asarray(f))[1:-1, 1:-1, 1:-1][c])
    reach = min(3.0 * depth + 10.0, MAX_REACH_MM) + 4.0 * float(spacing.max() * max(f))
    box = _ball_box(mask.shape, click, reach, spacing)
    if bone:
        # Bone against bone: the click is another bone's seed; the split falls at the
        # narrowest neck between it and the positive clicks (a joint, not the rib).
        # Before the intensity test: cortex and marrow of one bone differ by hundreds
        # of HU, so an intensity cut would take the object's own cortex or marrow.
        by_shape = _bone_negative(array, mask, spacing, pos, click, box)
        if by_shape is not None:
            return by_shape
    n_neg = len(neg)
    pos_values = _click_values(array, pos, spacing, smoothing_mm) if pos else None
    # How thick the object is where the user said "object": the mask's depth at the
    # positive clicks (the split's second pass is for a leak thinner than the object).
    object_depth = max([_depth_at(mask, p, spacing, OBJECT_DEPTH_CAP_MM) for p in pos] or [0.0])

    tissues = None
    if pos:
        # The object's value and spread at the positive clicks, the click's value.
        tissues = (*robust_stats(_face_values(array, pos)), float(np.median(_face_values(array, [click]))))

    def run(subs, clicks, sp):
        sub_mask = subs[1]
        c = clicks[-1]
        if all(0 <= a < n for a, n in zip(c, sub_mask.shape)) and not sub_mask[c]:
            sub_mask = sub_mask.copy()  # the clicked voxel fell between the samples
            sub_mask[c] = True
        return _negative_cut(subs[0], sub_mask, sp, clicks[:n_neg], clicks[n_neg:-1], c,
                             smoothing_mm, max_voxels, barrier_mm, pos_values, object_depth, tissues)

    remove = _on_work_grid(run, (array, mask), box, list(neg) + list(pos) + [click], spacing,
                           within=lambda b: mask[b])
    return like_the_click(array, remove, pos, click, within=box)


def _face_values(array: np.ndarray, points: list) -> np.ndarray:
    """The values of ``points`` and their 6 face neighbours (pooled).

    A click's value: one voxel is noisy, and a 3 x 3 x 3 block on a thin object (a rib
    two voxels thick) or on a 3 mm rim is mostly the tissues beside it.
    """
    out = []
    steps = np.vstack([np.zeros((1, 3), int), np.eye(3, dtype=int), -np.eye(3, dtype=int)])
    for p in points:
        q = np.asarray([int(round(c)) for c in p])[None, :] + steps
        q = q[np.all((q >= 0) & (q < np.asarray(array.shape)[None, :]), axis=1)]
        out.append(np.asarray([array[tuple(v)] for v in q], dtype=np.float32))
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _noise_in(img: np.ndarray, region: np.ndarray) -> float:
    """Robust noise SD of ``img`` over ``region``, from differences of neighbouring voxels.

    Differences along the last axis between two voxels of the region, robust SD over
    sqrt(2): a region holding two tissues (the object and its leak) does not look
    noisier for it, only the few pairs across their boundary differ.
    """
    both = region[..., 1:] & region[..., :-1]
    if not both.any():
        return 0.0
    d = (img[..., 1:] - img[..., :-1])[both]
    return robust_stats(d)[1] / math.sqrt(2.0)


def _box_of(mask: np.ndarray, within: Optional[tuple]) -> tuple:
    """The bounding box (1 voxel padded) of ``mask``, searched in ``within`` when given."""
    if within is None:
        return bbox(mask, pad=1)
    sub = bbox(mask[within], pad=1)
    return tuple(slice(w.start + b.start, w.start + b.stop) for w, b in zip(within, sub))


def like_the_click(array: np.ndarray, remove: np.ndarray, pos: list, click: tuple,
                   within: Optional[tuple] = None) -> np.ndarray:
    """A negative click's removal (full grid) limited to what looks like the click.

    The shape split decides where the leak joins the object, not what the leak is made
    of. (Not after the bone split: one bone's cortex and marrow differ by hundreds of
    HU, so value does not tell bone from bone.) When the negative click's value differs
    from the positive clicks' by more than ``INTENSITY_SD`` times the image noise over the
    removal's box (``region_growing._noise_level``, the lower quartile of neighbour
    differences: right while most pairs straddle edges, as in a leak along a thin rib;
    a few interpolated voxels at a click understate it)
    and the spread at the positive clicks (each click's value: the median of it and
    its face neighbours), but not so much that the intensity rule took the leak
    whole, the two are still told apart by value: a voxel of the removal closer in
    value to the object than to the click is the object's (a thin MR rib along the
    muscle it leaked into) and stays. Only the click-like voxels joined to the click
    go (object-like specks enclosed in the leak with them), unless the click-like
    voxels are less than ``LIKE_MIN`` of the removal. ``within``: a box holding the whole removal.
    """
    from .region_growing import _noise_level

    if not pos or not remove[within if within is not None else ...].any():
        return remove
    vp, vn = _face_values(array, pos), _face_values(array, [click])
    mp, sp = robust_stats(vp)
    mn = float(np.median(vn))
    box = _box_of(remove, within)
    img = np.asarray(array[box], dtype=np.float32)
    if abs(mn - mp) <= INTENSITY_SD * max(sp, _noise_level(img), 1e-6):
        return remove  # one tissue: the shape decides alone
    like = remove[box] & (np.abs(img - np.float32(mn)) < np.abs(img - np.float32(mp)))
    local = tuple(int(round(c)) - b.start for c, b in zip(click, box))
    if not all(0 <= a < n for a, n in zip(local, like.shape)):
        return remove
    like[local] = bool(remove[click])
    # Noise leaves object-like specks inside the leak: enclosed ones go with it (the
    # thin object runs on beyond the removal, it is not enclosed).
    like = ndi.binary_fill_holes(like) & remove[box]
    lab, _ = ndi.label(like)
    keep = lab == lab[local] if lab[local] else np.zeros_like(like)
    # All the click-like voxels of the removal count here, not only those joined to
    # the click: a leak along a thin object is cut into pieces by the object's
    # partial-volume voxels between them (an MR rib beside the muscle it leaked into).
    if np.count_nonzero(like) < LIKE_MIN * np.count_nonzero(remove[box]):
        # Only a sliver of the leak looks like the click: its value does not stand
        # for the leak (a mixed leak, a click on a partial-volume voxel), so value
        # cannot tell object from leak there and the shape decides alone.
        return remove
    out = np.zeros(remove.shape, dtype=bool)
    out[box] = keep
    return out


def _bone_negative(array: np.ndarray, mask: np.ndarray, spacing: np.ndarray, pos: list, click: tuple,
                   box: tuple) -> Optional[np.ndarray]:
    """:func:`._bone.bone_cut` on a box holding the click's locality ``box`` and the positive clicks.

    The removal stays within ``box``; ``None`` when the bone split does not apply.
    """
    from ._bone import bone_cut

    pts = np.asarray([click] + [tuple(int(round(c)) for c in p) for p in pos])
    if any(all(b.start <= c < b.stop for c, b in zip(p, box)) for p in pts[1:]):
        big = box  # a positive click within the locality: split there
    else:
        # Else the split needs the mask between the click and the positive clicks.
        lo = np.minimum(pts.min(axis=0), [b.start for b in box])
        hi = np.minimum(np.maximum(pts.max(axis=0) + 1, [b.stop for b in box]), mask.shape)
        big = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    applied = []

    def run(subs, clicks, sp):
        f = np.maximum(np.round(sp / spacing).astype(int), 1)
        sub_mask = subs[1]
        c = clicks[0]
        if not all(0 <= a < n for a, n in zip(c, sub_mask.shape)):
            return np.zeros(sub_mask.shape, dtype=bool)
        if not sub_mask[c]:
            sub_mask = sub_mask.copy()  # the clicked voxel fell between the samples
            sub_mask[c] = True
        local_box = tuple(slice(max(0, (b.start - g.start) // k), -(-(b.stop - g.start) // k))
                          for b, g, k in zip(box, big, f))
        cut = bone_cut(subs[0], sub_mask, sp, local_box, clicks[1:], c)
        if cut is None:
            return np.zeros(sub_mask.shape, dtype=bool)
        applied.append(True)
        return cut

    out = _on_work_grid(run, (array, mask), big, [click] + list(pos), spacing,
                        within=lambda b: mask[b])
    return out if applied else None


def _negative_cut(array: np.ndarray, mask: np.ndarray, spacing: np.ndarray, neg: list, pos: list,
                  click: tuple, smoothing_mm: float = 1.0, max_voxels: int = 400_000,
                  barrier_mm: float = 3.0, pos_values: Optional[np.ndarray] = None,
                  object_depth: float = 0.0, tissues: Optional[tuple] = None) -> np.ndarray:
    """The voxels of ``mask`` that the negative ``click`` wins (to remove); full grid.

    The like-intensity part of the mask joined to the click when its intensity clearly
    differs from the positive clicks'; otherwise a marker watershed inside the mask on
    the larger of the smoothed gradient and the mask's shallowness: the negative clicks'
    barrier balls against the positive clicks, the mask's core deeper than the click,
    the voxels nearer a positive click (for a click at least ``FAR_DEPTH_MM`` deep and
    deeper than ``object_depth``, only those no deeper than ``ADD_REACH`` times it; of
    them only the object-like ones when the click's tissue differs, ``tissues``: see
    :func:`_object_like`), and
    every mask voxel farther than the locality radius from ``click`` (three times its
    depth in the mask plus 10 mm). The earlier negative clicks are seeds too, but only
    this click's front is removed. For a click
    deeper than one voxel and shallower than the mask at the positive clicks
    (``object_depth``, mm) the split is also made with the shallowness counted only up
    to the click's depth, and when ``object_depth`` exceeds the click's core depth
    (``CORE_DEPTH`` times its depth plus a voxel) on the gradient alone; the click
    removes what it wins in any split.
    """
    from .region_growing import _marker_watershed

    depth_box = _ball_box(mask.shape, click, 100.0, spacing)
    sub = mask[depth_box]
    centre = tuple(int(c) - b.start for c, b in zip(click, depth_box))
    dist = ndi.distance_transform_edt(np.pad(sub, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    depth = float(dist[centre])
    radius = min(3.0 * depth + 10.0, MAX_REACH_MM)
    box = _ball_box(mask.shape, click, radius + 2.0 * float(spacing.max()), spacing)
    region = mask[box]
    if not region.any():
        return np.zeros(mask.shape, dtype=bool)
    # A leak of clearly different intensity (a lesion inside an organ, fat, bowel
    # content) goes whole by intensity; the shape split is for same-intensity leaks.
    by_intensity = _intensity_leak(array, mask, spacing, pos, click, smoothing_mm, pos_values, depth)
    if by_intensity.any():
        return by_intensity
    local_centre = tuple(int(c) - b.start for c, b in zip(click, box))
    d_neg = _distance_from(region.shape, local_centre, spacing)
    # Object markers: mask voxels beyond the locality radius; for a deep click only
    # those nearer to a positive click than to the negative one (the far side of a
    # thick leak is left to the competition, so a big leak goes in a few clicks).
    d_pos = np.full(region.shape, np.inf)
    for p in pos:
        d_pos = np.minimum(d_pos, _distance_from(region.shape, tuple(int(round(c)) - b.start
                                                                     for c, b in zip(p, box)), spacing))
    far = (d_neg > radius) & (d_pos < d_neg) if depth >= FAR_DEPTH_MM else (d_neg > radius)
    raw = np.asarray(array[box], dtype=np.float32)
    sigma = [max(0.5, smoothing_mm / s) for s in spacing]
    img = ndi.gaussian_filter(raw, sigma, mode="nearest")
    # Voxels nearer a positive click than the negative one stay (the click speaks for
    # its own side only): a thin object that ran into a thick neighbour is not taken
    # with the neighbour; a big leak goes in a few clicks. Of them, only the voxels
    # that look like the object when the click's tissue differs from it.
    far |= (d_pos < d_neg) & _object_like(img, raw, region, tissues)
    grad = np.sqrt(sum(g.astype(np.float32) ** 2 for g in np.gradient(img, *spacing))) if min(img.shape) > 1 \
        else np.zeros_like(img)
    markers = np.zeros(region.shape, dtype=np.uint8)
    dist = ndi.distance_transform_edt(np.pad(region, 1, constant_values=True), sampling=spacing)[1:-1, 1:-1, 1:-1]
    if depth >= FAR_DEPTH_MM and 0.0 < object_depth < depth:
        # A leak thicker than the object where the user said "object" (a thin
        # cartilage or gland that ran into a thick neighbour): mask voxels far deeper
        # than the mask at the positive clicks (beyond the ``ADD_REACH`` bound a
        # positive click's addition has) are the leak's body, not the object, even on
        # the positive clicks' side; they are left to the split, whose deep-first
        # flooding gives them to the click up to where the leak narrows to the object
        # (a 368-voxel costal cartilage at 1.5 mm: click 2 takes 31 k voxels of its
        # 52 k-voxel leak, 28 k with that half-space marked as the object).
        far &= dist <= ADD_REACH * object_depth + float(spacing.max())
    markers[far & region] = 1
    # The mask deeper than the negative click is the object's core: a leak is no
    # thicker than where the user clicked in it, so the click never claims it (a click
    # in a one-voxel leaked rim takes the rim near it, not the organ behind it).
    markers[region & (dist > CORE_DEPTH * depth + float(spacing.max()))] = 1
    offsets = ball_offsets(barrier_mm, spacing)
    for p in pos:
        _mark(markers, tuple(int(round(c)) - b.start for c, b in zip(p, box)), offsets, 1)
    markers[~region] = 0
    # Every negative click bars the object's front, but this click removes its own
    # front only: what the earlier ones win was decided at their own click (where
    # ``like_the_click`` may have kept the object-like voxels of it), and won again
    # here it would bypass that (a rim click beside earlier ones would take the
    # object voxels their barrier balls cover).
    # (Labels: 1 the object, 2 the earlier negative clicks, 3 this click; the
    # highest wins a block of the coarse watershed, so this click keeps its seed.)
    for n in neg:
        _mark(markers, tuple(int(round(c)) - b.start for c, b in zip(n, box)), offsets, 2)
    _mark(markers, local_centre, offsets, 3)
    inner = grad[region]
    floor = float(np.percentile(inner, 50)) if inner.size else 0.0
    scale = float(np.percentile(inner, 99)) if inner.size else 1.0
    n_levels = 48.0
    edge_levels = np.clip(np.floor((grad - floor) / max(scale - floor, 1e-12) * n_levels), 0, n_levels)
    # Shape: the mask's depth (distance to its edge, box faces excluded). Flooding the
    # deep voxels first puts the split at the narrowest neck between the clicks, where
    # a leak joins the object, unless a stronger edge lies elsewhere.
    dcap = max(float(dist[region].max()), 1e-6)

    def split(depth_mm: Optional[np.ndarray]) -> np.ndarray:
        # ``depth_mm`` None: the gradient alone (see the third split below).
        levels = edge_levels if depth_mm is None else \
            np.maximum(edge_levels, np.clip(np.floor((1.0 - depth_mm / dcap) * n_levels), 0, n_levels))
        levels = levels.astype(np.uint8)
        levels[~region] = 255
        return (_marker_watershed(levels, markers, max_voxels) == 3) & region

    if not (markers == 1).any():
        remove = region.copy()
    else:
        remove = split(dist)
        if float(spacing.max()) < depth < object_depth:
            # A leak that widens into its junction with the object has no neck: its
            # voxels between the click and the object are deeper than the click, so
            # deep-first flooding gives them to the object's front and leaves the click
            # the thin rim around it. A leak is as thick as where the user clicked in it,
            # so depth beyond the click's own does not tell leak from object there: the
            # split is made again with depth counted up to the click's, and the click
            # takes what it wins in either split (the object's core, the positive clicks
            # and the far mask stay markers of the object in both). Only for a leak
            # thinner than the object where the user clicked it (a thin object beside
            # an as thick leak has no such junction: the pass would cut into it), and
            # not for a click one voxel deep: its depth only says it lies on the rim.
            remove |= split(np.minimum(dist, depth))
            if CORE_DEPTH * depth + float(spacing.max()) < object_depth:
                # A layer leaked along the surface of a thick object (a muscle layer
                # over an organ) is as shallow as the object's own rim beside it, so no
                # depth tells the two apart there: counting depth, the object's front
                # reaches the layer from beneath before the click's front runs along it,
                # and the click wins a patch around itself. So the split is made a third
                # time on the gradient alone: the fronts meet half-way between the click
                # and the object's markers (its core, the positive clicks, the far mask)
                # unless an edge lies between them. Only where the mask at the positive
                # clicks reaches deeper than this click's core: a small or thin object
                # (pancreas beside fat, real CT 3 mm) lies nearer the click than its
                # markers there, and this split cut into it (0.572 -> 0.539).
                remove |= split(None)
    out = np.zeros(mask.shape, dtype=bool)
    out[box] = remove
    return out


def _intensity_leak(array, mask, spacing, pos, click, smoothing_mm, pos_values=None,
                    depth: Optional[float] = None) -> np.ndarray:
    """Mask voxels that look like the negative click rather than the object, joined to it.

    Only when the negative click's intensity clearly differs from the positive clicks'
    (more than ``INTENSITY_SD`` robust standard deviations; ``pos_values``: their
    neighbourhood values when the clicks lie outside ``array``): a leak into a
    neighbour of another intensity is then removed whole. ``depth``: the click's depth
    in the mask (mm); the mask's core deeper than ``CORE_DEPTH`` times it is never
    taken, and the object's value is that core's median when it has one
    (``CORE_MIN_VOXELS``; an organ's value drifts across it).
    """
    box = bbox(mask, pad=1)
    img = ndi.gaussian_filter(np.asarray(array[box], dtype=np.float32),
                              [max(0.5, smoothing_mm / s) for s in spacing], mode="nearest")
    offsets = ball_offsets(4.0, spacing)

    def values(p):
        pts = np.asarray([int(round(c)) - b.start for c, b in zip(p, box)])[None, :] + offsets
        keep = np.all((pts >= 0) & (pts < np.asarray(img.shape)[None, :]), axis=1)
        pts = pts[keep]
        return img[pts[:, 0], pts[:, 1], pts[:, 2]]

    vp = pos_values if pos_values is not None else (
        np.concatenate([values(p) for p in pos]) if pos else np.zeros(0, np.float32))
    vn = values(click)
    if vp.size == 0 or vn.size == 0:
        return np.zeros(mask.shape, dtype=bool)
    (mp, sd_p), (mn, sd_n) = robust_stats(vp), robust_stats(vn)
    sd = max(sd_p, sd_n, 1e-6)
    if abs(mn - mp) <= INTENSITY_SD * sd:
        return np.zeros(mask.shape, dtype=bool)
    sub = mask[box]
    dist = None
    if depth is not None:
        dist = ndi.distance_transform_edt(np.pad(sub, 1, constant_values=True), sampling=spacing)[1:-1, 1:-1, 1:-1]
        core = sub & (dist > CORE_DEPTH * depth + float(np.max(spacing)))
        # The object's value is its core's median (a leak is no thicker than the
        # click's depth, so the core is the object's), not the positive click's: an
        # organ's value drifts across it and the click may sit in a dim part (the real CT's
        # spleen: 28 HU at the positive click, 36 HU beside a 41 HU leak), and split
        # half-way to the positive click's value, its brighter part went with the leak
        # (1.5 mm spleen 0.905 -> 0.874, 5349 of its voxels).
        if np.count_nonzero(core) >= CORE_MIN_VOXELS:
            mp = float(np.median(img[core]))
            if abs(mn - mp) <= INTENSITY_SD * sd:
                return np.zeros(mask.shape, dtype=bool)
    # Closer to the click's value than to the object's, and no farther beyond the
    # click's value than half the step (or the noise): a voxel far beyond it is the
    # object's rim blurred with a third tissue (MR: the spleen beside bright fat reads
    # as bright as the kidney it leaked into), not the clicked tissue.
    half = max(0.5 * abs(mn - mp), PV_SD * _noise_in(img, sub))
    like = sub & (np.abs(img - np.float32(mn)) < np.abs(img - np.float32(mp))) \
        & (np.abs(img - np.float32(mn)) <= np.float32(half))
    centre = tuple(int(c) - b.start for c, b in zip(click, box))
    if dist is not None:
        # A leak is no thicker than where the user clicked in it: the object's core
        # stays even where it looks like the click. Without this, a neighbour only a
        # few noise levels brighter (MR: the kidney beside the spleen, the bias field
        # raising the spleen near it) is joined to the click through the object's
        # own brighter noise and takes a slab of the object with it.
        like &= dist <= CORE_DEPTH * depth + float(np.max(spacing))
        like[centre] = bool(sub[centre])
    lab, _ = ndi.label(like)
    if not lab[centre]:
        return np.zeros(mask.shape, dtype=bool)
    out = np.zeros(mask.shape, dtype=bool)
    # Never the positive clicks' own voxels.
    keep = lab == lab[centre]
    for p in pos:
        q = tuple(int(round(c)) - b.start for c, b in zip(p, box))
        if all(0 <= a < n for a, n in zip(q, keep.shape)) and keep[q]:
            return np.zeros(mask.shape, dtype=bool)
    out[box] = keep
    return out


def _click_values(array: np.ndarray, points: list, spacing: np.ndarray, smoothing_mm: float) -> np.ndarray:
    """Smoothed intensities in a 4 mm ball around each point (full grid, small boxes only)."""
    out = []
    for p in points:
        p = tuple(int(round(c)) for c in p)
        box = _ball_box(array.shape, p, 4.0 + 3.0 * smoothing_mm + float(np.max(spacing)), spacing)
        img = ndi.gaussian_filter(np.asarray(array[box], dtype=np.float32),
                                  [max(0.5, smoothing_mm / s) for s in spacing], mode="nearest")
        local = np.asarray([c - b.start for c, b in zip(p, box)])[None, :] + ball_offsets(4.0, spacing)
        keep = np.all((local >= 0) & (local < np.asarray(img.shape)[None, :]), axis=1)
        local = local[keep]
        out.append(img[local[:, 0], local[:, 1], local[:, 2]])
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _object_like(img: np.ndarray, raw: np.ndarray, region: np.ndarray, tissues: Optional[tuple]) -> np.ndarray:
    """Where ``img`` (smoothed) looks like the object rather than the negative click (all True when alike).

    A negative click is a seed of "not this tissue": when its value differs from the
    object's (at the positive clicks) by more than ``MARKER_SD`` times the larger of their
    spread and the image noise over ``region`` (``raw``: unsmoothed), a voxel nearer
    the click's value than the object's is the click's tissue on whichever side of the
    click it lies (a muscle layer that a thin cartilage leaked into runs past the
    positive click). ``tissues``: ``(object median, object robust SD, click value)``.
    """
    if tissues is None:
        return np.ones(img.shape, dtype=bool)
    mp, sp, mn = tissues
    if abs(mn - mp) <= MARKER_SD * max(sp, _noise_in(raw, region), 1e-6):
        return np.ones(img.shape, dtype=bool)
    return np.abs(img - np.float32(mp)) < np.abs(img - np.float32(mn))


def _mark(markers: np.ndarray, centre: tuple, offsets: np.ndarray, value: int) -> None:
    pts = np.asarray(centre)[None, :] + offsets
    keep = np.all((pts >= 0) & (pts < np.asarray(markers.shape)[None, :]), axis=1)
    pts = pts[keep]
    markers[pts[:, 0], pts[:, 1], pts[:, 2]] = value


def incremental_click(prev_points: tuple, prev_labels: tuple, points: tuple, labels: tuple) -> Optional[int]:
    """Index of the one new click when ``points`` extends the previous prompts by one, else None."""
    n = len(prev_points)
    if n == 0 or len(points) != n + 1 or tuple(points[:n]) != tuple(prev_points) \
            or tuple(labels[:n]) != tuple(prev_labels):
        return None
    return n
