"""Per-lesion measurements of a liver/lesion label map (RECIST-style diameters, volumes).

Definitions (also in ``docs/liver.md``)
---------------------------------------
Lesion
    A 3D connected component of the lesion label, **26-connectivity** (voxels that share a
    face, an edge or a corner belong to the same lesion): two lesions touching only at a
    corner are counted as one, which is what a reader scrolling slices would also see.
Volume
    Number of voxels times the voxel volume (mL = cm^3).
Axial plane
    The array's slice axis (index ``z``). For an axis-aligned scan this is the patient's axial
    plane; for an oblique acquisition it is the acquired slice plane (the plane the
    radiologist reads), not the true axial plane.
Longest axial diameter (long axis)
    On every slice the lesion occupies, the largest distance between two voxel centres of the
    lesion, measured in millimetres (spacing-aware; the direction matrix is orthonormal, so
    in-plane distances are exact in ``(x * sx, y * sy)``), **plus the voxel size along that
    direction** (``|(sx ux, sy uy)|``, half at each end): voxel centres lie up to one voxel
    inside the true border at each end, so without this the diameter is biased low by about
    one voxel. Against analytic ellipsoids the result is within one voxel spacing (tested). The reported long axis is the largest over slices; its slice is ``axial_slice``.
Short axis
    On that slice, the longest chord perpendicular to the long axis: for every line
    perpendicular to the long axis, the extent of the voxel centres of the squares it crosses
    plus the voxel size along that line; the largest.
Longest 3D diameter
    The largest distance between two voxel centres of the lesion in 3D, plus the voxel size
    along that direction.
HU statistics
    Mean and (population) standard deviation of the image over the lesion's voxels.
Centroid
    Mean voxel index, mapped to scanner (patient) coordinates with
    :meth:`~napari_medseg.io.volume.Volume.index_to_physical` (x, y, z mm; LPS for DICOM).
Liver volume and tumour burden
    The liver volume counts the whole organ (liver label **and** lesion voxels inside it, i.e.
    labels ``liver_id`` and ``lesion_id``); the burden is total lesion volume / liver volume.

Endpoints of the axes are given both as fractional voxel indices ``(z, y, x)`` and physical
``(x, y, z)`` mm so that viewers can draw them.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import InvalidInputError
from ..io.volume import Volume

__all__ = ["Lesion", "LesionReport", "measure_lesions", "liver_lesion_ids", "axial_axes", "longest_diameter"]

#: The CSV/table columns, in order (a subset of each row's keys, flattened).
TABLE_COLUMNS = (
    "id",
    "volume_ml",
    "long_axis_mm",
    "short_axis_mm",
    "diameter_3d_mm",
    "mean_hu",
    "std_hu",
    "centroid_x_mm",
    "centroid_y_mm",
    "centroid_z_mm",
    "axial_slice",
    "slice_first",
    "slice_last",
    "n_voxels",
)


@dataclass
class Lesion:
    """Measurements of one lesion (one 26-connected component of the lesion label).

    All lengths in mm, volumes in mL, coordinates: ``*_vox`` are fractional voxel indices
    (z, y, x) on the measured grid; ``*_xyz`` are scanner coordinates (x, y, z) mm.
    """

    id: int
    n_voxels: int
    volume_ml: float
    long_axis_mm: float
    short_axis_mm: float
    axial_slice: int
    long_axis_vox: list
    long_axis_xyz: list
    short_axis_vox: list
    short_axis_xyz: list
    diameter_3d_mm: float
    diameter_3d_vox: list
    diameter_3d_xyz: list
    mean_hu: Optional[float]
    std_hu: Optional[float]
    centroid_vox: list
    centroid_xyz: list
    slice_range: tuple

    @property
    def view_point_vox(self) -> tuple:
        """Where to look at the lesion: its centroid (y, x) on the slice of its long axis (z).

        Fractional voxel indices (z, y, x); the long and short axes lie on that slice.
        """
        return (float(self.axial_slice), float(self.centroid_vox[1]), float(self.centroid_vox[2]))

    def to_row(self) -> dict:
        """A flat dict with the :data:`TABLE_COLUMNS` (for tables and CSV)."""
        cx, cy, cz = self.centroid_xyz
        return {
            "id": self.id,
            "volume_ml": round(self.volume_ml, 4),
            "long_axis_mm": round(self.long_axis_mm, 2),
            "short_axis_mm": round(self.short_axis_mm, 2),
            "diameter_3d_mm": round(self.diameter_3d_mm, 2),
            "mean_hu": None if self.mean_hu is None else round(self.mean_hu, 1),
            "std_hu": None if self.std_hu is None else round(self.std_hu, 1),
            "centroid_x_mm": round(cx, 2),
            "centroid_y_mm": round(cy, 2),
            "centroid_z_mm": round(cz, 2),
            "axial_slice": self.axial_slice,
            "slice_first": self.slice_range[0],
            "slice_last": self.slice_range[1],
            "n_voxels": self.n_voxels,
        }


@dataclass
class LesionReport:
    """All lesions of a label map with liver volume and tumour burden.

    Attributes
    ----------
    lesions : list of Lesion
        Sorted by volume, largest first; ``id`` is 1-based in that order.
    liver_volume_ml : float
        Whole-liver volume (liver + lesion labels).
    lesion_volume_ml : float
        Sum of the lesion volumes.
    tumour_burden_percent : float or None
        ``100 * lesion_volume_ml / liver_volume_ml`` (None when there is no liver).
    spacing_xyz : tuple
        Voxel size the measurements were made at.
    connectivity : int
        26 (see the module docstring).
    """

    lesions: list
    liver_volume_ml: float
    lesion_volume_ml: float
    tumour_burden_percent: Optional[float]
    spacing_xyz: tuple
    connectivity: int = 26
    metadata: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.lesions)

    def to_rows(self) -> list:
        """One flat dict per lesion (keys :data:`TABLE_COLUMNS`)."""
        return [lesion.to_row() for lesion in self.lesions]

    def to_dict(self) -> dict:
        """Everything, JSON-ready (includes axis endpoints)."""
        return {
            "liver_volume_ml": self.liver_volume_ml,
            "lesion_volume_ml": self.lesion_volume_ml,
            "tumour_burden_percent": self.tumour_burden_percent,
            "n_lesions": len(self.lesions),
            "spacing_xyz": list(self.spacing_xyz),
            "connectivity": self.connectivity,
            "axial_plane": "array slice axis (z index)",
            "metadata": self.metadata,
            "lesions": [_jsonable(asdict(lesion)) for lesion in self.lesions],
        }

    def to_csv(self, path) -> Path:
        """Write the table (one row per lesion) atomically; returns the path."""
        path = Path(path)
        with _atomic(path) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(TABLE_COLUMNS))
                writer.writeheader()
                for row in self.to_rows():
                    writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        return path

    def to_json(self, path) -> Path:
        """Write :meth:`to_dict` as JSON atomically; returns the path."""
        path = Path(path)
        with _atomic(path) as tmp:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(self.to_dict(), fh, indent=2)
                fh.write("\n")
        return path

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [
            f"liver volume {self.liver_volume_ml:.1f} mL, {len(self.lesions)} lesion(s), "
            f"lesion volume {self.lesion_volume_ml:.2f} mL"
            + (
                f", tumour burden {self.tumour_burden_percent:.2f} %"
                if self.tumour_burden_percent is not None
                else ""
            )
        ]
        for lesion in self.lesions:
            lines.append(
                f"  lesion {lesion.id}: {lesion.volume_ml:.2f} mL, long axis "
                f"{lesion.long_axis_mm:.1f} mm x short {lesion.short_axis_mm:.1f} mm "
                f"(slice {lesion.axial_slice}), 3D {lesion.diameter_3d_mm:.1f} mm"
            )
        return "\n".join(lines)


# ---------------------------------------------------------------------------- helpers
def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


def _atomic(path: Path):
    """Temp file in the same folder, renamed over ``path`` on success (the shared io helper)."""
    from ..io.atomic import atomic_write

    return atomic_write(path)


def _farthest_pair(points: np.ndarray) -> tuple:
    """Indices (i, j) and distance of the two farthest points (via the convex hull)."""
    n = len(points)
    if n == 1:
        return 0, 0, 0.0
    candidates = np.arange(n)
    if n > 64:
        from scipy.spatial import ConvexHull, QhullError

        try:
            candidates = ConvexHull(points).vertices
        except (QhullError, ValueError):  # degenerate (flat/collinear): keep all points
            candidates = np.arange(n)
            if n > 4000:  # a flat set: its extreme points are on the 2D/1D bounding extremes
                keep = set()
                for axis in range(points.shape[1]):
                    keep.update((int(np.argmin(points[:, axis])), int(np.argmax(points[:, axis]))))
                centred = points - points.mean(axis=0)
                _, _, vt = np.linalg.svd(centred, full_matrices=False)
                proj = centred @ vt[0]
                keep.update((int(np.argmin(proj)), int(np.argmax(proj))))
                candidates = np.array(sorted(keep))
    sub = points[candidates]
    best = (0, 0, -1.0)
    # chunked pairwise distances over hull vertices (hundreds at most in practice)
    for start in range(0, len(sub), 512):
        block = sub[start:start + 512]
        d2 = ((block[:, None, :] - sub[None, :, :]) ** 2).sum(-1)
        k = int(np.argmax(d2))
        i, j = divmod(k, len(sub))
        if d2[i, j] > best[2]:
            best = (candidates[start + i], candidates[j], float(d2[i, j]))
    return int(best[0]), int(best[1]), math.sqrt(best[2])


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Mask voxels with at least one face-neighbour outside (the extreme points lie among them)."""
    from scipy import ndimage

    padded = np.pad(mask, 1)
    eroded = ndimage.binary_erosion(padded)[tuple(slice(1, -1) for _ in mask.shape)]
    return mask & ~eroded


