"""A deterministic synthetic abdominal CT phantom with its ground-truth label map.

The phantom is built from smooth analytic shapes (perturbed ellipsoids, elliptic
cylinders, dome surfaces) on the voxel grid, then converted to Hounsfield units,
slightly blurred (scanner point-spread / partial volume) and given correlated
Gaussian noise. Everything random derives from ``seed`` (NumPy generators seeded
with it, one per purpose, and one per slice for the noise), so the same arguments
always give the same bytes, and different seeds give different
cases (organ sizes and shapes, fat thickness, lesion positions, sizes and contrast)
for training and testing.

Geometry
--------
LPS-like, as ITK/DICOM: +x is the patient's left, +y posterior, +z superior; the
direction matrix is the identity and the grid is centred on (0, 0, 0) mm. In napari
(rows = y, columns = x) that is the usual radiological display: anterior at the
top, the patient's right (liver) on the left of the screen.

The anatomy is laid out for a 205 x 205 mm field of view and 250 mm of z extent
(the default 256 x 256 x 100 grid at 0.8 x 0.8 x 2.5 mm) and scales with the field
of view of other grids, so a small test grid still holds every structure. Lesions
are **not** scaled after placement: each is an axis-aligned ellipsoid in physical
millimetres (centre and semi-axes in :class:`LesionSpec`), so its volume and
diameters are known exactly, and it lies fully inside the liver with a margin.

Memory
------
The generator keeps one uint8 tissue map, the uint8 labels and the int16 image
(4 bytes per voxel, i.e. the size of one float32 volume) plus bounded per-slab
work arrays, so even a 600 x 512 x 512 phantom stays well below four float32
volumes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from .errors import InvalidInputError
from .io.volume import Volume

__all__ = [
    "LABEL_NAMES",
    "LABEL_IDS",
    "LABEL_COLORS",
    "LesionSpec",
    "Phantom",
    "make_phantom",
    "HU_RANGES",
    "MR_SIGNAL",
    "mr_contrast",
]

#: Label id -> name of the ground-truth map. Ids 1-11 are the project-wide agreed
#: ids; 12-17 are extra structures of the phantom. Never renumber.
#: Seed of the sample offered in napari's menu and the default of ``medseg sample``.
SAMPLE_SEED = 0

LABEL_NAMES: dict[int, str] = {
    1: "liver",
    2: "liver_lesion",
    3: "spleen",
    4: "kidney_right",
    5: "kidney_left",
    6: "aorta",
    7: "vertebrae",
    8: "lung",
    9: "skin",
    10: "subcutaneous_fat",
    11: "muscle",
    12: "visceral_fat",
    13: "bowel",
    14: "intervertebral_disc",
    15: "spinal_canal",
    16: "inferior_vena_cava",
    17: "ribs",
}

#: Display colour (r, g, b 0-255[, alpha 0-1]) of each label: anatomical conventions,
#: lesions in a high-contrast yellow; the two fat classes half transparent, so that
#: the large fat areas do not veil the image under a filled overlay.
LABEL_COLORS: dict[int, tuple] = {
    1: (221, 130, 101), 2: (255, 235, 40), 3: (157, 108, 162), 4: (240, 160, 60),
    5: (200, 120, 40), 6: (224, 30, 40), 7: (241, 214, 145), 8: (110, 185, 235),
    9: (250, 210, 180), 10: (225, 205, 130, 0.4), 11: (190, 60, 60), 12: (200, 190, 110, 0.4),
    13: (120, 200, 120), 14: (100, 140, 220), 15: (90, 220, 200),
    16: (70, 90, 220), 17: (255, 250, 220),
}

#: Name -> label id (inverse of :data:`LABEL_NAMES`).
LABEL_IDS: dict[str, int] = {name: i for i, name in LABEL_NAMES.items()}

#: Expected range (min, max) of the *median* HU inside each label of a phantom
#: made with the default noise and blur. Documented in docs/sample.md and checked
#: by the tests.
HU_RANGES: dict[str, tuple[float, float]] = {
    "liver": (85.0, 115.0),
    "liver_lesion": (15.0, 55.0),
    "spleen": (95.0, 125.0),
    "kidney_right": (125.0, 190.0),
    "kidney_left": (125.0, 190.0),
    "aorta": (170.0, 230.0),
    "vertebrae": (350.0, 1000.0),
    "lung": (-900.0, -800.0),
    "skin": (-60.0, 60.0),
    "subcutaneous_fat": (-120.0, -80.0),
    "muscle": (35.0, 65.0),
    "visceral_fat": (-120.0, -70.0),
    "bowel": (-1000.0, 50.0),
    "intervertebral_disc": (60.0, 120.0),
    "spinal_canal": (0.0, 40.0),
    "inferior_vena_cava": (110.0, 160.0),
    "ribs": (250.0, 1000.0),
}

# The reference layout: anatomy coordinates are millimetres in this frame.
_REF_FOV_XY = 204.8
_REF_EXTENT_Z = 250.0

# ----------------------------------------------------------------- tissue table
# Internal tissue classes (finer than labels: kidney cortex vs medulla, cortical vs
# cancellous bone, bowel gas, one class per lesion). tissue -> (label id, HU).
_T_AIR, _T_SKIN, _T_SUBQ, _T_MUSCLE, _T_VFAT = 0, 1, 2, 3, 4
_T_BOWEL, _T_GAS, _T_LIVER, _T_SPLEEN = 5, 6, 7, 8
_T_KR_CORTEX, _T_KR_MEDULLA, _T_KL_CORTEX, _T_KL_MEDULLA = 9, 10, 11, 12
_T_AORTA, _T_CORTICAL, _T_CANCELLOUS, _T_DISC, _T_CANAL, _T_LUNG = 13, 14, 15, 16, 17, 18
_T_HEPATIC_VESSEL, _T_IVC, _T_RIB = 19, 20, 21
_T_LESION0 = 32
# Tissues labelled liver (a lesion may grow over an intrahepatic vessel: it displaces it).
_LIVER_TISSUES = np.array([7, 19], dtype=np.uint8)  # lesion i has tissue class _T_LESION0 + i

_TISSUE_LABEL = {
    _T_AIR: 0, _T_SKIN: 9, _T_SUBQ: 10, _T_MUSCLE: 11, _T_VFAT: 12, _T_BOWEL: 13,
    _T_GAS: 13, _T_LIVER: 1, _T_SPLEEN: 3, _T_KR_CORTEX: 4, _T_KR_MEDULLA: 4,
    _T_KL_CORTEX: 5, _T_KL_MEDULLA: 5, _T_AORTA: 6, _T_CORTICAL: 7, _T_CANCELLOUS: 7,
    _T_DISC: 14, _T_CANAL: 15, _T_LUNG: 8,
    # Intrahepatic portal/hepatic vein branches belong to the liver, as in the usual
    # liver ground truths (LiTS, TotalSegmentator).
    _T_HEPATIC_VESSEL: 1, _T_IVC: 16, _T_RIB: 17,
}

# Tissues an abdominal organ may grow into (the peritoneal/retroperitoneal cavity).
_CAVITY = (_T_VFAT, _T_BOWEL, _T_GAS)

_MAX_LESIONS = 8


@dataclass(frozen=True)
class LesionSpec:
    """One liver lesion: an axis-aligned ellipsoid in physical millimetres.

    A voxel belongs to the lesion when its centre ``p`` satisfies
    ``sum(((p - center_xyz_mm) / semi_axes_xyz_mm) ** 2) <= 1``.

    Attributes
    ----------
    index : int
        0-based lesion number (largest first).
    center_xyz_mm : tuple of float
        Centre, physical (x, y, z) mm.
    center_zyx_vox : tuple of float
        Centre as a fractional voxel index (z, y, x).
    semi_axes_xyz_mm : tuple of float
        Semi-axes along x, y, z in mm.
    hu : float
        Mean attenuation of the lesion (before noise and blur).
    """

    index: int
    center_xyz_mm: tuple
    center_zyx_vox: tuple
    semi_axes_xyz_mm: tuple
    hu: float

    def to_dict(self) -> dict:
        """JSON-ready description (centre, semi-axes, HU, volume and diameters)."""
        return {
            "index": self.index,
            "center_xyz_mm": list(self.center_xyz_mm),
            "center_zyx_vox": list(self.center_zyx_vox),
            "semi_axes_xyz_mm": list(self.semi_axes_xyz_mm),
            "hu": self.hu,
            "volume_ml": self.volume_ml,
            "longest_axial_diameter_mm": self.longest_axial_diameter_mm,
            "short_axial_diameter_mm": self.short_axial_diameter_mm,
        }

    @property
    def semi_axes_zyx_mm(self) -> tuple:
        """Semi-axes in array order (z, y, x), mm."""
        return tuple(reversed(self.semi_axes_xyz_mm))

    @property
    def volume_ml(self) -> float:
        """Analytic volume, millilitres: 4/3 pi a b c / 1000."""
        a, b, c = self.semi_axes_xyz_mm
        return 4.0 / 3.0 * math.pi * a * b * c / 1000.0

    @property
    def diameters_xyz_mm(self) -> tuple:
        """Full extent along x, y and z in mm (twice the semi-axes)."""
        return tuple(2.0 * a for a in self.semi_axes_xyz_mm)

    @property
    def longest_axial_diameter_mm(self) -> float:
        """Longest in-plane (axial) diameter, mm, as RECIST measures it.

        The ellipsoid is axis-aligned, so this is the larger of its x and y diameters,
        reached on the axial slice through the centre.
        """
        return 2.0 * max(self.semi_axes_xyz_mm[0], self.semi_axes_xyz_mm[1])

    @property
    def short_axial_diameter_mm(self) -> float:
        """Shorter in-plane diameter, mm, perpendicular to the longest one."""
        return 2.0 * min(self.semi_axes_xyz_mm[0], self.semi_axes_xyz_mm[1])


@dataclass
class Phantom:
    """A synthetic CT with its ground truth (see :func:`make_phantom`).

    Attributes
    ----------
    ct : Volume
        int16 Hounsfield units, modality ``"CT"``, identity direction.
    labels : numpy.ndarray
        uint8 label map (z, y, x) on the same grid; ids in :attr:`names`.
    names : dict
        Label id -> name for every id of the phantom (see :data:`LABEL_NAMES`).
    lesions : list of LesionSpec
        The liver lesions, largest first.
    seed : int
        The seed it was made with.
    """

    ct: Volume
    labels: np.ndarray
    names: dict
    lesions: list
    seed: int = 0
    hu_by_tissue: dict = field(default_factory=dict, repr=False)

    @property
    def label_ids(self) -> dict:
        """Name -> label id."""
        return {name: i for i, name in self.names.items()}

    @property
    def label_table(self):
        """The :class:`~napari_medseg.io.LabelTable` of the phantom (names and anatomical colours)."""
        from .io.label_table import LabelTable

        return LabelTable.from_names(self.names, colors={i: LABEL_COLORS[i] for i in self.names
                                                         if i in LABEL_COLORS})

    @property
    def labels_volume(self) -> Volume:
        """The label map as a :class:`Volume` on the CT's grid."""
        return self.ct.with_array(self.labels, modality=None,
                                  metadata={"label_names": dict(self.names)})

    def lesion_mask(self, i: int) -> np.ndarray:
        """Boolean mask (z, y, x) of lesion ``i``: voxels whose centre is in its ellipsoid.

        Equal to ``labels == 2`` restricted to that lesion, since lesions never touch.
        """
        if not 0 <= i < len(self.lesions):
            raise IndexError(f"the phantom has {len(self.lesions)} lesions; no lesion {i}")
        lesion = self.lesions[i]
        mask = np.zeros(self.labels.shape, dtype=bool)
        grid = _Grid(self.ct)
        sl, inside = _ellipsoid_in_box(grid, lesion.center_xyz_mm, lesion.semi_axes_xyz_mm)
        if sl is not None:
            mask[sl] = inside
        return mask

    def lesion_voxel_volume_ml(self, i: int) -> float:
        """Volume of lesion ``i`` counted in voxels (ml); compare with :attr:`LesionSpec.volume_ml`."""
        return float(self.lesion_mask(i).sum()) * self.ct.voxel_volume_ml


