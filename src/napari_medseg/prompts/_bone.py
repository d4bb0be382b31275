"""Bone-aware growing for clicks on bone in CT (weights-free backend).

Intensity region growing fails on bone in two ways: a rib or a vertebral arch a few
voxels thick is all edge (the gradient test stops the growth after a handful of
voxels), and bones touch each other at joints with the same intensity (a vertebra's
facets, a rib's head on its vertebra), so a looser growth runs through the skeleton.
A click on bone is therefore answered by shape, not by gradient:

1. **Is it bone?** Only on CT (Hounsfield units, :func:`looks_like_ct`): compact bone
   (the click's neighbourhood >= ``BONE_HU`` with cortex, >= ``CORTEX_HU``, within
   ``CORTEX_MM``), or cancellous bone (>= ``CANCELLOUS_HU``) wrapped in bone (rays from
   the click meet cortex in nearly every direction, :func:`enclosure`: an osteopenic
   vertebral body is no brighter than some organs or a disc, but it has a shell all
   round).
2. **Bone mask.** Voxels above a partial-volume threshold half-way between the click's
   bone intensity and the surrounding soft tissue (the 50 % rule: a voxel half filled
   with bone belongs to it; never below ``MIN_THRESHOLD_HU``), plus the intensity-grown
   interior for cancellous bone, connected to the click; enclosed cavities are filled.
   For cancellous bone the voxels below the shell's level join only as the cortex's
   rim or where the shell wraps them (a disc partial-volumed with its endplates is as
   bright as osteopenic marrow, but open across the spine).
3. **Split at the narrowest connections** (:func:`split_at_necks`). The distance
   transform of the bone mask is flooded from its regional maxima (a watershed of the
   inverted distance: one basin per thick part). Touching basins are merged, widest
   neck first, while the neck is at least ``NECK_RATIO`` of the thinner group's
   thickness (a rib along its length, a vertebral body with its pedicles and arch); a
   neck clearly thinner than both parts is a joint (facet, costovertebral joint, a
   disc's rim): the parts stay apart. The object is the group holding the positive
   clicks.
4. **Discs and cartilage.** A soft-tissue click between two bones along one axis and
   open across it is a disc (``_disc``): the slab between the endplates. A click on a
   bar of soft tissue clearly brighter than the soft tissue around it (costal
   cartilage, ``_cartilage``) gives the bar.
5. **Negative clicks** (:func:`bone_cut`, used by ``_corrections.negative_cut``): a
   negative click on bone is another bone's seed; its group never merges with the
   positive clicks' group, so the split falls at the narrowest connection between
   them. Only its side is removed, only within the click's locality, and never a
   voxel nearer a positive click than the negative one (where no neck is clear the
   split is no better than half-way). A click on bone that the mask holds apart from
   every positive click (a neighbour's arch left behind when an earlier negative click
   cut the leak through it) removes that piece, on the same two conditions. A click on
   a surface voxel less than half bone (the partial-volume rim) removes only the voxels
   next to it that are no brighter.
6. **Positive corrections** (:func:`bone_addition`, used by the session for a positive
   click outside the mask): while the object is thin bone (a rib), a click on bone adds
   the clicked bone within ``SEGMENT_REACH_MM`` of the click (a missed segment of a
   tube, whose length its depth does not tell), and a click on the soft tissue right
   beside the object's bone adds only the rim voxels next to it, not the muscle.

Nothing here knows anatomy by name: the session sees the image, the spacing, the
modality and the clicks.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage as ndi

from .._ndimage import ball_offsets, bbox, closing, components_at, ellipsoid, values_at
from ._resolution import interpolation_factors
from ._robust import click_level
from ._cartilage import bar_levels, bright_bar
from ._disc import disc_object

#: a click's neighbourhood at or above this (HU, median) may be bone
BONE_HU = 120.0
#: ... when voxels at least this bright (HU, cortical bone) lie within ``CORTEX_MM``
CORTEX_HU = 250.0
CORTEX_MM = 6.0
#: ... or at or above this (HU) inside a region wrapped in bone (cancellous bone)
CANCELLOUS_HU = 60.0
#: "wrapped in bone": at least this fraction of 26 rays from the click meet a shell
#: (>= ``SHELL_HU`` and ``SHELL_STEP`` above the click) within ``ENCLOSE_MM``, with at
#: most ``OPEN_PAIRS`` opposite directions both free
ENCLOSED = 0.8
OPEN_PAIRS = 1
SHELL_HU = 150.0
SHELL_STEP = 60.0
ENCLOSE_MM = 25.0
#: soft-tissue level used when the click's surroundings hold no soft tissue (HU)
SOFT_HU = 40.0
#: the bone threshold is never below this (HU): fluid, muscle and enhanced blood
#: partial-volumed with fat must not join the bone
MIN_THRESHOLD_HU = 100.0
#: two parts of the bone are one object while the neck between them is at least this
#: fraction of the thinner part's thickness
NECK_RATIO = 0.6
#: ... give or take ``NECK_SLACK`` voxels between two parts both at most ``THIN_VOXELS``
#: thick (surface distance): the distance transform of a part two or three voxels thick
#: is quantised to whole voxels (a 3 mm rib's thickness reads 1.5 or 4.5 mm along its
#: length), so without it a thin bone falls apart at its own bumps; a thin part against
#: a thick one (a rib against its vertebra) gets no slack. Voxels of the mean spacing:
#: on a grid of thick slices (1 x 1 x 3 mm) twice the largest spacing (6 mm) counts the
#: vertebra's parts a rib touches (5.8 mm deep) as thin, and the rib joins the spine
#: through a contact one slice thick (real CT: rib left 12, 35-42 k voxels for a 1 k-voxel
#: rib); on a grid of equal spacings that is the largest spacing. For a thin-bone click on a
#: grid finer than the image resolves, both count resolution elements (``_resolution``)
#: between parts that both hold bone (``PV_PEAK_HU``): the bone's cross-section at its
#: 50 % threshold varies by a whole element along its length, so its bumps touch
#: through contacts thinner than the image resolves, which are no joints
NECK_SLACK = 1.0
THIN_VOXELS = 2.0
#: a click on a partial-volume voxel of thin bone (a rib whose reference is wider than
#: the bone, a click on its rim): the click's neighbourhood is at least ``PV_LOW_HU``
#: (fat partial-volumed with bone is no bone click), a bone peak of at least
#: ``PV_PEAK_HU`` lies within ``PV_MM`` (at least one voxel; an osteopenic rib at 3 mm
#: peaks at 160-170 HU beside some clicks; enhanced soft tissue as bright is kept out by
#: the thinness and surroundings tests below) ...
PV_LOW_HU = 20.0
PV_PEAK_HU = 150.0
PV_MM = 3.0
#: ... the click's neighbourhood is itself partial-volumed: at least this fraction
#: of the way from the soft tissue to the peak (a disc or a muscle at its own
#: soft-tissue level beside an endplate or a rib is no bone click)
PV_FRACTION = 0.2
#: ... and the bone at its 50 % threshold is thin there (surface distance, mm)
THIN_MM = 5.0
#: ... and the peak lies in soft tissue, fat or air: at least ``SURROUND_FRACTION`` of
#: the 10 mm ball around it is below ``SURROUND_HU`` (unenhanced soft tissue with its
#: noise). A thin bone fills a small part of that ball (real-CT ribs 0.61-0.87); the
#: bright cortex of an enhancing organ (a kidney's, 125-190 HU) is surrounded by the
#: organ itself (0.09-0.45 on the CT phantom's kidneys at 0.8 mm, whose noisy cortex
#: reaches 180 HU)
SURROUND_HU = 80.0
SURROUND_FRACTION = 0.5
#: thin bone (at most ``THIN_MM`` deep at its 50 % threshold) is the click's component
#: at this fraction of the way from the soft tissue to the bone instead of half-way:
#: its brightest voxel is itself partial-volumed and, where the bone runs obliquely
#: through the voxels, its ridge falls to 40-60 % of that voxel along its length (a
#: 3 mm rib: 100-350 HU), so the 50 % threshold breaks it into pieces and the click
#: keeps one of them
THIN_FRACTION = 0.35
#: ... kept when it holds all but this fraction of the 50 % object
KEEP_SLACK = 0.05
#: ... and is at least this many times its size (real-CT ribs: a lower threshold that
#: joined the rib's pieces gave 2-8 times the 50 % object, one that added a rim or a
#: neighbour's tip 1.35-1.5 times)
JOIN_GROWTH = 1.75
#: a negative click on thin bone with no joint towards the positive clicks removes
#: only its own part, within 3 x its depth + ``LOCAL_MM`` of itself
LOCAL_MM = 10.0
#: a positive correction on bone adds the clicked bone near the click (not a ball of
#: the missed part's depth) when the object and that bone are no deeper than this
#: (surface distance, mm): a rib with its marrow reads 2-5.5 mm (real CT), a vertebral
#: body 10 mm or more
SEGMENT_MM = 8.0
#: ... within this distance of the click (or 1.5 x the object's equivalent-sphere
#: radius when larger): the click lies mid-way along a missed segment whose length
#: its depth does not tell; beyond the reach the bone is left to a further click, so
#: where the bone's object runs past the missed segment (into the costal cartilage,
#: across a joint the split missed) the excess stays near the click (real CT at
#: 1.5 mm: 15 mm added 150-290 voxels of rib per click; 40 mm overshot rib left 10,
#: whose fifth click then lowered Dice by 0.027)
SEGMENT_REACH_MM = 25.0
#: a negative click on a partial-volume voxel within this many voxels of the bone's
#: surface (less than half bone) removes the voxels no brighter than it as near
RIM_VOXELS = 1.5


def looks_like_ct(modality: Optional[str], array: np.ndarray) -> bool:
    """Whether intensities are Hounsfield units: modality CT, or unknown with air at -1000.

    Parameters
    ----------
    modality : str or None
        The volume's modality (``"CT"``, ``"MR"``, ...).
    array : numpy.ndarray
        The volume (a strided sample is read when ``modality`` is unknown).

    Returns
    -------
    bool
    """
    if modality is not None:
        return str(modality).strip().upper() == "CT"
    step = max(1, int(round((array.size / 1_000_000) ** (1 / 3))))
    sample = np.asarray(array[::step, ::step, ::step], dtype=np.float32)
    if sample.size == 0:
        return False
    lo, hi = np.percentile(sample, [1, 99.5])
    return bool(lo < -500.0 and hi > CORTEX_HU and np.issubdtype(array.dtype, np.integer))


def _values(image: np.ndarray, centre: Sequence[int], radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    return values_at(image, centre, ball_offsets(radius_mm, spacing))


def bone_threshold(raw: np.ndarray, click: Sequence[int], spacing: np.ndarray,
                   enclosed: float = 0.0) -> Optional[float]:
    """The partial-volume bone threshold (HU) at ``click``, or ``None`` if it is not bone.

    Parameters
    ----------
    raw : numpy.ndarray
        CT intensities (HU) of the working grid (block means count as partial volume).
    click : sequence of int
        The click (indices into ``raw``).
    spacing : numpy.ndarray
        Spacing of ``raw`` (mm, z, y, x).
    enclosed : float
        :func:`enclosure` at the click: cancellous bone (a vertebral body, 60-200 HU)
        is no brighter than some organs or a disc, but it is wrapped in cortex.

    Returns
    -------
    float or None
        Half-way between the click's bone intensity and the soft tissue around it
        (never below ``MIN_THRESHOLD_HU``); ``None`` when the click is not on bone.
    """
    levels = _bone_levels(raw, click, spacing, enclosed)
    return None if levels is None else _threshold(*levels, 0.5)


def _bone_levels(raw: np.ndarray, click: Sequence[int], spacing: np.ndarray,
                 enclosed: float = 0.0) -> Optional[tuple]:
    """``(soft, bone)`` intensities at a click on bone (:func:`bone_threshold`), or ``None``."""
    spacing = np.asarray(spacing, dtype=float)
    near = _values(raw, click, max(1.5, 1.01 * float(spacing.min())), spacing)
    if near.size == 0:
        return None
    level = float(np.median(near))
    wide = _values(raw, click, max(CORTEX_MM, 1.01 * float(spacing.max())), spacing)
    # A click voxel as bright as cortex is on compact bone even where its neighbourhood
    # is mostly soft tissue (the tip of a thin bone, one voxel across).
    compact = ((level >= BONE_HU or float(raw[tuple(click)]) >= CORTEX_HU)
               and float(np.percentile(wide, 95)) >= CORTEX_HU)
    cancellous = level >= CANCELLOUS_HU and enclosed >= ENCLOSED
    if not (compact or cancellous):
        return None
    # The click's bone: the brighter half of its neighbourhood (a click on a thin rib
    # at 3 mm is itself partial-volumed; its brightest neighbours are the rib).
    bone = max(level, float(np.percentile(near, 75)))
    return _soft_around(raw, click, bone, spacing)[0], bone


def _soft_around(raw: np.ndarray, centre: Sequence[int], bone: float, spacing: np.ndarray) -> tuple:
    """``(soft, surrounded)``: the soft-tissue level within 10 mm of ``centre`` and the
    fraction of that ball below ``SURROUND_HU``."""
    around = _values(raw, centre, 10.0 + float(np.max(spacing)), spacing)
    soft_part = around[(around > -150.0) & (around < min(bone, 150.0))]
    soft = float(np.median(soft_part)) if soft_part.size >= 10 else SOFT_HU
    surrounded = float(np.mean(around < SURROUND_HU)) if around.size else 1.0
    return soft, surrounded


def _threshold(soft: float, bone: float, fraction: float) -> float:
    """``fraction`` of the way from ``soft`` to ``bone``, never below ``MIN_THRESHOLD_HU``."""
    return max(soft + fraction * (bone - soft), MIN_THRESHOLD_HU)


def partial_volume_bone(raw: np.ndarray, click: Sequence[int], spacing: np.ndarray) -> Optional[tuple]:
    """A click on or beside thin bone: ``(threshold, seed)``, or ``None`` when it is not one.

    At 3 mm (or resampled from it) a rib is two or three voxels of 150-350 HU blurred
    into the soft tissue around it, often with no voxel of ``CORTEX_HU`` (an osteopenic
    rib), and a click on its reference (wider than the bone) often lands on a 20-160 HU
    voxel beside the peak: :func:`bone_threshold` does not take it for bone, and
    intensity growing from it gives the soft tissue. Such a click is a thin-bone click
    when

    * a bone peak (>= ``PV_PEAK_HU``) lies within ``PV_MM`` (at least one voxel), or
      within ``THIN_MM`` when the click lies inside the cortical ring (below: a wide
      rib's marrow, whose ring may be up to its half-width away); the object of such a
      click holds the marrow around it (the ring's closing, :func:`bone_object`);
    * the click's neighbourhood is partial-volumed: at least ``PV_FRACTION`` of the way
      from the soft tissue around the peak to the peak (a muscle or a disc at its own
      level beside a bone is not), or the click lies inside the bone's cortical ring (at
      the 50 % threshold; :func:`_between`: a rib's fatty marrow, darker than that
      level);
    * the bone at the 50 % threshold is thin there: its surface distance within
      ``THIN_MM`` of the peak stays below ``THIN_MM`` (a rib, a transverse process; not
      a vertebral body, an enhanced aorta);
    * the peak lies in soft tissue, fat or air (at least ``SURROUND_FRACTION`` of the
      10 mm ball around it below ``SURROUND_HU``): the enhancing cortex of a kidney is
      a thin bright shell too, but inside the organ.

    Parameters
    ----------
    raw : numpy.ndarray
        CT intensities (HU) of the working grid.
    click : sequence of int
        The click (indices into ``raw``).
    spacing : numpy.ndarray
        Spacing of ``raw`` (mm, z, y, x).

    Returns
    -------
    tuple or None
        The partial-volume threshold (half-way between the peak and the soft tissue
        around it, never below ``MIN_THRESHOLD_HU``) and the peak voxel (the seed of
        the bone object).
    """
    pv = _partial_volume(raw, click, spacing)
    return None if pv is None else (_threshold(pv[0], pv[1], 0.5), pv[2])


def _partial_volume(raw: np.ndarray, click: Sequence[int], spacing: np.ndarray,
                    ring: bool = True) -> Optional[tuple]:
    """``(soft, peak, seed)`` of a partial-volume click beside thin bone (:func:`partial_volume_bone`).

    ``ring``: a click in the marrow of a wide ring (:func:`_between`) may find the peak
    within ``THIN_MM`` when none lies within ``PV_MM``.
    """
    spacing = np.asarray(spacing, dtype=float)
    click = tuple(int(c) for c in click)
    level = click_level(raw, click, spacing)
    # Fat partial-volumed with bone is no bone click; a rim voxel of the bone that reads
    # brighter than its neighbourhood is looked at further (:func:`_partial_volumed`).
    if level is None or max(level, float(raw[click])) < PV_LOW_HU:
        return None
    # Beside the bone its peak lies within ``PV_MM``; inside a wide rib's cortical ring
    # (its marrow) the ring may be up to ``THIN_MM`` away, its half-width.
    found = _peak(raw, click, spacing, PV_MM)
    far = found is None
    if far:
        found = _peak(raw, click, spacing, THIN_MM) if ring else None
        if found is None:
            return None
    peak, seed = found
    soft, surrounded = _soft_around(raw, seed, peak, spacing)
    if surrounded < SURROUND_FRACTION:
        return None
    threshold = _threshold(soft, peak, 0.5)
    inside = _between(raw, click, threshold, spacing)
    if not inside and (far or not _partial_volumed(raw, click, level, soft, peak, threshold)):
        return None
    if level < PV_LOW_HU and not inside and not _on_rim(raw, click, soft, peak, threshold):
        return None
    if not _thin_at(raw, threshold, seed, spacing):
        return None
    return soft, peak, seed


def _partial_volumed(raw: np.ndarray, click: tuple, level: float, soft: float, peak: float,
                     threshold: float) -> bool:
    """Whether a click beside thin bone is on the bone's partial volume, not on the soft tissue.

    Its neighbourhood's level is at least ``PV_FRACTION`` of the way from ``soft`` to
    ``peak``, or the click is on the bone's rim (:func:`_on_rim`).
    """
    return level >= soft + PV_FRACTION * (peak - soft) or _on_rim(raw, click, soft, peak, threshold)


def _on_rim(raw: np.ndarray, click: tuple, soft: float, peak: float, threshold: float) -> bool:
    """Whether ``click``'s own voxel is at least ``PV_FRACTION`` of the way from ``soft`` to
    ``peak`` and a face neighbour is bone at the 50 % ``threshold``.

    A rim voxel of a bone two or three voxels thick has more soft tissue (or fat) than
    bone among its neighbours, so their median reads as the soft tissue's although the
    voxel itself holds bone.
    """
    if float(raw[click]) < soft + PV_FRACTION * (peak - soft):
        return False
    return bool(_bone_faces(raw, click, threshold))


def _bone_faces(raw: np.ndarray, click: tuple, threshold: float) -> list:
    """The face neighbours of ``click`` at or above ``threshold``."""
    out = []
    for axis in range(3):
        for step in (-1, 1):
            q = list(click)
            q[axis] += step
            if 0 <= q[axis] < raw.shape[axis] and float(raw[tuple(q)]) >= threshold:
                out.append(tuple(q))
    return out


def _peak(raw: np.ndarray, click: tuple, spacing: np.ndarray, reach_mm: float) -> Optional[tuple]:
    """``(value, voxel)`` of the brightest voxel within ``reach_mm`` of ``click`` (at least
    one voxel), or ``None`` when it is below ``PV_PEAK_HU``."""
    offsets = ball_offsets(max(reach_mm, 1.01 * float(spacing.max())), spacing)
    pts = np.asarray(click)[None, :] + offsets
    pts = pts[np.all((pts >= 0) & (pts < np.asarray(raw.shape)[None, :]), axis=1)]
    values = raw[pts[:, 0], pts[:, 1], pts[:, 2]]
    if values.size == 0 or float(values.max()) < PV_PEAK_HU:
        return None
    j = int(np.argmax(values))
    return float(values[j]), tuple(int(v) for v in pts[j])


def _between(raw: np.ndarray, click: tuple, threshold: float, spacing: np.ndarray) -> bool:
    """Whether ``click`` lies inside a thin bone's cortical ring (a rib's fatty marrow,
    darker than the soft tissue around the rib), not beside the bone.

    Bone (``raw >= threshold``) lies on both sides of the click within ``PV_MM`` along
    one of the 13 axes through it, or within ``THIN_MM`` along at least two: the ring of
    a wide, flat rib is up to ``2 THIN_MM`` across (a thin bone's depth limit) and
    surrounds the click in its cross-section, so several axes meet it; two bones on
    either side of soft tissue meet a second axis only when both lie within
    ``THIN_MM / sqrt(2)`` of the click.
    """
    return (_between_axes(raw, click, threshold, spacing, PV_MM) >= 1
            or _between_axes(raw, click, threshold, spacing, THIN_MM) >= 2)


def _between_axes(raw: np.ndarray, click: tuple, threshold: float, spacing: np.ndarray, reach_mm: float) -> int:
    """How many of the 13 axes through ``click`` meet bone (``raw >= threshold``) on both
    sides within ``reach_mm``."""
    spacing = np.asarray(spacing, dtype=float)
    shape = np.asarray(raw.shape)
    steps = np.arange(float(spacing.min()), reach_mm + 1e-6, float(spacing.min()))
    dirs = _directions()

    def hit(d: np.ndarray) -> bool:
        idx = np.rint(np.asarray(click)[None, :] + d[None, :] * steps[:, None] / spacing[None, :]).astype(int)
        idx = idx[np.all((idx >= 0) & (idx < shape[None, :]), axis=1)]
        return bool(idx.size) and bool((raw[idx[:, 0], idx[:, 1], idx[:, 2]] >= threshold).any())

    return sum(1 for k in range(13) if hit(dirs[k]) and hit(dirs[25 - k]))


def _thin_at(raw: np.ndarray, threshold: float, seed: tuple, spacing: np.ndarray) -> bool:
    """Whether the bone (``raw >= threshold``) is thinner than ``THIN_MM`` near ``seed``.

    Measured in a box of ``2 THIN_MM`` around the seed (the box faces are not the
    bone's surface), on the seed's component: the largest surface distance within
    ``THIN_MM`` of the seed.
    """
    r = [int(math.ceil(2.0 * THIN_MM / s)) + 1 for s in spacing]
    box = tuple(slice(max(0, c - k), min(n, c + k + 1)) for c, k, n in zip(seed, r, raw.shape))
    sub = raw[box] >= np.float32(threshold)
    local = _nearest(sub, tuple(c - b.start for c, b in zip(seed, box)), spacing)
    if local is None:
        return False
    lab, _ = ndi.label(sub)
    sub = lab == lab[local]
    dist = ndi.distance_transform_edt(np.pad(sub, 1, constant_values=True), sampling=spacing)[1:-1, 1:-1, 1:-1]
    grids = np.ogrid[tuple(slice(0, k) for k in sub.shape)]
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, local, spacing))
    depth = float(dist[sub & (d2 <= THIN_MM ** 2)].max()) - 0.5 * float(spacing.min())
    return depth <= THIN_MM


def enclosure(raw: np.ndarray, click: Sequence[int], spacing: np.ndarray, reach_mm: float = ENCLOSE_MM) -> float:
    """Fraction of 26 rays from ``click`` that meet a shell within ``reach_mm``.

    A shell voxel is at least ``SHELL_HU`` and ``SHELL_STEP`` brighter than the click's
    neighbourhood (the click's own tissue is no shell: an enhanced kidney is not
    wrapped in itself).

    0 when more than ``OPEN_PAIRS`` directions run free *together with* their
    opposites: a region open on opposite sides (an intervertebral disc between two
    endplates, a muscle beside a bone) is not wrapped in bone, however much bone lies
    above and below it. Measured at the deepest points: real-CT vertebral bodies
    0.88-0.96 with at most one open pair, the CT phantom's discs 0.38-0.73 with 2-4,
    organs and vessels <= 0.15.
    """
    spacing = np.asarray(spacing, dtype=float)
    c = np.asarray(click, dtype=float)
    dirs = _directions()
    steps = np.arange(0.5 * float(spacing.min()), reach_mm, 0.5 * float(spacing.min()))
    pts = c[None, None, :] + dirs[:, None, :] * steps[None, :, None] / spacing[None, None, :]
    idx = np.rint(pts).astype(int)
    inside = np.all((idx >= 0) & (idx < np.asarray(raw.shape)), axis=2)
    idx = np.clip(idx, 0, np.asarray(raw.shape) - 1)
    level = click_level(raw, click, spacing)
    hit = (raw[idx[..., 0], idx[..., 1], idx[..., 2]] >= max(SHELL_HU, level + SHELL_STEP)) & inside
    hits = hit.any(axis=1)
    # dirs[k] and dirs[25 - k] are opposite (the list is symmetric about its middle).
    if sum(1 for k in range(13) if not hits[k] and not hits[25 - k]) > OPEN_PAIRS:
        return 0.0
    return float(np.mean(hits))


def _directions() -> np.ndarray:
    """The 26 unit directions of a voxel's neighbourhood; ``k`` and ``25 - k`` are opposite."""
    dirs = np.array([(a, b, d) for a in (-1, 0, 1) for b in (-1, 0, 1) for d in (-1, 0, 1)
                     if (a, b, d) != (0, 0, 0)], dtype=float)
    return dirs / np.linalg.norm(dirs, axis=1)[:, None]


def wrapped_part(raw: np.ndarray, region: np.ndarray, spacing: np.ndarray, shell: float,
                 reach_mm: float = ENCLOSE_MM) -> np.ndarray:
    """The voxels of ``region`` wrapped in a shell, as :func:`enclosure` reads a click.

    A voxel is wrapped when at most ``OPEN_PAIRS`` of the 13 pairs of opposite
    directions run free on both sides (no voxel ``>= shell`` within ``reach_mm``):
    cancellous bone has cortex all round, a disc between two endplates is open across
    the spine. A ray leaving ``raw`` counts as meeting the shell (``raw`` is a crop:
    what lies beyond it is unknown, and a vertebra cut by the crop keeps its interior).

    Parameters
    ----------
    raw : numpy.ndarray
        CT intensities (HU).
    region : numpy.ndarray
        Boolean mask on ``raw``'s grid (the intensity-grown interior).
    spacing : numpy.ndarray
        Spacing (mm, z, y, x).
    shell : float
        The shell's intensity (HU).
    reach_mm : float
        How far each ray looks.

    Returns
    -------
    numpy.ndarray
        Boolean mask, a subset of ``region``.
    """
    spacing = np.asarray(spacing, dtype=float)
    box = bbox(region)
    if box is None:
        return region
    rays = _ray_offsets(spacing, reach_mm)
    reach = np.max([np.abs(o).max(axis=0) for o in rays if len(o)] or [np.zeros(3, int)], axis=0)
    # Each ray is a set of voxel offsets: a voxel's ray meets the shell when the shell
    # holds one of them. Evaluated for the region's whole box at once, as shifted views
    # of the shell mask around it (outside ``raw`` counted as shell), not voxel by voxel.
    lo = np.array([b.start for b in box])
    shape = np.array([b.stop - b.start for b in box])
    shell_mask = np.ones(tuple(shape + 2 * reach), dtype=bool)
    src_lo, src_hi = np.maximum(lo - reach, 0), np.minimum(lo + shape + reach, raw.shape)
    shell_mask[tuple(slice(a - b + r, c - b + r) for a, b, c, r in zip(src_lo, lo, src_hi, reach))] = (
        raw[tuple(slice(a, c) for a, c in zip(src_lo, src_hi))] >= np.float32(shell))

    def meets(k: int) -> np.ndarray:
        hit = np.zeros(tuple(shape), dtype=bool)
        for off in rays[k]:
            hit |= shell_mask[tuple(slice(r + o, r + o + n) for r, o, n in zip(reach, off, shape))]
        return hit

    open_pairs = np.zeros(tuple(shape), dtype=np.uint8)
    for k in range(13):
        open_pairs += ~meets(k) & ~meets(25 - k)
    out = np.zeros(region.shape, dtype=bool)
    out[box] = region[box] & (open_pairs <= OPEN_PAIRS)
    return out


def _ray_offsets(spacing: np.ndarray, reach_mm: float) -> list:
    """Per direction of :func:`_directions`, the voxel offsets a ray passes within
    ``reach_mm``, stepped at the finest spacing (the origin left out)."""
    steps = np.arange(float(spacing.min()), reach_mm + 1e-6, float(spacing.min()))
    rays = []
    for d in _directions():
        offsets = np.unique(np.rint(d[None, :] * steps[:, None] / spacing[None, :]).astype(int), axis=0)
        rays.append(offsets[offsets.any(axis=1)])
    return rays


def bone_object(raw: np.ndarray, spacing: np.ndarray, pos: list, neg: list,
                grown: np.ndarray, barrier: Optional[np.ndarray] = None, bar: bool = True) -> np.ndarray:
    """The bone object holding the positive clicks; ``grown`` itself when a click is not on bone.

    A single soft-tissue click between two bones (a disc) gives the slab between them
    (:func:`._disc.disc_object`) instead of ``grown``; one on a bar of soft tissue
    clearly brighter than the tissue around it (costal cartilage) gives the bar
    (:func:`._cartilage.bright_bar`) when ``bar``.

    Parameters
    ----------
    raw : numpy.ndarray
        CT intensities (HU) of the working grid.
    spacing : numpy.ndarray
        Its spacing (mm, z, y, x).
    pos, neg : list of tuple
        Positive and negative clicks (indices into ``raw``).
    grown : numpy.ndarray
        The intensity-grown region of the clicks (cancellous bone: the body's interior).
    barrier : numpy.ndarray, optional
        Voxels that are never part of the object (outside a box).
    bar : bool
        Whether a click on a bright bar gives the bar. The session passes False for a
        correction of an object not started on one (:func:`started_on_bar`): a click on
        the soft tissue beside a rib passes the bar's tests, and the bar there is that
        tissue.

    Returns
    -------
    numpy.ndarray
        Boolean mask on ``raw``'s grid.
    """
    spacing = np.asarray(spacing, dtype=float)
    if not pos:
        return grown
    thresholds, lows, starts, shells, rings, cancellous, pvs = [], [], [], [], [], False, []
    for p in pos:
        level = click_level(raw, p, spacing)
        shells.append(max(SHELL_HU, level + SHELL_STEP))
        levels, enclosed, compact = None, 0.0, False
        if level >= CANCELLOUS_HU:
            enclosed = enclosure(raw, p, spacing)
            levels = _bone_levels(raw, p, spacing, enclosed)
            compact = _bone_levels(raw, p, spacing) is not None
            # Cancellous bone below the threshold: the intensity-grown interior joins
            # (only when wrapped in bone: elsewhere it may have leaked into soft tissue).
            cancellous |= levels is not None and not compact
        start = p
        if levels is None:
            # A partial-volume voxel beside thin bone: grow from the bone's peak.
            pv = _partial_volume(raw, p, spacing)
            if pv is None:
                # Soft tissue, fat, air, fluid; a slab of it between two bones (a disc)
                # is answered by its position (``_disc``), a bar of it clearly brighter
                # than the soft tissue around it (costal cartilage) by that step
                # (``_cartilage``).
                if len(pos) != 1:
                    return grown
                disc = disc_object(raw, spacing, p, barrier)
                if disc is None and bar:
                    disc = bright_bar(raw, spacing, p, barrier, neg)
                return grown if disc is None else disc
            levels, start = pv[:2], pv[2]
            pvs.append(p)
            if np.sqrt(np.sum(((np.asarray(start) - p) * spacing) ** 2)) > max(PV_MM, float(spacing.max())):
                rings.append(p)  # a click in a wide ring's marrow (its peak beyond ``PV_MM``)
        t = _threshold(*levels, 0.5)
        thresholds.append(t)
        starts.append(start)
        if pvs and pvs[-1] == p and float(raw[p]) < t:
            # A rim voxel (below the threshold itself) belongs to the bone on its faces
            # as well as to the peak: at 3 mm an oblique rib's brightest voxel may touch
            # the rest of it through an edge only, a component of one voxel at the
            # threshold.
            starts.extend(q for q in _bone_faces(raw, p, t) if q != start)
        # Thin bone: its ridge falls well below its brightest voxel along its length
        # (``THIN_FRACTION``). Compact bone wrapped in bone is thin bone too (a rib in
        # the rib cage, whose neighbours meet every ray); a vertebral body's shell,
        # thin at its 50 % threshold as well, fills in at the lower threshold, which
        # the depth test below then declines.
        thin = (enclosed < ENCLOSED or compact) and _thin_at(raw, t, start, spacing)
        lows.append(_threshold(*levels, THIN_FRACTION) if thin else None)
    interior = None
    if cancellous:
        # The interior joins only where it is wrapped in bone itself: grown from
        # marrow as dark as a disc, it runs through the disc into the next vertebra
        # (real CT resampled to 1.5 mm: L2's interior 37 k voxels, 2.6 x the
        # vertebra), and a disc is open across the spine.
        interior = wrapped_part(raw, grown, spacing, min(shells))
        # Below the shell's level the same holds for the bone mask: a disc
        # partial-volumed with its endplates reads as bright as osteopenic marrow
        # (real CT resampled to 1.5 mm: 100-160 HU between L1 and T12, whose threshold
        # is the ``MIN_THRESHOLD_HU`` floor, and L1's object took T12's body).
        band = _wrapped_band(raw, spacing, min(thresholds), min(shells), starts, interior, barrier)
        if band is not None:
            interior, thresholds = band, [min(shells)]
    # Thin bone on a grid finer than the image resolves (every click a partial-volume
    # click, whose bone is thin at its threshold and lies in soft tissue): its parts
    # touch through contacts thinner than one resolution element, which the neck test's
    # slack joins when counted in elements (``split_at_necks``; real CT resampled to
    # 1.5 mm: ribs cut to a piece 3-4 mm deep around the click). Not for the lower
    # threshold below, whose object then runs on into the soft tissue the bone runs
    # into (a rib's costal cartilage), nor for a compact-bone click, which is not known
    # to be thin bone in soft tissue (a rib's head beside an osteopenic spine).
    resolution = _resolution(raw, spacing) if pvs and len(pvs) == len(pos) else None
    out = _object_at(raw, spacing, min(thresholds), starts, neg, interior, barrier, resolution)
    if resolution is not None and out is not None and _depth(out, spacing) > THIN_MM:
        # The slack is for thin bone: an object it made no longer thin joined a thick
        # bone through a contact the image does not resolve either (real CT resampled
        # to 1.5 mm: a click inside rib right 12 gave 28 398 voxels, 333 without).
        out = _object_at(raw, spacing, min(thresholds), starts, neg, interior, barrier)
    if out is None:
        return grown
    if all(t is not None for t in lows) and min(lows) < min(thresholds):
        # The lower threshold is for joining the pieces of a broken ridge: it is kept
        # when it holds the 50 % object, at least ``JOIN_GROWTH`` times as large (less
        # is a partial-volume rim around the same pieces or a neighbour's tip, as
        # often outside the bone as inside it), and still thin (at a lower threshold
        # a rib's joint with its vertebra fills in and the split no longer finds the
        # neck).
        low = _object_at(raw, spacing, min(lows), starts, neg, interior, barrier)
        n = np.count_nonzero(out)
        if (low is not None and np.count_nonzero(out & ~low) <= KEEP_SLACK * n
                and np.count_nonzero(low) >= JOIN_GROWTH * n and _depth(low, spacing) <= THIN_MM):
            out = low
    out = _with_marrow(out, rings, spacing, barrier)
    return grown if out is None else out


def _with_marrow(out: np.ndarray, clicks: list, spacing: np.ndarray,
                 barrier: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """``out`` plus the marrow around each click inside its cortical ring; ``None`` when
    the ring does not close around a click (it lies beside the bone, not in it).

    The ring's bone at its threshold leaves the marrow (darker than the soft tissue
    around the rib) out, and a click there asks for it: the part of the bone's closing
    by a ball of ``THIN_MM`` (the ring's half-width) that holds the click.
    """
    clicks = [p for p in clicks if not out[p]]
    box = bbox(out, pad=[int(math.ceil(THIN_MM / s)) + 1 for s in spacing])
    if not clicks or box is None:
        return out
    sub = out[box]
    closed = closing(sub, ellipsoid(THIN_MM, spacing)) & ~sub
    if barrier is not None:
        closed &= ~barrier[box]
    marrow = components_at(closed, [tuple(c - b.start for c, b in zip(p, box)) for p in clicks])
    if not all(marrow[tuple(c - b.start for c, b in zip(p, box))] for p in clicks):
        return None
    out = out.copy()
    out[box] |= marrow
    return out


def _wrapped_band(raw: np.ndarray, spacing: np.ndarray, threshold: float, shell: float, starts: list,
                  interior: np.ndarray, barrier: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """Cancellous bone's voxels between ``threshold`` and the ``shell`` level that belong to it.

    Of the bone mask's part holding ``starts`` (``raw >= threshold`` or ``interior``), the
    voxels below the shell's level are kept where they are the cortex's partial-volume
    rim (next to a voxel at the shell's level) or wrapped in the shell
    (:func:`wrapped_part`); ``interior`` is kept whole. ``None`` when no start lies in
    that part.
    """
    candidate = (raw >= np.float32(threshold)) | interior
    if barrier is not None:
        candidate &= ~barrier
    lab, _ = ndi.label(candidate)
    ids = [int(lab[s]) for s in starts if lab[s]]
    if not ids:
        return None
    part = np.isin(lab, ids)
    box = bbox(part, pad=1)
    band = part[box] & (raw[box] < np.float32(shell)) & ~interior[box]
    cortex = raw[box] >= np.float32(shell)
    rim = band & ndi.binary_dilation(cortex, structure=np.ones((3, 3, 3), dtype=bool))
    inner = np.zeros(raw.shape, dtype=bool)
    inner[box] = band & ~rim
    # On the whole working grid: a ray leaving it meets the shell (:func:`wrapped_part`).
    out = interior | wrapped_part(raw, inner, spacing, shell)
    out[box] |= rim
    return out


def _object_at(raw: np.ndarray, spacing: np.ndarray, threshold: float, starts: list, neg: list,
               grown: Optional[np.ndarray], barrier: Optional[np.ndarray],
               resolution: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """The part holding ``starts`` of the bone above ``threshold`` (plus ``grown``), split
    at its necks (``resolution``: :func:`split_at_necks`); ``None`` when no start is on or
    next to that bone."""
    candidate = raw >= np.float32(threshold)
    if grown is not None:
        candidate |= grown
    if barrier is not None:
        candidate &= ~barrier
    seeds = [_nearest(candidate, p, spacing) for p in starts]
    seeds = [s for s in seeds if s is not None]
    if not seeds:
        return None
    lab, _ = ndi.label(candidate)
    ids = {int(lab[s]) for s in seeds}
    box = bbox(np.isin(lab, list(ids)), pad=1)
    sub = np.isin(lab[box], list(ids))
    sub = ndi.binary_fill_holes(sub)
    if barrier is not None:
        sub &= ~barrier[box]
    local = [tuple(c - b.start for c, b in zip(s, box)) for s in seeds]
    local_neg = [tuple(c - b.start for c, b in zip(n, box)) for n in neg]
    local_neg = [n for n in local_neg if all(0 <= c < k for c, k in zip(n, sub.shape))]
    # The bone goes on past the working grid's faces (the crop grows while the object
    # touches a face that is not the volume's).
    faces = [(b.start == 0, b.stop == n) for b, n in zip(box, raw.shape)]
    bone = None if resolution is None else raw[box] >= np.float32(PV_PEAK_HU)
    part = split_at_necks(sub, spacing, local, local_neg, open_faces=faces, resolution=resolution, bone=bone)
    out = np.zeros(raw.shape, dtype=bool)
    out[box] = part
    return out


def _depth(mask: np.ndarray, spacing: np.ndarray) -> float:
    """The largest surface distance in ``mask`` (mm; half a voxel inside the background)."""
    box = bbox(mask, pad=1)
    if box is None:
        return 0.0
    dist = ndi.distance_transform_edt(mask[box], sampling=spacing)
    return float(dist.max()) - 0.5 * float(np.min(spacing))


def surface_distance(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distance (mm) from each voxel of ``mask`` to its surface: to the face of the nearest
    background voxel, half a voxel inside that voxel's centre along the way there.

    Along the finest axis the half voxel is half its spacing; along a coarser axis half
    of that axis's spacing. On a grid of thick slices (1 x 1 x 3 mm) a bone one slice
    above its background is then 1.5 mm deep, not 2.5 mm: a contact between two slices
    reads as thin as it is, not as thick as a thin bone's own parts, which the neck test
    would otherwise never cut (:func:`split_at_necks`).

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean mask (z, y, x).
    spacing : sequence of float
        Spacing (mm, z, y, x).

    Returns
    -------
    numpy.ndarray
        Float distances, 0 outside ``mask``.
    """
    spacing = np.asarray(spacing, dtype=float)
    finest = float(spacing.min())
    dist = ndi.distance_transform_edt(mask, sampling=spacing) - 0.5 * finest
    for axis in np.flatnonzero(spacing > 1.05 * finest):
        # Where the nearest surface lies across the thick slices: the distance along
        # that axis alone, less its own half voxel.
        along = _distance_along(mask, int(axis)) * spacing[axis] - 0.5 * spacing[axis]
        dist = np.minimum(dist, along)
    return np.where(mask, dist, 0.0)


def _distance_along(mask: np.ndarray, axis: int) -> np.ndarray:
    """Per voxel, the number of steps along ``axis`` to the nearest voxel outside ``mask``
    (infinite on a line with none)."""
    n = mask.shape[axis]
    shape = [1] * mask.ndim
    shape[axis] = n
    idx = np.arange(n, dtype=np.float32).reshape(shape)
    before = np.maximum.accumulate(np.where(mask, -np.inf, idx), axis=axis)
    after = np.flip(np.minimum.accumulate(np.flip(np.where(mask, np.inf, idx), axis), axis=axis), axis)
    return np.minimum(idx - before, after - idx)


def _nearest(candidate: np.ndarray, p: Sequence[int], spacing: np.ndarray) -> Optional[tuple]:
    """``p`` if it is a candidate, else the nearest candidate within 1.5 voxels (a click on a rim)."""
    p = tuple(int(c) for c in p)
    if candidate[p]:
        return p
    box = tuple(slice(max(0, c - 1), min(n, c + 2)) for c, n in zip(p, candidate.shape))
    idx = np.argwhere(candidate[box])
    if idx.size == 0:
        return None
    idx = idx + np.asarray([b.start for b in box])[None, :]
    d = (((idx - np.asarray(p)[None, :]) * spacing[None, :]) ** 2).sum(axis=1)
    return tuple(int(v) for v in idx[int(np.argmin(d))])


def _resolution(raw: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """The image's resolution on ``raw``'s grid per axis (mm): the spacing times the
    interpolation factor measured from its noise (``_resolution.interpolation_factors``)."""
    return np.asarray(spacing, dtype=float) * np.asarray(interpolation_factors(raw), dtype=float)


def split_at_necks(mask: np.ndarray, spacing: np.ndarray, pos: list, neg: list = (),
                   ratio: float = NECK_RATIO, own_basin_when_unclear: bool = False,
                   open_faces: Optional[Sequence[tuple]] = None,
                   resolution: Optional[Sequence[float]] = None,
                   bone: Optional[np.ndarray] = None) -> np.ndarray:
    """The part of ``mask`` holding ``pos``, cut from the rest at necks thinner than its parts.

    A watershed of the inverted distance transform (surface distance, mm) from its
    regional maxima gives one basin per thick part; adjacent basins are merged, widest
    neck first, while the neck (the thickest contact between them) is at least
    ``ratio`` times the thinner group's peak thickness (each group: the basins merged
    so far). Groups holding a negative click
    never merge with the group holding a positive click.

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean mask (one connected bone region and its neighbours).
    spacing : numpy.ndarray
        Spacing (mm, z, y, x).
    pos, neg : list of tuple
        Positive and negative clicks (indices into ``mask``; each positive inside it).
    ratio : float
        Neck-to-part thickness ratio below which two parts are separate objects.
    own_basin_when_unclear : bool
        When the positive and the negative groups are thin bone (thinner than
        ``THIN_MM``) and touch through a neck that does not separate them (a rib read
        as one rod from ``pos`` to ``neg``), return only the watershed basin holding
        the first positive click, within 3 x its depth + ``LOCAL_MM`` of it: where no
        joint is clear the split would fall anywhere along the rod.
    open_faces : sequence of (bool, bool), optional
        Per axis, whether ``mask``'s first and last faces are no surface (the bone goes
        on beyond them).
    resolution : sequence of float, optional
        The image's resolution per axis (mm; the spacing when not given): between two
        parts that both hold a ``bone`` voxel, the slack of thin parts (``NECK_SLACK``,
        ``THIN_VOXELS``) is counted in its elements instead of voxels.
    bone : numpy.ndarray, optional
        Boolean mask on ``mask``'s grid of the voxels as bright as bone (all of ``mask``
        when not given). A part without one is partial-volumed soft tissue (the costal
        cartilage a rib runs into), not a bump of the bone: it gets the voxels' slack.

    Returns
    -------
    numpy.ndarray
        Boolean mask, a subset of ``mask``.
    """
    import SimpleITK as sitk

    spacing = np.asarray(spacing, dtype=float)
    element = spacing if resolution is None else np.maximum(spacing, np.asarray(resolution, dtype=float))
    # (slack, thin) per voxel and per resolution element (equal on a grid at the
    # image's resolution).
    # "Thin" in voxels of the mean spacing (thick slices, ``THIN_VOXELS``), times the
    # voxels one resolution element spans along the coarsest axis.
    thin = THIN_VOXELS * float(spacing.mean())
    voxel_slack = (NECK_SLACK * float(spacing.min()), thin)
    element_slack = (NECK_SLACK * float(element.min()), thin * float(element.max() / spacing.max()))
    # Distance to the bone's surface (half a voxel inside the nearest background
    # voxel's centre, along each axis its own half voxel), so a one-voxel contact is
    # thin at any voxel size and a contact between two thick slices thin across them.
    padded = np.pad(mask, 1)
    for axis, faces in enumerate(open_faces or ()):
        for side, is_open in zip((0, -1), faces):
            if is_open:
                idx = [slice(None)] * 3
                idx[axis] = side
                padded[tuple(idx)] = True
    # (0 outside ``mask``: the padding only opens the border layer.)
    dist = surface_distance(padded, spacing)[1:-1, 1:-1, 1:-1].astype(np.float32)
    # Regional maxima (plateaus joined), one marker each.
    peaks = mask & (dist >= ndi.maximum_filter(dist, size=3, mode="constant"))
    markers, n = ndi.label(peaks, structure=np.ones((3, 3, 3), bool))
    # A plateau holding both a positive and a negative click (a uniform rod, or a
    # coarse grid's flat distance) floods from the clicks instead, so they compete.
    inside = [tuple(int(c) for c in p) for p in pos if mask[tuple(int(c) for c in p)]]
    outside = [tuple(int(c) for c in q) for q in neg if mask[tuple(int(c) for c in q)]]
    shared = ({int(markers[c]) for c in inside} & {int(markers[c]) for c in outside}) - {0}
    if shared:
        markers[np.isin(markers, list(shared))] = 0
        for c in inside + outside:
            if markers[c] == 0:
                n += 1
                markers[c] = n
    if n <= 1 and not neg:
        return mask.copy()
    top = float(dist.max()) + 1.0
    levels = np.where(mask, top - dist, 2.0 * top).astype(np.float32)
    ws = sitk.GetArrayFromImage(sitk.MorphologicalWatershedFromMarkers(
        sitk.GetImageFromArray(levels), sitk.GetImageFromArray(markers.astype(np.uint32)),
        markWatershedLine=False, fullyConnected=False))
    ws = np.where(mask, ws, 0).astype(np.int64)
    peak = np.zeros(n + 1, dtype=np.float64)
    np.maximum.at(peak, ws.ravel(), dist.ravel())
    # Whether each basin (then each group) holds a voxel as bright as bone.
    gbone = np.ones(n + 1, dtype=bool)
    if bone is not None:
        gbone = np.bincount(ws[bone & mask].ravel(), minlength=n + 1) > 0
    # Necks: per pair of touching basins, the thickest contact (face neighbours).
    keys, necks = [], []
    for axis in range(3):
        a = np.moveaxis(ws, axis, 0)
        da = np.moveaxis(dist, axis, 0)
        la, lb = a[:-1], a[1:]
        touch = (la != lb) & (la > 0) & (lb > 0)
        if not touch.any():
            continue
        x, y = la[touch], lb[touch]
        v = np.minimum(da[:-1][touch], da[1:][touch])
        lo, hi = np.minimum(x, y), np.maximum(x, y)
        keys.append(lo * (n + 1) + hi)
        necks.append(v)
    parent = np.arange(n + 1)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return int(i)

    pos_ids = {int(ws[p]) for p in pos if ws[p] > 0}
    neg_ids = {int(ws[q]) for q in neg if ws[q] > 0} - pos_ids
    side = {}  # root -> +1 (holds a positive click) / -1 (a negative one)
    for i in pos_ids:
        side[i] = 1
    for i in neg_ids:
        side[i] = -1
    gpeak = peak.copy()
    unclear = False
    # All positive clicks belong to one object.
    pos_list = sorted(pos_ids)
    for i in pos_list[1:]:
        gpeak[pos_list[0]] = max(gpeak[pos_list[0]], gpeak[find(i)])
        gbone[pos_list[0]] = gbone[pos_list[0]] or gbone[find(i)]
        parent[find(i)] = find(pos_list[0])
    if keys:
        k = np.concatenate(keys)
        v = np.concatenate(necks)
        order = np.lexsort((-v, k))
        k, v = k[order], v[order]
        first = np.r_[True, k[1:] != k[:-1]]
        k, v = k[first], v[first]  # the thickest contact per pair
        for j in np.argsort(-v, kind="stable"):
            a_id, b_id = int(k[j] // (n + 1)), int(k[j] % (n + 1))
            ra, rb = find(a_id), find(b_id)
            if ra == rb:
                continue
            # Against the groups' thickest parts, not the touching basins': a chain of
            # small bumps must not carry a merge across a joint.
            slack, thin = element_slack if gbone[ra] and gbone[rb] else voxel_slack
            tol = slack if max(gpeak[ra], gpeak[rb]) <= thin else 0.0
            if v[j] + tol < ratio * min(gpeak[ra], gpeak[rb]):
                continue
            sa, sb = side.get(ra, 0), side.get(rb, 0)
            if sa * sb < 0:
                unclear = True
                continue
            parent[rb] = ra
            side[ra] = sa or sb
            gpeak[ra] = max(gpeak[ra], gpeak[rb])
            gbone[ra] = gbone[ra] or gbone[rb]
    if not pos_ids:
        return mask.copy()
    root = find(next(iter(pos_ids)))
    others = {find(i) for i in neg_ids}
    if (own_basin_when_unclear and unclear and others
            and max([gpeak[root]] + [gpeak[r] for r in others]) <= THIN_MM):
        # Its own basin, and only within its locality (3 x its depth + ``LOCAL_MM``,
        # as for a shallow negative click on soft tissue): an even rod has a single
        # basin flooded from the clicks, which would meet half-way.
        c0 = tuple(int(c) for c in pos[0])
        reach = 3.0 * float(dist[c0]) + LOCAL_MM
        grids = np.ogrid[tuple(slice(0, k) for k in mask.shape)]
        d2 = sum(((g - c) * s_) ** 2 for g, c, s_ in zip(grids, c0, spacing))
        return (ws == ws[c0]) & mask & (d2 <= reach ** 2)
    roots = np.array([find(i) for i in range(n + 1)])
    keep = roots[ws] == root
    keep &= mask
    return keep


def bone_seed(array: np.ndarray, click: Sequence[int], spacing: np.ndarray, ring: bool = True) -> Optional[tuple]:
    """The bone voxel a click on bone grows from, as :func:`bone_object` reads it; ``None`` off bone.

    The click itself on compact bone or on cancellous bone wrapped in a shell
    (:func:`enclosure`); the bone's peak within ``PV_MM`` for a partial-volume voxel
    beside thin bone (:func:`partial_volume_bone`), or within ``THIN_MM`` for a click in
    the marrow of a wide rib's cortical ring.

    Parameters
    ----------
    array : numpy.ndarray
        CT intensities (HU); only the click's neighbourhood is read.
    click : sequence of int
        The click (indices into ``array``).
    spacing : numpy.ndarray
        Spacing (mm, z, y, x).
    ring : bool
        Whether a click in a ring's marrow with no peak within ``PV_MM`` is a bone click.

    Returns
    -------
    tuple or None
        Indices into ``array``.
    """
    spacing = np.asarray(spacing, dtype=float)
    click = tuple(int(c) for c in click)
    reach = [int(math.ceil((ENCLOSE_MM + 10.0 + float(np.max(spacing))) / s)) + 1 for s in spacing]
    box = tuple(slice(max(0, c - k), min(n, c + k + 1)) for c, k, n in zip(click, reach, array.shape))
    raw = np.asarray(array[box], dtype=np.float32)
    local = tuple(c - b.start for c, b in zip(click, box))
    level = click_level(raw, local, spacing)
    if level is not None and level >= CANCELLOUS_HU and _bone_levels(raw, local, spacing, enclosure(raw, local, spacing)) is not None:
        return click
    pv = _partial_volume(raw, local, spacing, ring)
    return None if pv is None else tuple(int(c) + b.start for c, b in zip(pv[2], box))


def started_on_bar(array: np.ndarray, click: Sequence[int], spacing: np.ndarray) -> bool:
    """Whether an object's first ``click`` was answered by a bright bar (costal cartilage).

    The click passes the bar's tests (:func:`._cartilage.bar_levels`) and is no bone
    click (:func:`bone_seed`): a click on a thin rib passes the bar's tests too, but the
    bone's shape answers it, and corrections of a rib must not add the bar of soft
    tissue beside it (real CT at 1.5 mm: rib right 12 0.717 -> 0.642 after a positive
    click).

    Parameters
    ----------
    array : numpy.ndarray
        CT intensities (HU); only the click's neighbourhood is read.
    click : sequence of int
        The object's first positive click (indices into ``array``).
    spacing : numpy.ndarray
        Spacing (mm, z, y, x).

    Returns
    -------
    bool
    """
    spacing = np.asarray(spacing, dtype=float)
    click = tuple(int(c) for c in click)
    return bar_levels(array, spacing, click) is not None and bone_seed(array, click, spacing) is None


def bone_addition(array: np.ndarray, old: np.ndarray, old_box: tuple, grown: np.ndarray, click: tuple,
                  spacing: np.ndarray, first: Optional[tuple] = None) -> Optional[np.ndarray]:
    """What a positive corrective ``click`` on bone outside the mask adds, or ``None``.

    A positive click on a missed segment of a bone (a rib's, past where the first
    click's object stopped) says "this bone is the object". The region grown from the
    click alone (``grown``: :func:`bone_object`'s answer, split from the neighbouring
    bones at their joints) is that bone; it is added within ``SEGMENT_REACH_MM`` of the
    click (1.5 x the object's equivalent-sphere radius when larger, as for
    :func:`._corrections.local_addition`) and connected to the click there. The
    soft-tissue rules of a correction do not apply: its depth limit (a ball of twice
    the missed part's depth) keeps a few millimetres of a bone 3-8 mm thick, and the
    partial-volume test against the object's own intensity drops every bone voxel when
    the object so far is the marrow or the partial-volume tissue around the bone (real
    CT resampled to 1.5 mm: a click on a rib's cortex added 1 voxel). Only while the
    object and the clicked bone are thin (``SEGMENT_MM``).

    Parameters
    ----------
    array : numpy.ndarray
        CT intensities (HU), full grid.
    old : numpy.ndarray
        The current mask (full grid).
    old_box : tuple of slice
        A box holding ``old``.
    grown : numpy.ndarray
        The region grown from the click alone (full grid).
    click : tuple
        The positive click (outside ``old``).
    spacing : numpy.ndarray
        Spacing (mm, z, y, x).
    first : tuple, optional
        The object's first positive click: a click beside the object's bright voxels is
        its partial-volume rim only when the object was started on bone (an enhanced
        vessel is as bright and as thin).

    Returns
    -------
    numpy.ndarray or None
        The voxels to add (full grid), or ``None`` when the click is not on bone (nor on
        the soft tissue right beside the bone of an object started on bone,
        :func:`_rim_addition`) or the object or the clicked bone is thicker than
        ``SEGMENT_MM``.
    """
    from ._corrections import object_radius_mm

    spacing = np.asarray(spacing, dtype=float)
    # The local tests first: most positive clicks on CT are not on or beside bone.
    # A click in a ring's marrow asks for the marrow, not for the ring's bone (which the
    # object of a first click there already holds): it is the rim's case below.
    seed = bone_seed(array, click, spacing, ring=False)
    rim = seed is None and first is not None and bone_seed(array, first, spacing) is not None
    if (seed is None and not rim) or _depth(old[old_box], spacing) > SEGMENT_MM:
        # Off bone, or the object is thick (a vertebra: its missed part is no narrow
        # segment that a ball of the missed part's depth cuts short, and the object of
        # a click on its rim or a process runs on across the facet joints into its
        # neighbours, whose cortex is as thin at the 50 % threshold): the correction's
        # own rules apply.
        return None
    if rim:
        return _rim_addition(array, old, click, spacing)
    radius = max(SEGMENT_REACH_MM, 1.5 * object_radius_mm(old[old_box], spacing))
    r = [int(math.ceil(radius / s)) for s in spacing]
    box = tuple(slice(max(0, c - k), min(n, c + k + 1)) for c, k, n in zip(click, r, old.shape))
    local = tuple(c - b.start for c, b in zip(click, box))
    start = tuple(c - b.start for c, b in zip(seed, box))
    grids = np.ogrid[tuple(slice(0, b.stop - b.start) for b in box)]
    ball = sum(((g - c) * s_) ** 2 for g, c, s_ in zip(grids, local, spacing)) <= radius ** 2
    # The bone's part joined to the click and to its bone voxel (a partial-volume
    # click lies beside the bone, within ``PV_MM``), through the mask too (a missed
    # segment joins the object at its end).
    new = grown[box] & ~old[box] & ball
    new[local] = True
    new[start] |= not old[box][start]
    lab, _ = ndi.label(new | old[box])
    new &= np.isin(lab, [i for i in {int(lab[local]), int(lab[start])} if i])
    if _depth(new, spacing) > SEGMENT_MM:
        return None  # the click's bone is thick: not a missed segment of thin bone
    if np.count_nonzero(new & (np.asarray(array[box]) >= MIN_THRESHOLD_HU)) < 0.5 * np.count_nonzero(new):
        # Not the bone: the session grew the click by intensity (on a coarsened
        # working grid a partial-volume click's bone is blended away).
        return None
    out = np.zeros(old.shape, dtype=bool)
    out[box] = new
    return out


def _rim_addition(array: np.ndarray, old: np.ndarray, click: tuple, spacing: np.ndarray) -> Optional[np.ndarray]:
    """A positive click on the soft tissue right beside the object's thin bone: the voxels
    within ``RIM_VOXELS`` voxels of it that are no darker than it; ``None`` elsewhere.

    The click (not itself a bone click) lies within ``PV_MM`` of a bone voxel of the
    object (>= ``PV_PEAK_HU``) and is soft tissue or brighter (>= ``PV_LOW_HU``): the
    object's partial-volume rim there is missing, not the muscle beside the bone,
    which the region grown from the click is (real CT resampled to 1.5 mm: clicks on
    51-64 HU beside ribs added 150-210 voxels of muscle, Dice 0.676 -> 0.638). The
    mirror of a negative click's rim cut. A darker click (fat, a rib's fatty marrow, air)
    is left to the correction's own rules.
    """
    click = tuple(int(c) for c in click)
    reach = [int(math.ceil((10.0 + PV_MM + 2.0 * float(np.max(spacing))) / s)) + 1 for s in spacing]
    box = tuple(slice(max(0, c - k), min(n, c + k + 1)) for c, k, n in zip(click, reach, array.shape))
    raw = np.asarray(array[box], dtype=np.float32)
    sub = old[box]
    local = tuple(c - b.start for c, b in zip(click, box))
    grids = np.ogrid[tuple(slice(0, n) for n in raw.shape)]
    d2 = sum(((g - c) * s_) ** 2 for g, c, s_ in zip(grids, local, spacing))
    beside = sub & (d2 <= max(PV_MM, 1.01 * float(np.max(spacing))) ** 2)
    if not beside.any() or float(raw[beside].max()) < PV_PEAK_HU:
        return None
    value = float(raw[local])
    if value < PV_LOW_HU:
        return None
    add = (d2 <= (RIM_VOXELS * float(np.max(spacing))) ** 2) & (raw >= value) & ~sub
    add[local] = True
    lab, _ = ndi.label(add | sub)
    add &= lab == lab[local]
    out = np.zeros(old.shape, dtype=bool)
    out[box] = add
    return out


def _partial_volume_voxel(raw: np.ndarray, region: np.ndarray, local: tuple, spacing: np.ndarray) -> bool:
    """Whether ``local`` is less than half bone: below half-way from the soft tissue to
    the brightest voxel of ``region`` next to it (the 50 % rule of the bone mask)."""
    box = tuple(slice(max(0, c - 1), c + 2) for c in local)
    peak = float(raw[box][region[box]].max())
    soft = _soft_around(raw, local, peak, spacing)[0]
    return float(raw[local]) < soft + 0.5 * (peak - soft)


def _rim_cut(raw: np.ndarray, region: np.ndarray, spacing: np.ndarray, local: tuple, part: tuple,
             shape: tuple, box: tuple) -> np.ndarray:
    """A negative click on a partial-volume voxel on the bone's surface (less than half
    bone): the voxels within ``RIM_VOXELS`` voxels of it that are no brighter than it.

    The leak is then the bone's partial-volume rim beyond the reference (a 3 mm rib's
    rim: leaks of 1-4 voxels): the brighter bone beside the click stays. The neck split
    or an intensity cut from such a click took the rib's own voxels (real CT rib left 11
    at 3 mm, 0.876 -> 0.833 / 0.80 after one negative click).
    """
    grids = np.ogrid[tuple(slice(0, n) for n in region.shape)]
    reach = RIM_VOXELS * float(np.max(spacing))
    near = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, local, spacing)) <= reach ** 2
    remove = region & near & (raw <= raw[local])
    out = np.zeros(shape, dtype=bool)
    out[part] = remove
    limit = np.zeros(shape, dtype=bool)
    limit[box] = True
    return out & limit


def _nearer(shape: tuple, click: tuple, others: list, spacing: np.ndarray) -> np.ndarray:
    """The voxels of a ``shape`` grid no farther from ``click`` than from any of ``others`` (mm)."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]

    def d2(c):
        return sum(((g - k) * s) ** 2 for g, k, s in zip(grids, c, spacing))

    d_click = d2(click)
    out = np.ones(shape, dtype=bool)
    for p in others:
        out &= d_click <= d2(p)
    return out


def bone_cut(array: np.ndarray, mask: np.ndarray, spacing: np.ndarray, box: tuple, pos: list,
             click: tuple) -> Optional[np.ndarray]:
    """What a negative ``click`` on bone removes from ``mask``: its side of the narrowest neck.

    The mask's part connected to the click is split by :func:`split_at_necks` with the
    negative click as one seed and the positive clicks as the other; the negative
    click's side is removed within ``box`` (the click's locality). A part that holds no
    positive click is removed within ``box`` whole. Either way no voxel nearer a
    positive click than the negative one is removed.

    Parameters
    ----------
    array : numpy.ndarray
        CT intensities (HU).
    mask : numpy.ndarray
        The current object (same grid).
    spacing : numpy.ndarray
        Spacing (mm, z, y, x).
    box : tuple of slice
        The click's locality: nothing outside it is removed.
    pos : list of tuple
        Positive clicks.
    click : tuple
        The negative click (inside ``mask``).

    Returns
    -------
    numpy.ndarray or None
        The voxels to remove, or ``None`` when the click is not on bone or no neck
        separates it from the positive clicks (the caller then splits
        by intensity edges). A click on a surface voxel less than half bone removes
        only the voxels next to it that are no brighter than it (the partial-volume rim).
    """
    spacing = np.asarray(spacing, dtype=float)
    click = tuple(int(round(c)) for c in click)
    inside = [tuple(int(round(c)) for c in p) for p in pos]
    # A partial-volume click beside thin bone is off the bone: its nearest bone voxel.
    inside = [_nearest(mask, p, spacing) for p in inside if all(0 <= c < n for c, n in zip(p, mask.shape))]
    inside = [p for p in inside if p is not None]
    if not inside or not mask[click]:
        return None
    level = click_level(array, click, spacing)
    if level is None or level < CANCELLOUS_HU:
        return None
    lab, _ = ndi.label(mask)
    connected = [p for p in inside if lab[p] == lab[click]]
    part = bbox(lab == lab[click], pad=1)
    region = lab[part] == lab[click]
    raw = np.asarray(array[part], dtype=np.float32)
    if float(np.percentile(raw[region], 95)) < CORTEX_HU:
        return None
    limit = np.zeros(mask.shape, dtype=bool)
    limit[box] = True
    if not connected:
        # Bone the object holds apart from every positive click (a leak into the next
        # vertebra's arch that an earlier negative click cut off): no neck to split,
        # the click's piece goes within its locality (an intensity cut would keep its
        # cortex or its marrow), as far as it lies nearer the click than any positive
        # click (the piece may join the object beyond the box).
        out = np.zeros(mask.shape, dtype=bool)
        out[part] = region & _nearer(region.shape, tuple(c - b.start for c, b in zip(click, part)),
                                     [tuple(c - b.start for c, b in zip(p, part)) for p in inside], spacing)
        return out & limit
    inside = connected
    # A click on a disc the mask ran through (soft tissue between two endplates, open
    # across them): the disc's slab goes, not a side of a neck split, which falls
    # inside the vertebra when the disc is as thick as its body (real CT at 1.5 mm:
    # L1 0.785 -> 0.705, 2738 of its voxels removed with 1146 of the leak).
    disc = disc_object(np.asarray(array, dtype=np.float32), spacing, click)
    if disc is not None:
        remove = disc & mask & limit
        return remove if not any(remove[p] for p in inside) else None
    local = tuple(c - b.start for c, b in zip(click, part))
    seeds = [tuple(c - b.start for c, b in zip(p, part)) for p in inside]
    # On the object's surface (cancellous bone is less than half as bright as its
    # cortex too, but a click in a leaked vertebra's body is deep inside the mask).
    depth = ndi.distance_transform_edt(np.pad(region, 1), sampling=spacing)[1:-1, 1:-1, 1:-1][local]
    if depth <= RIM_VOXELS * float(np.max(spacing)) and _partial_volume_voxel(raw, region, local, spacing):
        return _rim_cut(raw, region, spacing, local, part, mask.shape, box)
    remove = split_at_necks(region, spacing, [local], seeds, own_basin_when_unclear=True)
    if not remove.any() or any(remove[p] for p in seeds):
        return None
    bright = float(np.percentile(raw[region], 95))
    soft = _soft_around(raw, local, bright, spacing)[0]
    if float(raw[local]) < soft + 0.5 * (bright - soft) and _depth(region, spacing) <= THIN_MM:
        # A click less than half bone on thin bone (the object's partial-volume tissue,
        # deeper than a rim voxel): "not this" is tissue like the click, not the
        # brighter bone in its basin (real CT 1.5 mm rib right 11: 99-106 HU clicks
        # removed rib voxels of 108-278 HU, 0.593 -> 0.532 over four negative clicks).
        # Not on thick bone: a click in a leaked neighbour's marrow is less than half
        # as bright as its cortex, and the cortex goes with it.
        remove &= raw <= raw[local]
    # The click speaks for its own side only: voxels nearer a positive click stay
    # (where the neck is not clear, the split is no better than half-way).
    remove &= _nearer(region.shape, local, seeds, spacing)
    out = np.zeros(mask.shape, dtype=bool)
    out[part] = remove
    return out & limit