def longest_diameter(mask: np.ndarray, spacing: Sequence[float]) -> tuple:
    """Longest diameter of a 2D or 3D mask in mm (voxel-centre distance + one voxel width).

    Parameters
    ----------
    mask : ndarray of bool
        The object (2D or 3D).
    spacing : sequence of float
        Voxel size per array axis (same order as ``mask``'s axes), mm.

    Returns
    -------
    length : float
        Diameter in mm.
    p, q : ndarray
        Endpoints in mm-index space (array order, ``index * spacing``), already extended
        by half a voxel width along the diameter.
    """
    spacing = np.asarray(spacing, dtype=float)
    idx = np.argwhere(_boundary(mask))
    if len(idx) == 0:
        raise InvalidInputError("cannot measure an empty mask")
    pts = idx * spacing
    i, j, dist = _farthest_pair(pts)
    p, q = pts[i], pts[j]
    if dist == 0.0:  # a single voxel: its extent along the first in-plane axis
        u = np.zeros_like(spacing)
        u[-1] = 1.0
    else:
        u = (q - p) / dist
    width = float(np.linalg.norm(spacing * u))
    return dist + width, p - u * width / 2, q + u * width / 2


def _short_axis(mask2d: np.ndarray, spacing2d: np.ndarray, p: np.ndarray, q: np.ndarray) -> tuple:
    """Longest chord of ``mask2d`` perpendicular to the segment p-q (mm-index space, (y, x))."""
    pts = np.argwhere(mask2d) * spacing2d
    length = float(np.linalg.norm(q - p))
    u = (q - p) / length if length > 0 else np.array([0.0, 1.0])
    v = np.array([-u[1], u[0]])
    t = pts @ u
    s = pts @ v
    half_u = 0.5 * float(np.sum(spacing2d * np.abs(u)))
    half_v = 0.5 * float(np.linalg.norm(spacing2d * v))
    # A line perpendicular to u at position t0 crosses a voxel square iff |t - t0| <= half_u.
    # Candidate lines: every distinct voxel position along u (the chord set changes only there).
    cands = np.unique(np.round(t, 6))
    if len(cands) > 512:
        cands = np.linspace(t.min(), t.max(), 512)
    best = (-1.0, 0.0, 0.0, 0.0)
    for start in range(0, len(cands), 128):
        c = cands[start:start + 128]
        hit = np.abs(t[None, :] - c[:, None]) <= half_u + 1e-9
        smin = np.where(hit, s[None, :], np.inf).min(axis=1)
        smax = np.where(hit, s[None, :], -np.inf).max(axis=1)
        ext = smax - smin
        k = int(np.argmax(ext))
        if ext[k] > best[0]:
            best = (float(ext[k]), float(c[k]), float(smin[k]), float(smax[k]))
    _, t0, smin, smax = best
    a = t0 * u + (smin - half_v) * v
    b = t0 * u + (smax + half_v) * v
    return float(smax - smin + 2 * half_v), a, b