# ------------------------------------------------------------------------ grid
class _Grid:
    """Physical coordinates of voxel centres, one 1D array per axis (mm)."""

    def __init__(self, volume_or_shape, spacing_zyx=None, origin_zyx=None) -> None:
        if isinstance(volume_or_shape, Volume):
            shape, spacing_zyx, origin_zyx = (volume_or_shape.shape, volume_or_shape.spacing_zyx,
                                              volume_or_shape.origin_zyx)
        else:
            shape = volume_or_shape
        self.shape = tuple(int(n) for n in shape)
        self.spacing = tuple(float(s) for s in spacing_zyx)
        self.origin = tuple(float(o) for o in origin_zyx)
        self.axes = [np.float32(o) + np.arange(n, dtype=np.float32) * np.float32(s)
                     for n, s, o in zip(self.shape, self.spacing, self.origin)]

    def index_slice(self, axis: int, lo: float, hi: float) -> slice:
        """Slice of the voxels along ``axis`` whose centres lie in [lo, hi] mm."""
        o, s, n = self.origin[axis], self.spacing[axis], self.shape[axis]
        start = max(0, int(math.ceil((lo - o) / s - 1e-6)))
        stop = min(n, int(math.floor((hi - o) / s + 1e-6)) + 1)
        return slice(start, max(start, stop))

    def box(self, lo_zyx: Sequence[float], hi_zyx: Sequence[float]):
        """Index slices and open coordinate grids (Z, Y, X) of a physical box, or None."""
        sl = tuple(self.index_slice(a, lo_zyx[a], hi_zyx[a]) for a in range(3))
        if any(s.stop <= s.start for s in sl):
            return None, None
        z = self.axes[0][sl[0]][:, None, None]
        y = self.axes[1][sl[1]][None, :, None]
        x = self.axes[2][sl[2]][None, None, :]
        return sl, (z, y, x)

    def z_chunks(self, sl: tuple, step: int = 24) -> Iterator[tuple]:
        """Split a box (tuple of slices) into z-chunks to bound temporary memory."""
        for z0 in range(sl[0].start, sl[0].stop, step):
            yield (slice(z0, min(z0 + step, sl[0].stop)), sl[1], sl[2])


