"""The :class:`Volume` type and the single place where geometry conventions meet.

SimpleITK (like ITK, NIfTI-in-LPS, DICOM) describes geometry in x, y, z order:
``spacing`` and ``origin`` are (x, y, z) and ``direction`` is a 3x3 matrix, row-major,
whose column *j* is the physical direction of voxel index axis *j*. NumPy arrays from
SimpleITK are indexed ``[z, y, x]`` and napari works in that order too.

Every conversion between the two orders lives in this module; nothing else in the
project re-derives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import GeometryMismatchError, InvalidInputError

_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def _as_tuple(values: Sequence[float], n: int, what: str) -> tuple:
    out = tuple(float(v) for v in values)
    if len(out) != n:
        raise InvalidInputError(f"{what} needs {n} numbers, got {len(out)}: {values!r}")
    return out


#: napari ``units`` of a layer placed in physical space (z, y, x): millimetres.
PHYSICAL_UNITS = ("mm", "mm", "mm")


@dataclass(frozen=True)
class Volume:
    """A 3D scalar volume with its scanner geometry.

    Parameters
    ----------
    array : numpy.ndarray
        Voxel values, indexed ``[z, y, x]`` (SimpleITK/NumPy order).
    spacing : tuple of float
        Voxel size in mm, **(x, y, z)** as SimpleITK gives it.
    origin : tuple of float
        Physical position (mm) of voxel ``[0, 0, 0]``, (x, y, z), LPS as in ITK/DICOM.
    direction : tuple of float
        The 3x3 direction cosine matrix, 9 numbers row-major, as SimpleITK gives it.
    modality : str, optional
        ``"CT"``, ``"MR"``, ... when known.
    metadata : dict
        Anything else worth keeping (source path, DICOM UIDs, label names, ...).
    """

    array: np.ndarray
    spacing: tuple = (1.0, 1.0, 1.0)
    origin: tuple = (0.0, 0.0, 0.0)
    direction: tuple = _IDENTITY
    modality: Optional[str] = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.ndim != 3:
            raise InvalidInputError(
                f"a Volume is 3D (z, y, x); got an array of shape {arr.shape}"
            )
        object.__setattr__(self, "array", arr)
        spacing = _as_tuple(self.spacing, 3, "spacing")
        if not all(np.isfinite(s) and s > 0 for s in spacing):
            raise InvalidInputError(
                f"voxel spacing must be positive and finite, got {spacing} (x, y, z mm); "
                "fix the file's header"
            )
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", _as_tuple(self.origin, 3, "origin"))
        direction = _as_tuple(np.asarray(self.direction, dtype=float).ravel(), 9, "direction")
        det = float(np.linalg.det(np.reshape(direction, (3, 3))))
        if not np.isfinite(det) or abs(det) < 1e-6:
            raise InvalidInputError(
                f"the direction matrix {direction} is singular (determinant {det:.3g}); "
                "the file's orientation header is broken"
            )
        object.__setattr__(self, "direction", direction)

    # ------------------------------------------------------------------ geometry
    @property
    def shape(self) -> tuple:
        """Array shape (z, y, x)."""
        return tuple(self.array.shape)

    @property
    def spacing_zyx(self) -> tuple:
        """Voxel size in mm in array order (z, y, x)."""
        return tuple(reversed(self.spacing))

    @property
    def origin_zyx(self) -> tuple:
        """Origin in mm in array order (z, y, x)."""
        return tuple(reversed(self.origin))

    @property
    def direction_matrix(self) -> np.ndarray:
        """Direction cosines as a 3x3 array in x, y, z order (SimpleITK's)."""
        return np.reshape(np.asarray(self.direction, dtype=float), (3, 3))

    @property
    def direction_zyx(self) -> np.ndarray:
        """Direction cosines in z, y, x order: ``D_zyx[a, b] = D_xyz[2 - a, 2 - b]``."""
        return self.direction_matrix[::-1, ::-1].copy()

    @property
    def is_axis_aligned(self) -> bool:
        """True when the direction is the identity (no flips, no rotation)."""
        return bool(np.allclose(self.direction_matrix, np.eye(3), atol=1e-6))

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (cm^3)."""
        return float(np.prod(self.spacing)) / 1000.0

    def index_to_physical(self, zyx: Sequence[float]) -> np.ndarray:
        """Map voxel index (z, y, x), possibly fractional, to physical (x, y, z) mm."""
        ijk = np.asarray(zyx, dtype=float)[..., ::-1]  # -> x, y, z index
        return np.asarray(self.origin) + (ijk * np.asarray(self.spacing)) @ self.direction_matrix.T

    def physical_to_index(self, xyz: Sequence[float]) -> np.ndarray:
        """Map physical (x, y, z) mm to fractional voxel index (z, y, x)."""
        rel = np.asarray(xyz, dtype=float) - np.asarray(self.origin)
        ijk = (rel @ np.linalg.inv(self.direction_matrix).T) / np.asarray(self.spacing)
        return ijk[..., ::-1]

    def voxel_of(self, index_zyx: Sequence[float]) -> tuple:
        """The voxel (z, y, x ints) holding a fractional voxel index (e.g. a click).

        Raises
        ------
        InvalidInputError
            When the point lies outside the volume (beyond half a voxel from the edge).
        """
        index = np.asarray(index_zyx, dtype=float)[-3:]
        rounded = np.round(index)
        if np.any(rounded < -0.5) or np.any(rounded > np.asarray(self.shape) - 0.5):
            raise InvalidInputError(
                f"voxel {tuple(round(float(v), 1) for v in index)} lies outside the volume "
                f"(shape {tuple(self.shape)})"
            )
        return tuple(int(min(max(v, 0), n - 1)) for v, n in zip(rounded, self.shape))

    def box_from_corners(self, corner0: Sequence[int], corner1: Sequence[int], depth_mm: float) -> tuple:
        """A box prompt ``(lo, hi)`` (inclusive voxel corners, z, y, x) from two corners.

        An axis along which the corners coincide (a rectangle drawn on one slice) gets
        ``depth_mm`` across: ``round(depth_mm / 2 / spacing)`` voxels (at least 1) each
        side, clipped to the volume.
        """
        a = np.asarray(corner0, dtype=float)
        b = np.asarray(corner1, dtype=float)
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        for axis, spacing in enumerate(self.spacing_zyx):
            if hi[axis] - lo[axis] < 1:
                half = max(1, int(round(float(depth_mm) / 2.0 / spacing)))
                lo[axis] = max(0, lo[axis] - half)
                hi[axis] = min(self.shape[axis] - 1, hi[axis] + half)
        return tuple(int(v) for v in lo), tuple(int(v) for v in hi)

    def affine_zyx(self) -> np.ndarray:
        """4x4 homogeneous map from (z, y, x) index to physical (z, y, x) mm.

        This is the transform napari needs: its world axes are the physical axes in
        z, y, x order, so image and labels from any scanner line up in millimetres.
        """
        a = np.eye(4)
        a[:3, :3] = self.direction_zyx * np.asarray(self.spacing_zyx)[None, :]
        a[:3, 3] = self.origin_zyx
        return a

    def layer_kwargs(self) -> dict:
        """Keyword arguments that place a napari layer in physical space.

        ``scale`` always carries the spacing (z, y, x). An axis-aligned volume gets
        ``translate`` = origin; any other direction (flips, obliques) gets an ``affine``
        holding rotation and origin, applied after the scale, so that world
        coordinates are exact physical (z, y, x) millimetres. ``units`` says so
        (``"mm"`` per axis), so napari's scale bar, status bar and dims slider agree
        across every layer the plugin adds.
        """
        kwargs: dict[str, Any] = {"scale": tuple(self.spacing_zyx), "units": PHYSICAL_UNITS}
        if self.is_axis_aligned:
            kwargs["translate"] = tuple(self.origin_zyx)
        else:
            aff = np.eye(4)
            aff[:3, :3] = self.direction_zyx
            aff[:3, 3] = self.origin_zyx
            kwargs["translate"] = (0.0, 0.0, 0.0)
            kwargs["affine"] = aff
        return kwargs

    def geometry_dict(self) -> dict:
        """Plain-Python geometry (for layer ``metadata``, JSON and round trips)."""
        return {
            "shape_zyx": [int(s) for s in self.shape],
            "spacing_xyz": list(self.spacing),
            "origin_xyz": list(self.origin),
            "direction": list(self.direction),
            "modality": self.modality,
        }

    # ------------------------------------------------------------- constructors
    @classmethod
    def from_geometry_dict(cls, array: np.ndarray, geometry: dict, **kwargs: Any) -> "Volume":
        """Inverse of :meth:`geometry_dict` for a new array on the same grid."""
        return cls(
            array=array,
            spacing=geometry["spacing_xyz"],
            origin=geometry["origin_xyz"],
            direction=geometry["direction"],
            modality=kwargs.pop("modality", geometry.get("modality")),
            **kwargs,
        )

    @classmethod
    def from_sitk(cls, image: Any, modality: Optional[str] = None, metadata: Optional[dict] = None) -> "Volume":
        """Build a Volume from a 3D scalar ``SimpleITK.Image``."""
        import SimpleITK as sitk

        if image.GetDimension() != 3:
            raise InvalidInputError(f"expected a 3D image, got {image.GetDimension()}D")
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise InvalidInputError(
                f"expected one value per voxel, got {image.GetNumberOfComponentsPerPixel()} "
                "components (RGB or vector image); pick one channel first"
            )
        return cls(
            array=sitk.GetArrayFromImage(image),
            spacing=image.GetSpacing(),
            origin=image.GetOrigin(),
            direction=image.GetDirection(),
            modality=modality,
            metadata=dict(metadata or {}),
        )

    def to_sitk(self, array: Optional[np.ndarray] = None) -> Any:
        """A ``SimpleITK.Image`` of ``array`` (default: this volume's) with this geometry."""
        import SimpleITK as sitk

        data = self.array if array is None else np.asarray(array)
        if data.shape != self.shape:
            raise GeometryMismatchError(
                f"array shape {data.shape} does not match the volume grid {self.shape} (z, y, x)"
            )
        if data.dtype == np.bool_:
            data = data.astype(np.uint8)
        image = sitk.GetImageFromArray(np.ascontiguousarray(data))
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def with_array(self, array: np.ndarray, **changes: Any) -> "Volume":
        """A new Volume on the same grid holding ``array`` (shape must match)."""
        array = np.asarray(array)
        if array.shape != self.shape:
            raise GeometryMismatchError(
                f"array shape {array.shape} does not match the volume grid {self.shape} (z, y, x)"
            )
        return replace(self, array=array, **changes)

    def same_grid(self, other: "Volume", atol: float = 1e-4) -> bool:
        """True when ``other`` has the same shape, spacing, origin and direction."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=atol)
            and np.allclose(self.origin, other.origin, atol=atol)
            and np.allclose(self.direction, other.direction, atol=1e-5)
        )

    def check_same_grid(self, other: "Volume", what: str = "labels") -> None:
        """Raise :class:`GeometryMismatchError` naming the difference, if any."""
        problems = []
        if self.shape != other.shape:
            problems.append(f"shape {other.shape} vs {self.shape} (z, y, x)")
        if not np.allclose(self.spacing, other.spacing, atol=1e-4):
            problems.append(f"spacing {other.spacing} vs {self.spacing} mm (x, y, z)")
        if not np.allclose(self.origin, other.origin, atol=1e-3):
            problems.append(f"origin {other.origin} vs {self.origin} mm")
        if not np.allclose(self.direction, other.direction, atol=1e-5):
            problems.append("direction matrices differ")
        if problems:
            raise GeometryMismatchError(
                f"the {what} do not lie on the image's voxel grid: " + "; ".join(problems)
                + ". Resample them onto the image first or pick the matching image."
            )


def volume_from_layer_data(array: np.ndarray, metadata: Optional[dict], scale=None, translate=None) -> Volume:
    """Rebuild a Volume from a napari layer's data and metadata.

    Uses the original geometry stored by the reader in ``metadata["medseg_geometry"]``
    when present (exact round trip); otherwise falls back to the layer's scale and
    translate (axis-aligned).
    """
    metadata = dict(metadata or {})
    geometry = metadata.get("medseg_geometry")
    if geometry is not None:
        return Volume.from_geometry_dict(np.asarray(array), geometry, metadata=metadata)
    spacing_zyx = tuple(scale) if scale is not None else (1.0, 1.0, 1.0)
    origin_zyx = tuple(translate) if translate is not None else (0.0, 0.0, 0.0)
    return Volume(
        array=np.asarray(array),
        spacing=tuple(reversed(spacing_zyx[-3:])),
        origin=tuple(reversed(origin_zyx[-3:])),
        metadata=metadata,
    )