def axial_axes(mask3d: np.ndarray, spacing_zyx: Sequence[float]) -> dict:
    """RECIST-style long and short axis of a 3D mask on the slice where the long axis is largest.

    Returns a dict with ``slice`` (z index), ``long_mm``, ``short_mm`` and endpoint pairs
    ``long_vox`` / ``short_vox`` as fractional (z, y, x) indices.
    """
    sz, sy, sx = (float(v) for v in spacing_zyx)
    sp2 = np.array([sy, sx])
    best = None
    for z in np.nonzero(mask3d.any(axis=(1, 2)))[0]:
        sl = mask3d[z]
        length, p, q = longest_diameter(sl, sp2)
        if best is None or length > best[0] + 1e-9:
            best = (length, int(z), p, q)
    length, z, p, q = best
    short, a, b = _short_axis(mask3d[z], sp2, p, q)

    def to_vox(point2d):
        return [float(z), float(point2d[0] / sy), float(point2d[1] / sx)]

    return {
        "slice": z,
        "long_mm": float(length),
        "short_mm": float(short),
        "long_vox": [to_vox(p), to_vox(q)],
        "short_vox": [to_vox(a), to_vox(b)],
    }


def liver_lesion_ids(names: Optional[dict], default: tuple = (1, 2)) -> tuple:
    """``(liver_id, lesion_id)`` from class names (``{id: name}``), else ``default``.

    ``liver`` names the liver; the first name containing tumor/tumour/lesion/metasta names
    the lesions (e.g. ``liver_lesion``, ``liver_tumor``). Missing names keep the default id.
    """
    liver, lesion = default
    found_liver = found_lesion = False
    for idx, name in sorted((names or {}).items()):
        key = str(name).lower().strip()
        if int(idx) == 0:
            continue
        if key == "liver" and not found_liver:
            liver, found_liver = int(idx), True
        elif not found_lesion and any(w in key for w in ("tumor", "tumour", "lesion", "metasta")):
            lesion, found_lesion = int(idx), True
    return liver, lesion