def _ellipsoid_in_box(grid: _Grid, center_xyz, semi_xyz):
    """(slices, boolean mask) of an axis-aligned ellipsoid given in physical mm."""
    cx, cy, cz = center_xyz
    ax, ay, az = semi_xyz
    sl, coords = grid.box((cz - az, cy - ay, cx - ax), (cz + az, cy + ay, cx + ax))
    if sl is None:
        return None, None
    z, y, x = coords
    # float64 here: lesion membership must match the analytic ellipsoid exactly,
    # whichever function (generator or lesion_mask) evaluates it.
    q = (((x.astype(np.float64) - cx) / ax) ** 2 + ((y.astype(np.float64) - cy) / ay) ** 2
         + ((z.astype(np.float64) - cz) / az) ** 2)
    return sl, q <= 1.0


# --------------------------------------------------------------------- shapes
@dataclass
class _Blob:
    """A smooth, randomly perturbed ellipsoid in anatomy coordinates (mm).

    ``field`` is negative inside: ``|q| / r(q) - 1`` where ``q`` is the position in
    units of the semi-axes (after a rotation about z) and ``r`` a low-frequency
    radial perturbation (sum of a few sines), so the surface is smooth and every
    seed gives a slightly different organ.
    """

    center: tuple  # (X, Y, Z) anatomy mm
    axes: tuple  # semi-axes (X, Y, Z)
    angle_deg: float = 0.0  # rotation about z
    bumps: tuple = ()  # ((fx, fy, fz, phase, amp), ...)

    def extent(self) -> tuple:
        grow = 1.0 + sum(abs(b[4]) for b in self.bumps)
        r = max(self.axes[0], self.axes[1]) * grow
        return ((self.center[0] - r, self.center[0] + r), (self.center[1] - r, self.center[1] + r),
                (self.center[2] - self.axes[2] * grow, self.center[2] + self.axes[2] * grow))

    def field(self, X, Y, Z):
        dx, dy, dz = X - np.float32(self.center[0]), Y - np.float32(self.center[1]), Z - np.float32(self.center[2])
        if self.angle_deg:
            c, s = math.cos(math.radians(self.angle_deg)), math.sin(math.radians(self.angle_deg))
            dx, dy = c * dx + s * dy, -s * dx + c * dy
        u = dx / np.float32(self.axes[0])
        v = dy / np.float32(self.axes[1])
        w = dz / np.float32(self.axes[2])
        q = np.sqrt(u * u + v * v + w * w)
        r = np.float32(1.0)
        for fx, fy, fz, phase, amp in self.bumps:
            r = r + np.float32(amp) * np.sin(np.float32(fx) * u + np.float32(fy) * v
                                             + np.float32(fz) * w + np.float32(phase))
        return q / r - np.float32(1.0)


def _random_bumps(rng: np.random.Generator, n: int = 3, amp: float = 0.05) -> tuple:
    out = []
    for _ in range(n):
        f = rng.uniform(1.0, 3.0, size=3) * rng.choice([-1.0, 1.0], size=3)
        out.append((float(f[0]), float(f[1]), float(f[2]), float(rng.uniform(0, 2 * math.pi)),
                    float(rng.uniform(0.3, 1.0) * amp)))
    return tuple(out)


def _capsule(a: Sequence[float], b: Sequence[float], r0: float, r1: float):
    """(extent, inside) of a tapered tube from ``a`` (radius r0) to ``b`` (radius r1), mm."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    d = b - a
    dd = float(np.dot(d, d)) or 1.0
    r = max(r0, r1)
    extent = tuple((min(a[i], b[i]) - r, max(a[i], b[i]) + r) for i in range(3))

    def inside(X, Y, Z):
        t = np.clip(((X - a[0]) * d[0] + (Y - a[1]) * d[1] + (Z - a[2]) * d[2]) / np.float32(dd), 0, 1)
        dist2 = (X - a[0] - t * d[0]) ** 2 + (Y - a[1] - t * d[1]) ** 2 + (Z - a[2] - t * d[2]) ** 2
        rad = np.float32(r0) + np.float32(r1 - r0) * t
        return dist2 <= rad * rad

    return extent, inside


def _smooth_min(a, b, k: float = 0.12):
    """Polynomial smooth minimum: a union of two fields without a crease."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


