"""A weights-free CT tissue model from Hounsfield-unit physics.

It runs anywhere (no download, no GPU, seconds on a CPU) so that automatic segmentation
works on a fresh machine. It is *not* an organ model. Labels:

====  ==================  ==========================================================
id    name                definition
====  ==================  ==========================================================
1     subcutaneous_fat    fat (-190..-30 HU) in the body, outside the muscle wall
2     visceral_fat        fat inside the muscle wall (includes intermuscular fat there)
3     skeletal_muscle     -29..150 HU soft tissue in the muscle wall band and limbs
4     bone                > 200 HU (150 HU at 3 mm voxels), marrow holes filled, cleaned
5     lung                air-filled parenchyma (mean > -930 HU, < 30 % pure air)
6     airway              pure air (< -950 HU) in trachea/bronchi next to the lungs
7     body_other          every other voxel of the body (organs, skin, vessels, gas)
====  ==================  ==========================================================

Method, per step (all sizes in mm, converted with the volume's spacing):

1. **Body**: voxels above -500 HU, opened in-plane (``table_opening_mm``) to cut the
   couch and cables off, the largest 3D connected component, holes filled slice by slice.
2. **Lungs / airways**: components of air (< -400 HU) inside the body. A component is lung
   when its mean is above -930 HU and under 30 % of it is pure air (< -950 HU): aerated
   parenchyma, unlike bowel gas (mostly pure air). Vessels inside the lung are filled in
   per slice. Airway is pure air next to the lungs, medial in the body (trachea, main
   bronchi); other gas stays ``body_other``.
3. **Bone**: above ``bone_hu``, holes up to ``bone_hole_cm2`` per slice whose mean is at
   least ``marrow_min_hu`` filled (marrow; the spinal canal's fluid stays out),
   components under ``min_bone_ml`` removed.
4. **Muscle wall**: on an in-plane grid of about 2 mm, the soft tissue and bone inside the
   body (skin peeled off) are the wall tissue. Per slice, ``wall_rays`` rays run from the
   centre of the largest body piece to the skin; walking inwards from the skin, the first
   run of wall tissue at least ``wall_min_mm`` long is the outer face of the muscle wall
   (the subcutaneous layer ends there). A ray that slips through a gap in the wall (its
   depth more than ``wall_jump_mm`` off the median of the rays within
   ``wall_window_deg``) takes that median, so the face follows the muscle ring instead of
   the organs. Everything inside the face is the *trunk* ``T``.
   Fat outside ``T`` is subcutaneous; fat inside is visceral (as TotalSegmentator's
   ``tissue_types`` splits ``subcutaneous_fat`` from ``torso_fat``).
5. **Skeletal muscle**: soft tissue (-29..150 HU) outside ``T`` (limbs, chest wall
   outside the ribs) or within ``muscle_band_mm`` of ``T``'s border (the wall itself).

Limits (documented for users): deep muscles (psoas, deep paraspinal parts further than the
band from the surface) count as ``body_other``; intermuscular fat inside the wall counts
as visceral; where the outer face of the wall is not visible from the trunk's centre (a
deep notch, e.g. fat between the back muscles and the flank muscles, or the cleft between
the buttocks) fat deeper than the notch's mouth may be called subcutaneous; in slices
through the legs only, the largest leg is the "trunk" (its intermuscular fat is
visceral); contrast-filled vessels and dense calcifications above ``bone_hu`` count as
bone; lung consolidation/effusion is not lung; bowel gas next to the lung bases may be
taken for airway only if it is pure air touching the lung; the couch is removed only when
it is separated by air from the body by more than a few millimetres.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .._ndimage import PLANE4, PLANE8, bbox, dilate, erode, octagon_disk
from ..errors import InvalidInputError
from ..progress import CancelLike, ProgressCallback, check_cancel, report

CLASSES = {
    1: "subcutaneous_fat",
    2: "visceral_fat",
    3: "skeletal_muscle",
    4: "bone",
    5: "lung",
    6: "airway",
    7: "body_other",
}
IDS = {name: idx for idx, name in CLASSES.items()}

#: Display colours (rgba). Neighbouring tissues get clearly different hues: fat yellow
#: (subcutaneous) and orange (visceral), muscle red, bone ivory, lung blue, airway cyan,
#: and the rest of the body a muted violet that no fat or muscle colour resembles.
COLORS = {
    1: (0.98, 0.86, 0.35, 1.0),
    2: (1.0, 0.5, 0.05, 1.0),
    3: (0.8, 0.18, 0.18, 1.0),
    4: (0.95, 0.93, 0.8, 1.0),
    5: (0.3, 0.6, 1.0, 1.0),
    6: (0.1, 0.9, 0.9, 1.0),
    7: (0.55, 0.45, 0.8, 1.0),
}


def _codes() -> dict:
    """DICOM-SEG codes of the classes, from published terminologies only.

    subcutaneous fat, skeletal muscle: TotalSegmentator's ``tissue_types`` classes of the
    same names; visceral fat: its ``torso_fat`` (fat inside the trunk, outside the
    subcutaneous layer: the same definition); airway: its ``lung_trachea_bronchia``
    (Trachea and bronchus); lung: SCT 39607008 "Lung" (the anatomic region TotalSegmentator
    codes lung findings with); bone: 3D Slicer's General Anatomy terminology (Tissue /
    SCT 272673000 "Bone"). ``body_other`` is a mixture with no code (written as "Tissue").
    """
    from ..io.label_table import Code, SegmentCode
    from .totalseg_classes import anatomical_code

    structure = Code("SCT", "123037004", "Anatomical Structure")
    tissue = Code("SCT", "85756007", "Tissue")
    return {
        "subcutaneous_fat": anatomical_code("subcutaneous_fat"),
        "visceral_fat": anatomical_code("torso_fat"),
        "skeletal_muscle": anatomical_code("skeletal_muscle"),
        "bone": SegmentCode(tissue, Code("SCT", "272673000", "Bone")),
        "lung": SegmentCode(structure, Code("SCT", "39607008", "Lung")),
        "airway": anatomical_code("lung_trachea_bronchia"),
        "body_other": None,
    }


def __getattr__(name: str):
    # CODES is built on first use: it reads the packaged code table.
    if name == "CODES":
        return _codes()
    raise AttributeError(name)


@dataclass(frozen=True)
class HUTissueParams:
    """Thresholds (HU) and sizes (mm, ml, cm^2) of the tissue model."""

    body_hu: float = -500.0
    air_hu: float = -400.0
    pure_air_hu: float = -950.0
    fat_range: tuple = (-190.0, -30.0)
    muscle_range: tuple = (-29.0, 150.0)
    bone_hu: Optional[float] = None  # None: 200 HU, lowered to 150 HU for 3 mm voxels
    table_opening_mm: float = 3.0
    skin_mm: float = 3.0
    muscle_band_mm: float = 10.0
    paraspinal_half_width: float = 0.15
    bone_hole_cm2: float = 12.0
    marrow_min_hu: float = 60.0
    min_bone_ml: float = 0.3
    min_lung_ml: float = 5.0
    lung_max_pure_fraction: float = 0.3
    lung_min_mean_hu: float = -930.0
    work_mm: float = 2.0
    wall_rays: int = 180
    wall_min_mm: float = 3.0
    wall_jump_mm: float = 8.0
    wall_window_deg: float = 30.0


# --------------------------------------------------------------------- structuring
def _dilate(mask: np.ndarray, radius_mm: float, wy: float, wx: float) -> np.ndarray:
    """In-plane dilation by ``radius_mm`` (octagon of 8- then 4-neighbour steps)."""
    return dilate(mask, octagon_disk(radius_mm, (wy, wx)))


def _erode(mask: np.ndarray, radius_mm: float, wy: float, wx: float) -> np.ndarray:
    """In-plane erosion by ``radius_mm`` (octagon of 8- then 4-neighbour steps)."""
    return erode(mask, octagon_disk(radius_mm, (wy, wx)))


_PLANE4, _PLANE8 = PLANE4, PLANE8


_SLAB = 32  # slices per chunk for in-plane work: bounds the int32 label scratch


def _fill_slices(mask: np.ndarray) -> np.ndarray:
    """Fill holes in every axial slice (in-plane connectivity only).

    Labels the background in-plane (one fast pass) and keeps as background only the pieces
    that touch a slice's edge; ``ndimage.binary_fill_holes`` (iterated dilation) is an order
    of magnitude slower on large CTs. Works in slabs of slices (exact: slices are
    independent) to keep the label scratch small.
    """
    out = np.zeros_like(mask, dtype=bool)
    for z0 in range(0, mask.shape[0], _SLAB):
        m = mask[z0:z0 + _SLAB]
        box = _slab_box(m)
        if box is not None:  # outside the box there is no mask and so nothing to fill
            out[z0:z0 + _SLAB][box] = _fill_slab(m[box])
    return out


def _slab_box(m: np.ndarray) -> Optional[tuple]:
    """The box of ``m``'s true voxels grown by one background pixel in-plane (None: empty).

    Background on the box's rim touches the background outside it, as it does the slice's
    edge, so filling holes inside the box gives the same holes as in the whole slab while
    labelling only the box (a lung or bone slab is a fraction of the slice).
    """
    box = bbox(m, pad=(0, 1, 1))
    return None if box is None else (slice(None),) + box[1:]


def _fill_slab(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    lab, n = ndi.label(~mask, structure=_PLANE4)
    if n == 0:
        return mask.copy()
    edge = np.zeros(n + 1, bool)
    for border in (lab[:, 0, :], lab[:, -1, :], lab[:, :, 0], lab[:, :, -1]):
        edge[np.unique(border)] = True
    edge[0] = True  # label 0 is the mask itself
    return ~edge[lab] | mask


def _fill_small_holes(mask: np.ndarray, max_area_vox: float, hu: Optional[np.ndarray] = None,
                      min_mean_hu: Optional[float] = None) -> np.ndarray:
    """Fill per-slice holes no larger than ``max_area_vox`` voxels.

    With ``hu`` and ``min_mean_hu``, only holes whose mean HU reaches ``min_mean_hu`` are
    filled (marrow inside cortex, not the spinal canal's fluid inside the vertebral arch).
    Works in slabs of slices (holes are per slice, so this is exact), each within the box
    of its mask (:func:`_slab_box`).
    """
    from scipy import ndimage as ndi

    out = mask.copy()
    for z0 in range(0, mask.shape[0], _SLAB):
        box = _slab_box(mask[z0:z0 + _SLAB])
        if box is None:
            continue
        m = mask[z0:z0 + _SLAB][box]
        holes = _fill_slab(m) & ~m
        if not holes.any():
            continue
        lab, n = ndi.label(holes, structure=_PLANE4)
        ids = lab[holes]  # only hole voxels: far fewer than the slab
        sizes = np.bincount(ids, minlength=n + 1)
        fill = sizes <= max_area_vox
        if hu is not None and min_mean_hu is not None:
            sums = np.bincount(ids, weights=hu[z0:z0 + _SLAB][box][holes].astype(np.float64),
                               minlength=n + 1)
            fill &= sums >= min_mean_hu * sizes
        fill[0] = False
        out[z0:z0 + _SLAB][box] |= fill[lab]
    return out


def _downsample(mask: np.ndarray, f: tuple, any_: bool = False) -> np.ndarray:
    """In-plane block reduction by factors (fy, fx): majority (or any); pads to a multiple.

    Separable: the ``fx`` strided columns are added (or or-ed) first, then the ``fy`` rows
    of that third-size result; blocks cut by the edge count their missing pixels as
    false, as zero padding would. About four passes over the mask, instead of a padded
    copy reduced over two strided axes (several times slower on a 512x512x300 CT).
    """
    fy, fx = f
    if fy == 1 and fx == 1:
        return mask
    dtype = bool if any_ else np.uint8
    cols = _add_strided(mask if any_ else mask.view(np.uint8), fx, 2, dtype)
    blocks = _add_strided(cols, fy, 1, dtype)
    return blocks if any_ else blocks * 2 >= fy * fx


def _add_strided(a: np.ndarray, step: int, axis: int, dtype) -> np.ndarray:
    """Sum (or, for booleans, any) of each run of ``step`` elements along ``axis``; the
    last run may be short."""
    n = -(-a.shape[axis] // step)
    shape = list(a.shape)
    shape[axis] = n
    out = np.zeros(shape, dtype)
    for k in range(step):
        idx = [slice(None)] * a.ndim
        idx[axis] = slice(k, None, step)
        part = a[tuple(idx)]
        dst = [slice(None)] * a.ndim
        dst[axis] = slice(0, part.shape[axis])
        if dtype is bool:
            out[tuple(dst)] |= part
        else:
            out[tuple(dst)] += part
    return out


def _upsample(mask: np.ndarray, f: tuple, shape: tuple) -> np.ndarray:
    """Each working-grid pixel repeated (fy, fx) times in-plane, cut to ``shape``.

    Rows are widened once (``np.repeat`` along x, cut to the width) and then written ``fy``
    times by one broadcast: the full-size result is made in one pass and its rows are
    contiguous (two ``np.repeat`` calls make two full-size copies).
    """
    fy, fx = f
    if fy == 1 and fx == 1:
        return mask
    z, ny, _ = mask.shape
    rows = np.repeat(mask, fx, axis=2)[:, :, : shape[2]]
    out = np.empty((z, ny, fy, rows.shape[2]), bool)
    out[...] = rows[:, :, None, :]
    return out.reshape(z, ny * fy, rows.shape[2])[:, : shape[1]]


# -------------------------------------------------------------------------- steps
def body_mask(hu: np.ndarray, spacing_zyx: tuple, params: HUTissueParams = HUTissueParams()) -> np.ndarray:
    """The patient's body: largest component above ``body_hu``, couch cut off, holes filled.

    The shape work (opening, components, hole filling) runs on an in-plane grid of about
    ``work_mm``; the outline is then refined at full resolution with the threshold.
    """
    from scipy import ndimage as ndi

    sy, sx = spacing_zyx[1], spacing_zyx[2]
    f = _work_factor(params, sy, sx)
    wy, wx = sy * f[0], sx * f[1]
    thr = hu > params.body_hu
    mask = _downsample(thr, f)
    r = params.table_opening_mm
    if r > 0:
        mask = _dilate(_erode(mask, r, wy, wx), r, wy, wx)
    lab, n = ndi.label(mask)
    if n == 0:
        return np.zeros(hu.shape, bool)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    sizes[0] = 0
    body_w = _fill_slices(lab == int(np.argmax(sizes)))
    del lab
    if f == (1, 1):
        return body_w
    interior = _upsample(ndi.binary_erosion(body_w, structure=_PLANE8), f, hu.shape)
    rim = _upsample(ndi.binary_dilation(body_w, structure=_PLANE8), f, hu.shape)
    return interior | (rim & thr)


def _work_factor(p: HUTissueParams, sy: float, sx: float) -> tuple:
    """In-plane reduction factors giving a working grid of about ``work_mm`` (rounded up)."""
    return (max(1, int(p.work_mm / sy + 0.25 + 0.5)), max(1, int(p.work_mm / sx + 0.25 + 0.5)))


def segment_hu_tissue(volume, *, params: Optional[HUTissueParams] = None,
                      progress: Optional[ProgressCallback] = None,
                      cancel: Optional[CancelLike] = None) -> np.ndarray:
    """Label body tissues of a CT volume from its Hounsfield units.

    Parameters
    ----------
    volume : Volume
        A 3D CT in HU (any spacing; anisotropic is fine).
    params : HUTissueParams, optional
        Thresholds and sizes.
    progress, cancel
        Progress callback ``(fraction, text)`` and cancel token.

    Returns
    -------
    numpy.ndarray
        uint8 labels on the volume's grid with the ids of :data:`CLASSES`.
    """
    from scipy import ndimage as ndi

    p = params or HUTissueParams()
    hu = np.asarray(volume.array)
    if hu.ndim != 3:
        raise InvalidInputError(f"the tissue model needs a 3D CT, got shape {hu.shape}")
    if volume.modality not in (None, "", "CT", "ct", "OT"):
        raise InvalidInputError(
            f"the HU tissue model works on CT only; this image's modality is {volume.modality!r}"
        )
    sz, sy, sx = (float(s) for s in volume.spacing_zyx)
    voxel_ml = sz * sy * sx / 1000.0
    shape = hu.shape
    out = np.zeros(shape, np.uint8)

    report(progress, 0.02, "body outline")
    body = body_mask(hu, (sz, sy, sx), p)
    check_cancel(cancel)
    if not body.any():
        return out

    # ------------------------------------------------------------ lungs / airway
    report(progress, 0.25, "lungs and airways")
    air = body & (hu < p.air_hu)
    lung = np.zeros(shape, bool)
    # Components are labelled inside the box of the air only (a fifth of a clinical CT);
    # the box keeps the voxels' raster order, so every per-component sum is the same.
    box = bbox(air) or (slice(0, 0),) * 3
    air = air[box]
    lab, n = ndi.label(air)
    if n:
        # Statistics over the air voxels only (not the whole volume): fast and lean.
        ids = lab[air]
        hu_air = hu[box][air]
        counts = np.bincount(ids, minlength=n + 1).astype(np.float64)
        pure = np.bincount(ids, weights=(hu_air < p.pure_air_hu), minlength=n + 1)
        sums = np.bincount(ids, weights=hu_air.astype(np.float64), minlength=n + 1)
        del ids, hu_air
        safe = np.maximum(counts, 1.0)
        keep = ((counts * voxel_ml >= p.min_lung_ml)
                & (pure / safe < p.lung_max_pure_fraction)
                & (sums / safe > p.lung_min_mean_hu))
        keep[0] = False
        lung[box] = keep[lab]
    del lab, air
    check_cancel(cancel)
    airway = np.zeros(shape, bool)
    if lung.any():
        lung = _fill_slices(lung) & body  # vessels inside the lung belong to it
        pure_air = body & (hu < p.pure_air_hu) & ~lung
        f_near = _work_factor(p, sy, sx)
        near = _upsample(ndi.binary_dilation(_downsample(lung, f_near, any_=True),
                                             structure=_PLANE8), f_near, shape)
        # Labelled inside the box of the pure air in z and y only: x stays whole, so the
        # centroids' x (the medial test below) are summed over the same coordinates.
        box = bbox(pure_air) or (slice(0, 0),) * 3
        box = box[:2] + (slice(None),)
        pure_air = pure_air[box]
        lab, n = ndi.label(pure_air)
        if n:
            touching = np.unique(lab[near[box] & pure_air])
            touching = touching[touching > 0]
            if touching.size:
                # Airways are medial: centroid in the middle 40 % of the body's width.
                xs = np.where(body.any(axis=(0, 1)))[0]
                x0, x1 = xs[0], xs[-1]
                cents = ndi.center_of_mass(pure_air, lab, touching)
                medial = [t for t, c in zip(touching, cents)
                          if x0 + 0.3 * (x1 - x0) <= c[2] <= x0 + 0.7 * (x1 - x0)]
                if medial:
                    keep = np.zeros(n + 1, bool)
                    keep[medial] = True
                    airway[box] = keep[lab]
        del lab, pure_air, near
        lung &= ~airway
    check_cancel(cancel)

    # ---------------------------------------------------------------------- bone
    report(progress, 0.45, "bone")
    bone = body & (hu > _bone_threshold(p, (sz, sy, sx))) & ~lung
    bone = _fill_small_holes(bone, p.bone_hole_cm2 * 100.0 / (sy * sx), hu, p.marrow_min_hu)
    # Specks (< min_bone_ml) judged on the working grid: a fraction of the labelling cost.
    fb = _work_factor(p, sy, sx)
    bone &= _upsample(_clean_small(_downsample(bone, fb, any_=True),
                                   p.min_bone_ml / (voxel_ml * fb[0] * fb[1])), fb, shape)
    check_cancel(cancel)

    # --------------------------------------------------- muscle wall / trunk hull
    report(progress, 0.6, "muscle wall")
    f = _work_factor(p, sy, sx)
    wy, wx = sy * f[0], sx * f[1]
    body_w = _downsample(body, f)
    inner_w = _erode(body_w, p.skin_mm, wy, wx)
    # Lungs, airways and bone are written into ``out`` now; "taken" is then out in (4, 5, 6).
    # (np.copyto with a mask writes in one branch-free pass: several times faster than
    # ``out[mask] = id`` on a clinical CT.)
    np.copyto(out, IDS["body_other"], where=body)
    np.copyto(out, IDS["bone"], where=bone)
    np.copyto(out, IDS["lung"], where=lung)
    np.copyto(out, IDS["airway"], where=airway)
    del lung, airway
    soft = body & (hu >= p.muscle_range[0]) & (hu <= p.muscle_range[1])
    # Wall tissue: soft tissue and bone (lungs and airways count: they lie inside the ribs),
    # skin peeled off. The trunk is what lies inside its outer face, found along rays.
    wall_w = _downsample(soft | (out >= IDS["bone"]) & (out <= IDS["airway"]), f) & inner_w
    trunk_w = _wall_hull(wall_w, body_w, wy, wx, p)
    del wall_w
    check_cancel(cancel)
    deep_w = _erode(trunk_w, p.muscle_band_mm, wy, wx)
    check_cancel(cancel)

    # ---------------------------------------------------------------- assemble
    report(progress, 0.85, "fat and muscle")
    free = out == IDS["body_other"]  # not lung, airway or bone
    trunk = _upsample(trunk_w, f, shape)
    fat = free & (hu >= p.fat_range[0]) & (hu <= p.fat_range[1])
    np.copyto(out, IDS["visceral_fat"], where=fat & trunk)
    fat &= ~trunk
    np.copyto(out, IDS["subcutaneous_fat"], where=fat)
    del fat
    # Muscle: soft tissue outside the trunk, in its outer band, or behind the spine; never
    # the skin (outermost millimetres); specks (< 0.5 ml) dropped on the working grid.
    soft &= free
    del free
    wall = ~trunk
    del trunk
    wall |= ~_upsample(deep_w, f, shape)
    wall |= _paraspinal(bone, body, volume)
    soft &= wall
    del wall
    soft &= _upsample(inner_w, f, shape)
    muscle_w = _downsample(soft, f, any_=True)
    soft &= _upsample(_clean_small(muscle_w, 0.5 / (voxel_ml * f[0] * f[1])), f, shape)
    del muscle_w, deep_w, trunk_w, inner_w, body_w
    np.copyto(out, IDS["skeletal_muscle"], where=soft)
    report(progress, 1.0, "done")
    return out


def _bone_threshold(p: HUTissueParams, spacing_zyx: tuple) -> float:
    """``bone_hu``, or by default 200 HU for voxels up to 1.5 mm, falling linearly to 150 HU
    at 3 mm: thick voxels average thin cortex with marrow and soft tissue (partial volume)."""
    if p.bone_hu is not None:
        return float(p.bone_hu)
    size = float(np.cbrt(np.prod(spacing_zyx)))
    t = min(1.0, max(0.0, (size - 1.5) / 1.5))
    return 200.0 - 50.0 * t


def _posterior_sign(volume) -> int:
    """+1 if the array's y index grows towards the patient's back, -1 if forwards, 0 if oblique."""
    column = volume.direction_matrix[:, 1]  # physical direction of the y index (LPS)
    if abs(column[1]) < 0.7:
        return 0
    return 1 if column[1] > 0 else -1


def _paraspinal(bone: np.ndarray, body: np.ndarray, volume,
                half_width: float = HUTissueParams.paraspinal_half_width) -> np.ndarray:
    """Per slice, the region behind the spine's centre line near the midline (back muscles).

    The spine is the bone near the body's left-right centre; its mean y position marks the
    spinal canal. Soft tissue behind it and within ``half_width`` of the body's width from
    the midline is the erector spinae / autochthonous musculature.
    """
    sign = _posterior_sign(volume)
    out = np.zeros(body.shape, bool)
    if sign == 0:
        return out
    for z in range(body.shape[0]):
        xs = np.flatnonzero(body[z].any(axis=0))
        if xs.size < 3:
            continue
        cx, width = 0.5 * (xs[0] + xs[-1]), xs[-1] - xs[0]
        x0, x1 = int(cx - half_width * width), int(np.ceil(cx + half_width * width)) + 1
        ys, _ = np.nonzero(bone[z, :, x0:x1])
        if ys.size < 3:
            continue
        yc = int(round(ys.mean()))
        if sign > 0:
            out[z, yc:, x0:x1] = True
        else:
            out[z, : yc + 1, x0:x1] = True
    return out & body


def _wall_hull(wall: np.ndarray, body: np.ndarray, wy: float, wx: float,
               p: "HUTissueParams") -> np.ndarray:
    """Per slice, the region inside the outer face of the muscle wall, found along rays.

    From the centre of the slice's largest body piece, ``wall_rays`` rays run out to the
    skin. Walking each ray inwards from the skin, the first run of wall tissue (soft tissue
    or bone, skin excluded) at least ``wall_min_mm`` long is the wall's outer face; its depth
    below the skin is the subcutaneous layer's thickness along that ray. Where the wall has a
    gap (thin linea alba, a fascia at 3 mm), the ray passes through into the abdomen and its
    depth jumps: depths further than ``wall_jump_mm`` from the median of the neighbouring
    rays (``wall_window_deg``) take that median, so the face follows the muscle ring across
    gaps instead of wrapping around the organs. The region is every body pixel closer to
    the centre than the face in its direction (interpolated between rays).

    Returns a boolean mask (empty slices where the body has no piece to cast rays in).
    """
    from scipy import ndimage as ndi

    nz, ny, nx = body.shape
    out = np.zeros(body.shape, bool)
    k = int(p.wall_rays)
    theta = np.arange(k) * (2 * np.pi / k)
    sin_t, cos_t = np.sin(theta), np.cos(theta)
    step = 0.5  # working-grid pixels per sample
    # physical length of one step along each ray (anisotropic in-plane pixels)
    step_mm = step * np.hypot(wy * sin_t, wx * cos_t)
    n_min = np.maximum(1, np.ceil(p.wall_min_mm / step_mm - 1e-6)).astype(int)
    half = max(1, int(round(p.wall_window_deg / 360.0 * k)))
    yy, xx = np.mgrid[0:ny, 0:nx]
    for z in range(nz):
        piece = _largest_2d(body[z])
        if piece is None:
            continue
        cy, cx = ndi.center_of_mass(piece)
        ys, xs = np.nonzero(piece)
        radius = float(np.sqrt(((ys - cy) ** 2 + (xs - cx) ** 2).max())) + 2.0
        r = np.arange(0.0, radius, step)
        py = np.rint(cy + sin_t[:, None] * r[None, :]).astype(int)
        px = np.rint(cx + cos_t[:, None] * r[None, :]).astype(int)
        ok = (py >= 0) & (py < ny) & (px >= 0) & (px < nx)
        py, px = np.clip(py, 0, ny - 1), np.clip(px, 0, nx - 1)
        inside = piece[py, px] & ok
        tissue = wall[z][py, px] & inside
        has = inside.any(axis=1)
        if not has.all():
            continue
        # outermost body sample of each ray: the skin
        edge = inside.shape[1] - 1 - np.argmax(inside[:, ::-1], axis=1)
        # the outer face: the outermost sample (inside the skin) from which at least n_min
        # consecutive wall samples run towards the centre
        cols = np.arange(tissue.shape[1])[None, :]
        runs = _inward_runs(tissue)
        # Skin left after peeling (thick skin, coarse grid): the outermost run of wall
        # tissue is skin when it starts within a skin width of the surface and is no longer
        # than 2 skin widths; a longer one is skin on muscle (no fat between: the face is
        # at the surface).
        below = tissue & (cols <= edge[:, None])
        has_t = below.any(axis=1)
        outer = tissue.shape[1] - 1 - np.argmax(below[:, ::-1], axis=1)
        length = runs[np.arange(k), outer]
        is_skin = (has_t & ((edge - outer) * step_mm <= p.skin_mm)
                   & (length * step_mm <= 2 * p.skin_mm))
        limit = np.where(is_skin, outer - length, edge)
        face_ok = (runs >= n_min[:, None]) & (cols <= limit[:, None])
        any_face = face_ok.any(axis=1)
        face = tissue.shape[1] - 1 - np.argmax(face_ok[:, ::-1], axis=1)
        depth = np.where(any_face, (edge - face) * step_mm, np.nan)
        if np.isnan(depth).all():
            continue
        ring = np.concatenate([depth[-half:], depth, depth[:half]])
        windows = np.lib.stride_tricks.sliding_window_view(ring, 2 * half + 1)
        if np.isnan(depth).any():
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows
                med = np.nanmedian(windows, axis=1)
        else:
            # no gaps: the plain median is the same middle value (the windows have an odd
            # length), without nanmedian's masked-array path (a tenth of a case's time)
            med = np.median(windows, axis=1)
        bad = np.isnan(depth) | (np.abs(depth - med) > p.wall_jump_mm)
        depth = np.where(bad, med, depth)
        valid = ~np.isnan(depth)
        if not valid.any():
            continue
        if not valid.all():  # long gaps: interpolate around the circle
            t_ok = theta[valid]
            depth = np.interp(theta, np.concatenate([t_ok - 2 * np.pi, t_ok, t_ok + 2 * np.pi]),
                              np.tile(depth[valid], 3))
        face_r = edge * step - depth / step_mm * step  # radius of the face, in samples of r
        dy, dx = yy - cy, xx - cx
        ang = np.mod(np.arctan2(dy, dx), 2 * np.pi)
        limit = np.interp(ang, np.append(theta, 2 * np.pi), np.append(face_r, face_r[0]))
        # the face sample is the wall's outermost; pixels more than half a pixel beyond it
        # are the fat against the wall (subcutaneous)
        out[z] = piece & (np.hypot(dy, dx) <= limit - 0.5)
    return out


def _inward_runs(tissue: np.ndarray) -> np.ndarray:
    """Per sample, the number of consecutive wall samples from it towards the centre (index 0)."""
    cols = np.arange(tissue.shape[1])[None, :]
    last_gap = np.maximum.accumulate(np.where(tissue, -1, cols), axis=1)
    return cols - last_gap


def _largest_2d(mask: np.ndarray) -> Optional[np.ndarray]:
    from scipy import ndimage as ndi

    lab, n = ndi.label(mask)
    if n == 0:
        return None
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def _clean_small(mask: np.ndarray, min_vox: float) -> np.ndarray:
    """Drop 3D components smaller than ``min_vox`` voxels."""
    from scipy import ndimage as ndi

    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    counts = np.bincount(lab.ravel(), minlength=n + 1)
    keep = counts >= min_vox
    keep[0] = False
    return keep[lab]