# ---------------------------------------------------------------------------- main entry
def measure_lesions(
    image: Optional[Volume],
    labels: Volume,
    liver_id: int = 1,
    lesion_id: int = 2,
    *,
    min_voxels: int = 1,
) -> LesionReport:
    """Measure every lesion of a liver/lesion label map.

    Parameters
    ----------
    image : Volume or None
        The CT/MR the labels belong to (for HU statistics); must share the labels' grid.
        ``None`` skips the intensity statistics.
    labels : Volume
        Integer label map (e.g. 1 liver, 2 lesion).
    liver_id, lesion_id : int
        Label values of the liver and of the lesions.
    min_voxels : int
        Components smaller than this are ignored (default 1: keep everything).

    Returns
    -------
    LesionReport

    Raises
    ------
    InvalidInputError
        Labels not integer, or ids equal.
    GeometryMismatchError
        ``image`` is not on the labels' grid.
    """
    from scipy import ndimage

    arr = np.asarray(labels.array)
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise InvalidInputError(
            f"the label map must hold integers, got dtype {arr.dtype}; convert it to a label map first"
        )
    if liver_id == lesion_id:
        raise InvalidInputError(f"liver_id and lesion_id must differ (both {liver_id})")
    if image is not None:
        labels.check_same_grid(image, what="labels")
        values_all = image.array
    spacing_zyx = np.asarray(labels.spacing_zyx, dtype=float)
    voxel_ml = labels.voxel_volume_ml

    lesion_mask = arr == lesion_id
    liver_voxels = int(np.count_nonzero(arr == liver_id)) + int(np.count_nonzero(lesion_mask))
    structure = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity
    components, n = ndimage.label(lesion_mask, structure=structure)
    lesions = []
    if n:
        slices = ndimage.find_objects(components)
        sizes = np.bincount(components.ravel(), minlength=n + 1)
        order = sorted(range(1, n + 1), key=lambda k: (-int(sizes[k]), k))
        for k in order:
            if sizes[k] < min_voxels:
                continue
            box = slices[k - 1]
            # one voxel of padding so boundary detection sees the outside
            lo = [max(s.start - 1, 0) for s in box]
            hi = [min(s.stop + 1, dim) for s, dim in zip(box, arr.shape)]
            sub = tuple(slice(a, b) for a, b in zip(lo, hi))
            mask = components[sub] == k
            offset = np.asarray(lo, dtype=float)
            idx = np.argwhere(mask)
            centroid = idx.mean(axis=0) + offset

            axes = axial_axes(mask, spacing_zyx)
            d3, p3, q3 = longest_diameter(mask, spacing_zyx)
            p3v = p3 / spacing_zyx + offset
            q3v = q3 / spacing_zyx + offset
            long_vox = [list(np.asarray(v) + offset) for v in axes["long_vox"]]
            short_vox = [list(np.asarray(v) + offset) for v in axes["short_vox"]]

            if image is not None:
                vals = np.asarray(values_all[sub][mask], dtype=np.float64)
                mean_hu, std_hu = float(vals.mean()), float(vals.std())
            else:
                mean_hu = std_hu = None

            def phys(points):
                return [[float(c) for c in labels.index_to_physical(pt)] for pt in points]

            z_hit = np.nonzero(mask.any(axis=(1, 2)))[0]
            lesions.append(
                Lesion(
                    id=len(lesions) + 1,
                    n_voxels=int(sizes[k]),
                    volume_ml=float(sizes[k]) * voxel_ml,
                    long_axis_mm=axes["long_mm"],
                    short_axis_mm=axes["short_mm"],
                    axial_slice=int(axes["slice"] + lo[0]),
                    long_axis_vox=[[float(c) for c in v] for v in long_vox],
                    long_axis_xyz=phys(long_vox),
                    short_axis_vox=[[float(c) for c in v] for v in short_vox],
                    short_axis_xyz=phys(short_vox),
                    diameter_3d_mm=float(d3),
                    diameter_3d_vox=[[float(c) for c in p3v], [float(c) for c in q3v]],
                    diameter_3d_xyz=phys([p3v, q3v]),
                    mean_hu=mean_hu,
                    std_hu=std_hu,
                    centroid_vox=[float(c) for c in centroid],
                    centroid_xyz=[float(c) for c in labels.index_to_physical(centroid)],
                    slice_range=(int(z_hit[0] + lo[0]), int(z_hit[-1] + lo[0])),
                )
            )
    lesion_ml = float(sum(lesion.volume_ml for lesion in lesions))
    liver_ml = liver_voxels * voxel_ml
    burden = 100.0 * lesion_ml / liver_ml if liver_voxels else None
    return LesionReport(
        lesions=lesions,
        liver_volume_ml=float(liver_ml),
        lesion_volume_ml=lesion_ml,
        tumour_burden_percent=burden,
        spacing_xyz=tuple(labels.spacing),
        metadata={"liver_id": int(liver_id), "lesion_id": int(lesion_id)},
    )