# -------------------------------------------------------------------- builder
class _Builder:
    """Paints tissues into a uint8 map, one shape at a time, on bounded boxes."""

    def __init__(self, grid: _Grid, scale_xyz: tuple, rng: np.random.Generator) -> None:
        self.grid = grid
        self.k = tuple(np.float32(s) for s in scale_xyz)  # anatomy mm -> physical mm
        self.rng = rng
        self.seed = 0
        self.tissue = np.zeros(grid.shape, dtype=np.uint8)

    def _anatomy_box(self, ext_xyz):
        (x0, x1), (y0, y1), (z0, z1) = ext_xyz
        kx, ky, kz = (float(k) for k in self.k)
        return self.grid.box((z0 * kz, y0 * ky, x0 * kx), (z1 * kz, y1 * ky, x1 * kx))

    def paint(self, ext_xyz, inside: Callable, tissue: int, allowed: Optional[Sequence[int]] = None,
              tissue_fn: Optional[Callable] = None) -> None:
        """Set ``tissue`` where ``inside(X, Y, Z)`` (anatomy mm) holds within a box.

        ``allowed``: only overwrite these tissue classes. ``tissue_fn(X, Y, Z, mask)``
        may instead return a per-voxel tissue array (e.g. cortex vs medulla).
        """
        sl, coords = self._anatomy_box(ext_xyz)
        if sl is None:
            return
        for chunk in self.grid.z_chunks(sl):
            z = self.grid.axes[0][chunk[0]][:, None, None] / self.k[2]
            y = coords[1] / self.k[1]
            x = coords[2] / self.k[0]
            mask = inside(x, y, z)
            if mask is None or not np.any(mask):
                continue
            mask = np.broadcast_to(mask, (chunk[0].stop - chunk[0].start, y.shape[1], x.shape[2]))
            target = self.tissue[chunk]
            if allowed is not None:
                mask = mask & np.isin(target, np.asarray(allowed, dtype=np.uint8))
            if tissue_fn is None:
                target[mask] = tissue
            else:
                values = np.broadcast_to(tissue_fn(x, y, z, mask), mask.shape)
                target[mask] = values[mask]


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _build_anatomy(b: _Builder) -> dict:
    """Paint the body and organs; return the per-case HU of each tissue class."""
    rng = b.rng
    f32 = np.float32
    big = 1e3

    # ---- body outline: skin, subcutaneous fat, muscle wall, visceral cavity.
    # An ellipse flatter at the back (different anterior/posterior semi-axes).
    A = _uniform(rng, 90.0, 96.0)
    Ba = _uniform(rng, 68.0, 74.0)
    Bp = _uniform(rng, 62.0, 67.0)
    cy = 2.0
    skin = 2.0
    fat_lat, fat_ant, fat_post = _uniform(rng, 9, 20), _uniform(rng, 9, 22), _uniform(rng, 8, 14)
    mus_lat, mus_ant, mus_post = _uniform(rng, 6, 9), _uniform(rng, 6, 9), _uniform(rng, 6, 8)
    taper = _uniform(rng, -0.04, 0.04)  # body a little wider at one end

    def body_rho(X, Y, Z, dA, dBa, dBp):
        s = f32(1.0) + f32(taper) * Z / f32(125.0)
        yy = Y - f32(cy)
        bb = np.where(yy < 0, f32(Ba - dBa), f32(Bp - dBp)) * s
        return (X / (f32(A - dA) * s)) ** 2 + (yy / bb) ** 2

    ext_all = ((-big, big), (-big, big), (-big, big))
    layers = [
        (_T_SKIN, 0.0, 0.0, 0.0),
        (_T_SUBQ, skin, skin, skin),
        (_T_MUSCLE, skin + fat_lat, skin + fat_ant, skin + fat_post),
        (_T_VFAT, skin + fat_lat + mus_lat, skin + fat_ant + mus_ant, skin + fat_post + mus_post),
    ]
    for tissue, dA, dBa, dBp in layers:
        b.paint(ext_all, lambda X, Y, Z, dA=dA, dBa=dBa, dBp=dBp: body_rho(X, Y, Z, dA, dBa, dBp) <= 1,
                tissue)
    cav_post = cy + Bp - (skin + fat_post + mus_post)  # posterior edge of the cavity (mm)

    # Paraspinal muscles (erector spinae) either side of the spinous processes and the
    # psoas muscles beside the lumbar spine (growing caudally).
    for side in (-1.0, 1.0):
        para = _Blob((side * 24.0, cav_post - 2.0, 0.0), (17.0, 15.0, big))
        b.paint(para.extent(), lambda X, Y, Z, p=para: p.field(X, Y, Z) <= 0, _T_MUSCLE,
                allowed=(_T_VFAT, _T_SUBQ, _T_BOWEL))
        psoas = _Blob((side * 24.0, cav_post - 18.0, -150.0), (11.0, 10.0, 150.0))
        b.paint(psoas.extent(), lambda X, Y, Z, p=psoas: p.field(X, Y, Z) <= 0, _T_MUSCLE,
                allowed=_CAVITY)

    # ---- stomach and bowel loops (some with gas in their anterior, non-dependent part).
    bowels = [_Blob((_uniform(rng, 25, 40), _uniform(rng, -30, -20), _uniform(rng, 50, 70)),
                    (_uniform(rng, 20, 28), _uniform(rng, 15, 20), _uniform(rng, 30, 40)),
                    _uniform(rng, -30, 30), _random_bumps(rng, 3, 0.08))]
    for _ in range(int(rng.integers(9, 14))):
        bowels.append(_Blob((_uniform(rng, -45, 55), _uniform(rng, -45, 5), _uniform(rng, -120, 30)),
                            (_uniform(rng, 9, 17), _uniform(rng, 8, 14), _uniform(rng, 12, 35)),
                            _uniform(rng, 0, 180), _random_bumps(rng, 2, 0.1)))
    for blob in bowels:
        gas_level = blob.center[1] - blob.axes[1] * _uniform(rng, 0.2, 1.2)  # Y above which: gas

        def bowel_tissue(X, Y, Z, mask, gas_level=gas_level):
            return np.where(Y < f32(gas_level), np.uint8(_T_GAS), np.uint8(_T_BOWEL))

        b.paint(blob.extent(), lambda X, Y, Z, p=blob: p.field(X, Y, Z) <= 0, _T_BOWEL,
                allowed=_CAVITY, tissue_fn=bowel_tissue)

    # ---- liver: a large right lobe smoothly joined to a left lobe crossing the midline.
    sl_ = 1.0 + _uniform(rng, -0.08, 0.08)  # overall liver size
    right = _Blob((_uniform(rng, -40, -34), _uniform(rng, -4, 4), _uniform(rng, 30, 40)),
                  (44.0 * sl_, 50.0 * sl_, 72.0 * sl_), _uniform(rng, -10, 10), _random_bumps(rng, 3, 0.05))
    left = _Blob((_uniform(rng, 5, 15), _uniform(rng, -30, -24), _uniform(rng, 50, 60)),
                 (36.0 * sl_, 18.0 * sl_, 36.0 * sl_), _uniform(rng, -20, 5), _random_bumps(rng, 2, 0.06))
    ext_r, ext_l = right.extent(), left.extent()
    ext_liver = tuple((min(a[0], c[0]), max(a[1], c[1])) for a, c in zip(ext_r, ext_l))
    b.paint(ext_liver, lambda X, Y, Z: _smooth_min(right.field(X, Y, Z), left.field(X, Y, Z)) <= 0,
            _T_LIVER, allowed=_CAVITY)

    # ---- spleen: posterior left upper quadrant, its long axis tilted.
    spleen = _Blob((_uniform(rng, 50, 56), _uniform(rng, 18, 26), _uniform(rng, 35, 50)),
                   (_uniform(rng, 12, 15), _uniform(rng, 30, 38), _uniform(rng, 38, 48)),
                   _uniform(rng, -45, -25), _random_bumps(rng, 3, 0.06))
    b.paint(spleen.extent(), lambda X, Y, Z: spleen.field(X, Y, Z) <= 0, _T_SPLEEN,
            allowed=_CAVITY)

    # ---- kidneys: enhancing cortex around the medulla; the right one lower (liver above).
    cortex_mm = 4.0
    for side, (t_cortex, t_medulla), zc in ((-1.0, (_T_KR_CORTEX, _T_KR_MEDULLA), _uniform(rng, -45, -30)),
                                            (1.0, (_T_KL_CORTEX, _T_KL_MEDULLA), _uniform(rng, -30, -15))):
        axes = (_uniform(rng, 16, 19), _uniform(rng, 13, 16), _uniform(rng, 38, 46))
        kidney = _Blob((side * _uniform(rng, 36, 42), _uniform(rng, 24, 30), zc), axes,
                       side * _uniform(rng, 25, 40), _random_bumps(rng, 2, 0.04))
        medulla = _Blob(kidney.center, tuple(a - cortex_mm for a in axes), kidney.angle_deg, kidney.bumps)

        def kidney_tissue(X, Y, Z, mask, medulla=medulla, tc=t_cortex, tm=t_medulla):
            return np.where(medulla.field(X, Y, Z) <= 0, np.uint8(tm), np.uint8(tc))

        b.paint(kidney.extent(), lambda X, Y, Z, k=kidney: k.field(X, Y, Z) <= 0, t_cortex,
                allowed=_CAVITY + (_T_LIVER, _T_SPLEEN, _T_MUSCLE), tissue_fn=kidney_tissue)

    # ---- spine: vertebral bodies (cortical shell, cancellous core), discs, posterior
    # arch around the spinal canal, spinous process.
    vb_a, vb_b = _uniform(rng, 12, 14), _uniform(rng, 9.5, 11)
    vb_y = cav_post - 8.0 - vb_b
    canal_r = 5.0
    canal_y = vb_y + vb_b + canal_r + 0.5
    level_h, disc_h = _uniform(rng, 30, 34), _uniform(rng, 7, 9)
    phase = _uniform(rng, 0, level_h + disc_h)
    period = level_h + disc_h

    def in_disc(Z):
        return np.mod(Z + f32(phase), f32(period)) < f32(disc_h)

    def vb_field(X, Y):
        return (X / f32(vb_a)) ** 2 + ((Y - f32(vb_y)) / f32(vb_b)) ** 2

    def spine_tissue(X, Y, Z, mask):
        rho = vb_field(X, Y)
        t = np.where(rho <= f32(0.75), np.uint8(_T_CANCELLOUS), np.uint8(_T_CORTICAL))
        return np.where(in_disc(Z) & (rho <= 1.0), np.uint8(_T_DISC), t)

    b.paint(((-vb_a, vb_a), (vb_y - vb_b, vb_y + vb_b), (-big, big)),
            lambda X, Y, Z: vb_field(X, Y) <= 1, _T_CORTICAL, tissue_fn=spine_tissue)

    def arch(X, Y, Z):
        r2 = X ** 2 + (Y - f32(canal_y)) ** 2
        ring = (r2 <= f32((canal_r + 3.5) ** 2)) & (Y >= f32(vb_y + vb_b - 2.0))
        spinous = (np.abs(X) <= f32(2.5)) & (Y >= f32(canal_y)) & (Y <= f32(canal_y + canal_r + 8.0))
        return (ring | spinous) & ~in_disc(Z)

    def arch_tissue(X, Y, Z, mask):
        r2 = X ** 2 + (Y - f32(canal_y)) ** 2
        return np.where(r2 <= f32(canal_r ** 2), np.uint8(_T_CANAL), np.uint8(_T_CORTICAL))

    b.paint(((-canal_r - 4, canal_r + 4), (vb_y, canal_y + canal_r + 9), (-big, big)), arch,
            _T_CORTICAL, tissue_fn=arch_tissue)
    # The canal is continuous through the disc levels.
    b.paint(((-canal_r, canal_r), (canal_y - canal_r, canal_y + canal_r), (-big, big)),
            lambda X, Y, Z: X ** 2 + (Y - f32(canal_y)) ** 2 <= f32(canal_r ** 2), _T_CANAL)

    # ---- aorta: anterior-left of the spine, drifting a little with z.

    ar = _uniform(rng, 6.0, 7.5)
    ax0, ay0 = _uniform(rng, 5, 10), vb_y - vb_b - ar - _uniform(rng, 0.5, 2.5)
    drift = _uniform(rng, -0.02, 0.02)

    def aorta(X, Y, Z):
        return (X - f32(ax0) - f32(drift) * Z) ** 2 + (Y - f32(ay0)) ** 2 <= f32(ar * ar)

    b.paint(((ax0 - 20, ax0 + 20), (ay0 - ar, ay0 + ar), (-big, big)), aorta, _T_AORTA)

    # Structures added later draw from their own stream, so that the shapes above stay
    # the same for a given seed.
    rng2 = np.random.default_rng([int(b.seed), 2])

    # ---- inferior vena cava: right of the aorta, flattened, through the liver.
    ivc_rx, ivc_ry = _uniform(rng2, 8, 10), _uniform(rng2, 6, 7.5)
    ivc_x, ivc_y = -(vb_a + _uniform(rng2, 5, 8)), vb_y - vb_b - ivc_ry + _uniform(rng2, 0, 3)

    def ivc(X, Y, Z):
        return ((X - f32(ivc_x)) / f32(ivc_rx)) ** 2 + ((Y - f32(ivc_y)) / f32(ivc_ry)) ** 2 <= 1

    b.paint(((ivc_x - ivc_rx, ivc_x + ivc_rx), (ivc_y - ivc_ry, ivc_y + ivc_ry), (-big, big)), ivc, _T_IVC,
            allowed=_CAVITY + (_T_LIVER, _T_MUSCLE))

    # ---- intrahepatic vessels: portal vein branches from the hilum, hepatic veins
    # converging on the IVC at the top of the liver. Painted only inside the liver.
    cx, cy, cz = right.center
    lax, lay, laz = right.axes
    porta = (cx + 0.5 * lax, cy + 0.1 * lay, cz - 0.35 * laz)
    hub = (cx + 0.1 * lax, cy, cz - 0.05 * laz)
    tubes = [(porta, hub, 4.5, 3.5), (porta, left.center, 3.5, 1.5)]
    for _ in range(6):
        u = rng2.normal(size=3)
        u /= np.linalg.norm(u)
        end = tuple(c + 0.75 * a * ui for c, a, ui in zip(right.center, right.axes, u))
        tubes.append((hub, end, 3.0, 1.2))
        mid = tuple(0.5 * (h + e) for h, e in zip(hub, end))
        v = rng2.normal(size=3)
        v /= np.linalg.norm(v)
        tubes.append((mid, tuple(m + 0.35 * a * vi for m, a, vi in zip(mid, right.axes, v)), 2.0, 1.0))
    top = (ivc_x, ivc_y, cz + 0.75 * laz)
    for end in ((cx - 0.6 * lax, cy - 0.1 * lay, cz + 0.1 * laz),
                (cx + 0.25 * lax, cy - 0.5 * lay, cz + 0.25 * laz), left.center):
        tubes.append((top, end, 4.0, 1.5))
    for a, e, r0, r1 in tubes:
        extent, inside = _capsule(a, e, r0, r1)
        b.paint(extent, inside, _T_HEPATIC_VESSEL, allowed=(_T_LIVER,))

    # ---- lung bases above the diaphragm domes (right dome higher, over the liver);
    # lowest at the periphery and posteriorly (costophrenic recesses).
    domes = ((-1.0, _uniform(rng, 92, 100)), (1.0, _uniform(rng, 84, 94)))

    def lung(X, Y, Z):
        out = None
        for side, apex in domes:
            xd = X - f32(side * 42.0)
            zd = f32(apex) - f32(30.0) * (xd / f32(45.0)) ** 2 - f32(25.0) * ((Y - f32(-5.0)) / f32(55.0)) ** 2 \
                - f32(12.0) * np.clip((Y - f32(10.0)) / f32(40.0), 0, None)
            m = (Z > zd) & (side * X > f32(14.0))
            out = m if out is None else out | m
        return out

    b.paint(((-big, big), (-big, big), (40.0, big)), lung, _T_LUNG,
            allowed=_CAVITY + (_T_LIVER, _T_SPLEEN, _T_HEPATIC_VESSEL))

    # ---- lower ribs: flat bony bands inside the body wall, from beside the spine
    # around the flank, descending anteriorly; the lowest ribs are the shortest.
    rib_a = A - skin - fat_lat - 0.5 * mus_lat
    rib_ba, rib_bp = Ba - skin - fat_ant - 0.5 * mus_ant, Bp - skin - fat_post - 0.5 * mus_post
    rib_gap = _uniform(rng2, 26, 32)
    rib_z0 = _uniform(rng2, -40, -25)
    rib_slope = _uniform(rng2, 0.8, 1.1)  # mm of descent per degree around the body
    rib_h, rib_t = _uniform(rng2, 7, 9), _uniform(rng2, 4.5, 6)
    rib_levels = [(rib_z0 + k * rib_gap, min(150.0, 75.0 + 20.0 * k)) for k in range(10)]

    def ribs(X, Y, Z):
        # The wall geometry is the same on every slice: work on the thin 2D shell of
        # pixels near the rib line, then test z per rib level on those pixels only.
        yy = Y[0] - f32(cy)
        xx = X[0]
        e = np.sqrt((xx / f32(rib_a)) ** 2 + (yy / np.where(yy < 0, f32(rib_ba), f32(rib_bp))) ** 2)
        radial = np.sqrt(xx * xx + yy * yy) * (f32(1.0) - f32(1.0) / np.maximum(e, f32(1e-3)))
        near = np.abs(radial) <= f32(0.5 * rib_t)
        out = np.zeros((Z.shape[0],) + near.shape, dtype=bool)
        if not near.any():
            return out
        iy, ix = np.nonzero(near)
        rad = radial[iy, ix]
        phi = np.degrees(np.arctan2(np.abs(xx[0, ix]), yy[iy, 0]))  # 0 posterior, 180 anterior
        zz = Z[:, 0, 0][:, None]
        hit = np.zeros((Z.shape[0], iy.size), dtype=bool)
        base = (rad / f32(0.5 * rib_t)) ** 2
        for z0, phi_max in rib_levels:
            on = (phi >= f32(30.0)) & (phi <= f32(phi_max))
            zc = f32(z0) - f32(rib_slope) * (phi - f32(30.0))
            hit |= on & (base + ((zz - zc) / f32(0.5 * rib_h)) ** 2 <= 1)
        out[:, iy, ix] = hit
        return out

    b.paint(((-big, big), (-big, big), (rib_z0 - 80.0, big)), ribs, _T_RIB,
            allowed=(_T_MUSCLE, _T_SUBQ, _T_VFAT, _T_LUNG, _T_BOWEL))

    # ---- per-case attenuation (portal-venous phase).
    return {
        _T_AIR: -1000.0, _T_SKIN: _uniform(rng, 10, 40), _T_SUBQ: _uniform(rng, -110, -90),
        _T_MUSCLE: _uniform(rng, 45, 58), _T_VFAT: _uniform(rng, -105, -85),
        _T_BOWEL: _uniform(rng, 20, 40), _T_GAS: -980.0, _T_LIVER: _uniform(rng, 92, 108),
        _T_SPLEEN: _uniform(rng, 102, 118), _T_KR_CORTEX: _uniform(rng, 160, 185),
        _T_KR_MEDULLA: _uniform(rng, 125, 145), _T_AORTA: _uniform(rng, 185, 215),
        _T_CORTICAL: _uniform(rng, 750, 950), _T_CANCELLOUS: _uniform(rng, 380, 440),
        _T_DISC: _uniform(rng, 80, 100), _T_CANAL: _uniform(rng, 10, 25), _T_LUNG: _uniform(rng, -870, -830),
        _T_HEPATIC_VESSEL: _uniform(rng2, 150, 175), _T_IVC: _uniform(rng2, 125, 150),
        _T_RIB: _uniform(rng2, 550, 750),
    }


def _place_lesions(b: _Builder, grid: _Grid, n: int, scale: float) -> list:
    """Place ``n`` non-touching ellipsoidal lesions fully inside the liver (physical mm)."""
    rng = b.rng
    if n == 0:
        return []
    liver = b.tissue == _T_LIVER
    if not liver.any():
        raise InvalidInputError("the phantom grid is too small to hold the liver; use a larger shape")
    # Bounding box of the liver (physical mm), from per-axis projections.
    proj = [np.nonzero(np.any(liver, axis=ax))[0] for ax in ((1, 2), (0, 2), (0, 1))]
    del liver
    lo = [grid.axes[a][p[0]] for a, p in enumerate(proj)]
    hi = [grid.axes[a][p[-1]] for a, p in enumerate(proj)]
    # Sizes by rank: large, medium, small (semi-axis in mm), never below what the grid
    # resolves (three voxels along the coarsest axis).
    base = [(14.0, 20.0), (9.0, 12.5), (6.5, 8.5), (6.5, 9.0), (6.5, 9.0), (6.5, 9.0), (6.5, 9.0), (6.5, 9.0)]
    # Per-axis floor: at least three voxels across along every axis.
    floor_xyz = tuple(1.5 * sp for sp in reversed(grid.spacing))
    spacing_xyz = tuple(reversed(grid.spacing))
    lesions: list = []
    for i in range(n):
        r = _uniform(rng, *base[i]) * scale
        semi = tuple(max(r * _uniform(rng, 0.8, 1.2), f) for f in floor_xyz)
        hu = _uniform(rng, 20.0, 50.0)
        placed = False
        for attempt in range(400):
            if attempt and attempt % 50 == 0:  # too big for this liver: shrink
                semi = tuple(max(s * 0.8, f) for s, f in zip(semi, floor_xyz))
            # Prefer a 3 mm rim of liver around the lesion; on small grids settle for a
            # rim of one voxel (checked exactly below).
            margin = tuple(max(3.0, sp) if attempt < 200 else sp for sp in spacing_xyz)
            reach = [semi[2 - a] + margin[2 - a] for a in range(3)]  # z, y, x
            if any(hi[a] - lo[a] <= 2 * reach[a] for a in range(3)):
                continue
            center_zyx = [_uniform(rng, lo[a] + reach[a], hi[a] - reach[a]) for a in range(3)]
            center_xyz = tuple(reversed(center_zyx))
            sl, inside = _ellipsoid_in_box(grid, center_xyz, tuple(s + m for s, m in zip(semi, margin)))
            if sl is None or not np.all(np.isin(b.tissue[sl][inside], _LIVER_TISSUES)):
                continue
            if not _fits_with_rim(b.tissue, grid, center_xyz, semi, spacing_xyz):
                continue
            sl, inside = _ellipsoid_in_box(grid, center_xyz, semi)
            b.tissue[sl][inside] = _T_LESION0 + i
            center_vox = tuple((c - o) / s for c, o, s in zip(center_zyx, grid.origin, grid.spacing))
            lesions.append(LesionSpec(i, tuple(float(c) for c in center_xyz),
                                      tuple(float(c) for c in center_vox),
                                      tuple(float(s) for s in semi), float(hu)))
            placed = True
            break
        if not placed:
            raise InvalidInputError(
                f"could not fit liver lesion {i + 1} of {n} inside the liver of this phantom "
                f"(grid {grid.shape}, spacing {grid.spacing} mm z,y,x); ask for fewer lesions "
                "or a larger grid")
    return lesions


def _fits_with_rim(tissue: np.ndarray, grid: _Grid, center_xyz, semi_xyz, spacing_xyz) -> bool:
    """True when the lesion and every voxel touching it (26-neighbours) is liver."""
    from scipy.ndimage import binary_dilation

    pad = tuple(s + 2.0 * sp for s, sp in zip(semi_xyz, spacing_xyz))
    cx, cy, cz = center_xyz
    sl, coords = grid.box((cz - pad[2], cy - pad[1], cx - pad[0]), (cz + pad[2], cy + pad[1], cx + pad[0]))
    if sl is None:
        return False
    z, y, x = (c.astype(np.float64) for c in coords)
    inside = (((x - cx) / semi_xyz[0]) ** 2 + ((y - cy) / semi_xyz[1]) ** 2
              + ((z - cz) / semi_xyz[2]) ** 2) <= 1.0
    # A lesion touching the box edge touches the grid edge: never inside the liver then.
    if inside[[0, -1]].any() or inside[:, [0, -1]].any() or inside[:, :, [0, -1]].any():
        return False
    grown = binary_dilation(inside, structure=np.ones((3, 3, 3), dtype=bool))
    return bool(np.all(np.isin(tissue[sl][grown], _LIVER_TISSUES)))


def _kernel_gain(sigma: float) -> float:
    """Factor by which a 1D Gaussian filter scales the std of white noise."""
    from scipy.ndimage import gaussian_filter1d

    if sigma <= 0:
        return 1.0
    delta = np.zeros(int(8 * sigma) * 2 + 3)
    delta[delta.size // 2] = 1.0
    k = gaussian_filter1d(delta, sigma, truncate=3.0)
    return float(np.sqrt(np.sum(k * k)))


def _render_hu(tissue: np.ndarray, lut: np.ndarray, spacing_zyx: tuple, seed: int,
               noise_hu: float, blur_mm: float, out: np.ndarray, slab: int = 16) -> None:
    """HU = blur(lut[tissue] + correlated noise), written slab by slab into ``out`` (int16).

    Noise is drawn per slice from ``default_rng([seed, z])`` so a slab's halo slices get
    exactly the noise of their own slab and the result does not depend on the slab size.
    """
    from scipy.ndimage import gaussian_filter

    nz = tissue.shape[0]
    # Partial-volume blur: half the slice thickness in z, ``blur_mm`` in plane.
    sigma = tuple(0.0 if blur_mm <= 0 else (0.5 * blur_mm / s if a == 0 else blur_mm / s)
                  for a, s in enumerate(spacing_zyx))
    sigma = (min(sigma[0], 0.6),) + sigma[1:]
    gain = float(np.prod([_kernel_gain(s) for s in sigma]))
    noise_scale = np.float32(noise_hu / gain)
    halo = int(math.ceil(3.0 * sigma[0])) if sigma[0] > 0 else 0
    for z0 in range(0, nz, slab):
        z1 = min(nz, z0 + slab)
        a0, a1 = max(0, z0 - halo), min(nz, z1 + halo)
        work = lut[tissue[a0:a1]]  # float32
        if noise_hu > 0:
            for z in range(a0, a1):
                g = np.random.default_rng([seed, 7919, z])
                work[z - a0] += g.standard_normal(work.shape[1:], dtype=np.float32) * noise_scale
        if any(s > 0 for s in sigma):
            work = gaussian_filter(work, sigma, truncate=3.0, mode="nearest")
        block = work[z0 - a0:z0 - a0 + (z1 - z0)]
        np.rint(block, out=block)
        np.clip(block, -1024, 3071, out=block)
        out[z0:z1] = block


def make_phantom(seed: int = SAMPLE_SEED, shape: Sequence[int] = (100, 256, 256),
                 spacing_zyx: Sequence[float] = (2.5, 0.8, 0.8), n_lesions: int = 3, *,
                 noise_hu: float = 12.0, blur_mm: float = 0.6) -> Phantom:
    """Make a synthetic contrast-enhanced abdominal CT with its ground-truth labels.

    Parameters
    ----------
    seed : int
        Everything random (organ shapes and sizes, fat thickness, lesion positions,
        sizes and attenuation, noise) derives from it; the same arguments give the
        same bytes.
    shape : (int, int, int)
        Grid size (z, y, x). The anatomy scales to the field of view, so any grid of
        at least about 32 x 64 x 64 holds every structure.
    spacing_zyx : (float, float, float)
        Voxel size in mm (z, y, x).
    n_lesions : int
        Number of hypodense liver lesions, 0 to 8 (largest first; the default three
        are large, medium and small).
    noise_hu : float
        Standard deviation of the (slightly correlated) Gaussian noise, HU.
    blur_mm : float
        In-plane Gaussian blur sigma in mm (scanner resolution); 0 disables blurring.

    Returns
    -------
    Phantom
        ``.ct`` (int16 HU :class:`Volume`), ``.labels`` (uint8), ``.names``,
        ``.lesions`` (:class:`LesionSpec`), ``.label_ids``, ``.lesion_mask(i)``.

    Raises
    ------
    InvalidInputError
        For a bad shape, spacing, seed or lesion count, or a grid too small for the lesions.
    InsufficientMemoryError
        When the grid needs more memory than the machine has (checked before any work).
    """
    shape = tuple(int(n) for n in shape)
    spacing_zyx = tuple(float(s) for s in spacing_zyx)
    if len(shape) != 3 or min(shape) < 8:
        raise InvalidInputError(f"phantom shape must be 3 sizes (z, y, x) of at least 8 voxels, got {shape}")
    if len(spacing_zyx) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing_zyx):
        raise InvalidInputError(f"phantom spacing must be 3 positive numbers (z, y, x mm), got {spacing_zyx}")
    if not 0 <= int(n_lesions) <= _MAX_LESIONS:
        raise InvalidInputError(f"n_lesions must be between 0 and {_MAX_LESIONS}, got {n_lesions}")
    if noise_hu < 0 or blur_mm < 0:
        raise InvalidInputError("noise_hu and blur_mm must not be negative")
    if int(seed) != seed or seed < 0:
        raise InvalidInputError(f"the phantom seed must be a whole number >= 0, got {seed!r}")
    seed = int(seed)
    # Refuse before allocating: tissue + labels + int16 image + slab buffers, with margin.
    from .inference.memory import check_memory

    n_voxels = int(np.prod(shape, dtype=np.int64))
    check_memory(6.0 * n_voxels, f"a {shape[2]} x {shape[1]} x {shape[0]} phantom")

    # Centred grid, identity direction (LPS-like).
    origin_zyx = tuple(-(n - 1) * s / 2.0 for n, s in zip(shape, spacing_zyx))
    grid = _Grid(shape, spacing_zyx, origin_zyx)
    extent = [n * s for n, s in zip(shape, spacing_zyx)]
    scale_xyz = (extent[2] / _REF_FOV_XY, extent[1] / _REF_FOV_XY, extent[0] / _REF_EXTENT_Z)

    rng = np.random.default_rng(seed)
    builder = _Builder(grid, scale_xyz, rng)
    builder.seed = seed
    hu = _build_anatomy(builder)
    hu[_T_KL_CORTEX] = hu[_T_KR_CORTEX] + _uniform(rng, -5, 5)
    hu[_T_KL_MEDULLA] = hu[_T_KR_MEDULLA] + _uniform(rng, -5, 5)
    lesions = _place_lesions(builder, grid, int(n_lesions), min(1.0, min(scale_xyz)) ** 0.5)
    for lesion in lesions:
        hu[_T_LESION0 + lesion.index] = lesion.hu

    tissue = builder.tissue
    lut_hu = np.full(256, -1000.0, dtype=np.float32)
    lut_label = np.zeros(256, dtype=np.uint8)
    for t, value in hu.items():
        lut_hu[t] = value
    for t, label in _TISSUE_LABEL.items():
        lut_label[t] = label
    lut_label[_T_LESION0:_T_LESION0 + _MAX_LESIONS] = LABEL_IDS["liver_lesion"]

    ct = np.empty(shape, dtype=np.int16)
    _render_hu(tissue, lut_hu, spacing_zyx, seed, float(noise_hu), float(blur_mm), ct)
    labels = lut_label[tissue]
    del tissue, builder

    volume = Volume(
        array=ct,
        spacing=tuple(reversed(spacing_zyx)),
        origin=tuple(reversed(origin_zyx)),
        modality="CT",
        metadata={
            "description": "napari-medseg synthetic abdominal CT phantom",
            "phantom_seed": seed,
            "n_lesions": len(lesions),
        },
    )
    return Phantom(ct=volume, labels=labels, names=dict(LABEL_NAMES), lesions=lesions, seed=seed,
                   hu_by_tissue=hu)


# ------------------------------------------------------------------------------ MR
#: Mean signal of each structure (arbitrary units in a 12-bit scanner range) for a
#: T1-weighted-like and a T2-weighted-like contrast of the same anatomy, after the usual
#: appearance on abdominal MR: fat bright on both; liver brighter than spleen on T1 and
#: darker on T2; fluid (spinal canal, discs, bowel content) dark on T1 and bright on T2;
#: flowing blood dark (flow void); lung and air almost without signal; the liver lesions
#: hypointense on T1 and hyperintense on T2 (as cysts and haemangiomas are).
MR_SIGNAL: dict[str, dict[str, float]] = {
    "T1": {
        "background": 15.0, "liver": 620.0, "liver_lesion": 330.0, "spleen": 470.0,
        "kidney_right": 520.0, "kidney_left": 520.0, "aorta": 180.0, "vertebrae": 560.0,
        "lung": 40.0, "skin": 420.0, "subcutaneous_fat": 900.0, "muscle": 360.0,
        "visceral_fat": 880.0, "bowel": 270.0, "intervertebral_disc": 300.0,
        "spinal_canal": 140.0, "inferior_vena_cava": 230.0, "ribs": 250.0,
    },
    "T2": {
        "background": 15.0, "liver": 260.0, "liver_lesion": 820.0, "spleen": 540.0,
        "kidney_right": 610.0, "kidney_left": 610.0, "aorta": 90.0, "vertebrae": 380.0,
        "lung": 35.0, "skin": 350.0, "subcutaneous_fat": 720.0, "muscle": 190.0,
        "visceral_fat": 700.0, "bowel": 660.0, "intervertebral_disc": 880.0,
        "spinal_canal": 1150.0, "inferior_vena_cava": 120.0, "ribs": 160.0,
    },
}


def mr_contrast(phantom: Phantom, weighting: str = "T1", *, seed: Optional[int] = None,
                noise: float = 18.0, bias: float = 0.25, blur_mm: float = 0.6) -> Volume:
    """An MR-like contrast of a phantom's anatomy: a Volume on its grid, modality ``"MR"``.

    Each structure gets its :data:`MR_SIGNAL` value, then a partial-volume blur, a smooth
    multiplicative bias field (receive-coil shading, +-``bias``) and Rician noise (the
    magnitude of complex Gaussian noise of standard deviation ``noise``, as a magnitude
    image has). The label map of ``phantom`` stays the ground truth. It is an intensity
    model of the anatomy, not a simulation of MR physics.

    Parameters
    ----------
    phantom : Phantom
        From :func:`make_phantom`.
    weighting : {"T1", "T2"}
        Which contrast.
    seed : int, optional
        Seeds the bias field and the noise (default: the phantom's seed); T1 and T2 of one
        phantom share the bias field, as two sequences of one exam in one coil do.
    noise, bias, blur_mm : float
        Noise level (signal units), bias amplitude (fraction) and blur (mm).

    Returns
    -------
    Volume
        uint16 intensities on the phantom's grid.
    """
    from scipy import ndimage as ndi

    key = str(weighting).strip().upper()
    if key not in MR_SIGNAL:
        raise InvalidInputError(f"unknown MR weighting {weighting!r}; choose T1 or T2")
    if not (noise >= 0 and 0 <= bias < 1 and blur_mm >= 0):
        raise InvalidInputError("noise and blur must be >= 0 and bias in [0, 1)")
    table = MR_SIGNAL[key]
    lut = np.full(256, table["background"], dtype=np.float32)
    for i, name in phantom.names.items():
        lut[i] = table.get(name, 400.0)
    img = lut[phantom.labels]
    spacing = np.asarray(phantom.ct.spacing_zyx, float)
    if blur_mm > 0:
        img = ndi.gaussian_filter(img, [blur_mm / s for s in spacing])
    seed = phantom.seed if seed is None else int(seed)
    field_rng = np.random.default_rng([seed, 1])  # shared by T1 and T2
    coarse = field_rng.standard_normal((4, 4, 4)).astype(np.float32)
    field_ = ndi.zoom(coarse, [n / 4.0 for n in img.shape], order=3, grid_mode=True, mode="nearest")
    field_ = field_[: img.shape[0], : img.shape[1], : img.shape[2]]
    img *= 1.0 + bias * field_ / max(float(np.abs(field_).max()), 1e-6)
    noise_rng = np.random.default_rng([seed, 2, 1 if key == "T1" else 2])
    re = img + noise_rng.standard_normal(img.shape, dtype=np.float32) * noise
    im = noise_rng.standard_normal(img.shape, dtype=np.float32) * noise
    mag = np.sqrt(re * re + im * im)
    return phantom.ct.with_array(np.clip(np.rint(mag), 0, 65535).astype(np.uint16), modality="MR",
                                 metadata={"mr_weighting": key})
