"""NIfTI-1, NIfTI-2 and NIfTI-1/Analyze pairs (``.hdr``/``.img``), read with nibabel.

Why nibabel and not ITK for NIfTI: ITK cannot read NIfTI-2 at all, replaces NaN voxels
by 0 without a word, and picks between qform and sform by its own rules (it prefers the
qform when both are set and it finds the sform "unexpected"). nibabel implements the
NIfTI rules (sform when ``sform_code > 0``, else qform when ``qform_code > 0``, else
``pixdim``) for NIfTI-1 and NIfTI-2 alike, so both versions of the same header give the
same geometry. The result is handed on as a SimpleITK image in LPS (nibabel's affine is
RAS: x and y flip), so everything above this module sees one image type.

nibabel and SimpleITK are imported inside the functions (light import).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageReadError

#: NIfTI header fields kept as the image's header key/values (strings, like ITK's metadata).
_HEADER_FIELDS = ("descrip", "intent_name", "aux_file", "qform_code", "sform_code", "sizeof_hdr")


def _one_line(exc: BaseException, path: Path) -> str:
    """nibabel's message on one line, without repeating the path the caller names."""
    return " ".join(str(exc).replace(str(path), "the file").split()) or type(exc).__name__


def _scaled(header: Any) -> bool:
    slope, inter = header.get_slope_inter()
    return (slope is not None and slope != 1.0) or (inter is not None and inter != 0.0)


def load_nifti(path: Path) -> Any:
    """The nibabel image of a NIfTI-1/2 file or pair (header only; voxels are read lazily).

    Raises
    ------
    ImageReadError
        The file (or the other half of a pair) is missing or nibabel cannot parse it;
        the message names the file.
    """
    import nibabel as nib

    lowered = path.name.lower()
    if lowered.endswith((".hdr", ".img")):
        other = path.with_suffix(".img" if lowered.endswith(".hdr") else ".hdr")
        if not other.exists():
            other = path.with_suffix(other.suffix.upper())
        if not other.exists():
            half = "voxel file (.img)" if lowered.endswith(".hdr") else "header file (.hdr)"
            raise ImageReadError(
                f"{path} is one half of a NIfTI/Analyze pair and its {half} {other.with_suffix(other.suffix.lower()).name} "
                "is missing; keep the .hdr and .img files together")
    try:
        return nib.load(str(path))
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types on broken headers
        raise ImageReadError(f"{path} is not a readable NIfTI file: {_one_line(exc, path)}") from None


def nifti_header(img: Any) -> dict:
    """Header key/values (strings) of a nibabel image, for ``Volume.metadata["header"]``."""
    out = {}
    hdr = img.header
    for key in _HEADER_FIELDS:
        try:
            value = hdr[key]
        except (KeyError, ValueError):
            continue
        value = value.item() if hasattr(value, "item") else value
        if isinstance(value, bytes):
            value = value.decode("latin-1").rstrip("\x00").strip()
        if value not in ("", None):
            out[key] = str(value)
    out["nifti_version"] = "2" if int(hdr.sizeof_hdr) == 540 else ("1" if hasattr(hdr, "get_qform") else "analyze")
    return out


def voxel_array(img: Any, path: Path) -> np.ndarray:
    """Voxels with ``scl_slope``/``scl_inter`` applied, in native byte order.

    Unscaled data keep their stored type; scaled data become float32 (float64 when
    stored as float64), as ITK gives them. NaN stays NaN.
    """
    try:
        if _scaled(img.header):
            stored = img.get_data_dtype()
            dtype = np.float64 if stored == np.float64 else np.float32
            arr = np.asarray(img.get_fdata(dtype=dtype))
        else:
            arr = np.asarray(img.dataobj)
    except (OSError, EOFError, ValueError, OverflowError) as exc:  # mmap of a negative size
        raise ImageReadError(
            f"{path} is damaged: its pixel data cannot be read ({_one_line(exc, path)}); the file is probably truncated or corrupt"
        ) from None
    except MemoryError:
        raise ImageReadError(f"{path}: not enough memory to load its pixel data") from None
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    return arr


def lps_geometry(img: Any) -> tuple:
    """(spacing xyz, origin xyz, direction 9) in LPS from nibabel's (RAS) best affine."""
    affine = np.asarray(img.affine, dtype=float)
    m = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, :3]
    origin = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, 3]
    spacing = np.linalg.norm(m, axis=0)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        spacing = np.where(np.isfinite(spacing) & (spacing > 0), spacing, 1.0)
    direction = m / spacing
    return tuple(float(v) for v in spacing), tuple(float(v) for v in origin), tuple(float(v) for v in direction.ravel())


def to_sitk(img: Any, path: Path) -> Any:
    """A SimpleITK image (LPS geometry) of a nibabel NIfTI image: 3D, 4D (time/channels
    as the 4th axis, as ITK reads them) or a vector image for 5D files with one time point."""
    import SimpleITK as sitk

    arr = voxel_array(img, path)
    shape = arr.shape
    vector = False
    if arr.ndim > 5 or (arr.ndim == 5 and shape[3] != 1):
        raise ImageReadError(f"{path} is a {arr.ndim}D NIfTI image {shape}; napari-medseg reads 2D, 3D and 4D images")
    if arr.ndim == 5:
        arr = arr[:, :, :, 0, :]
        vector = True
    while arr.ndim < 3:
        arr = arr[..., None]
    spacing, origin, direction = lps_geometry(img)
    det = float(np.linalg.det(np.reshape(direction, (3, 3))))
    if not np.isfinite(det) or abs(det) < 1e-6 or not np.all(np.isfinite(origin)):
        raise ImageReadError(
            f"{path} has a broken geometry header: its voxel-to-world affine {np.round(img.affine, 4).tolist()} "
            "is singular or not finite (zero voxel size or collapsed axes); its real size in mm is unknown")
    if vector or arr.ndim == 3:
        # nibabel is x-fastest-last (x, y, z[, c]); SimpleITK arrays are (z, y, x[, c])
        data = np.ascontiguousarray(np.moveaxis(arr, [0, 1, 2], [2, 1, 0]))
        image = sitk.GetImageFromArray(data, isVector=vector)
        image.SetSpacing(spacing)
        image.SetOrigin(origin)
        image.SetDirection(direction)
        return image
    data = np.ascontiguousarray(arr.transpose(3, 2, 1, 0))
    image = sitk.GetImageFromArray(data, isVector=False)
    zooms = img.header.get_zooms()
    dt = float(zooms[3]) if len(zooms) > 3 and np.isfinite(zooms[3]) and zooms[3] > 0 else 1.0
    d3 = np.reshape(direction, (3, 3))
    d4 = np.eye(4)
    d4[:3, :3] = d3
    image.SetSpacing(spacing + (dt,))
    image.SetOrigin(origin + (0.0,))
    image.SetDirection(tuple(float(v) for v in d4.ravel()))
    return image


def read_nifti(path: Path) -> tuple:
    """Read a NIfTI-1/2 file or pair. Returns (SimpleITK image, header dict)."""
    img = load_nifti(path)
    return to_sitk(img, path), nifti_header(img)


__all__ = ["load_nifti", "nifti_header", "voxel_array", "lps_geometry", "to_sitk", "read_nifti"]


class HeaderInfo:
    """What a header-only SimpleITK reader answers (pixel type, dimension, size,
    components), for a NIfTI file read by nibabel without loading its voxels."""

    def __init__(self, img: Any) -> None:
        import SimpleITK as sitk

        shape = tuple(int(v) for v in img.shape)
        dtype = np.dtype(np.float32) if _scaled(img.header) else np.dtype(img.get_data_dtype()).newbyteorder("=")
        if dtype == np.bool_:
            dtype = np.dtype(np.uint8)
        self._pixel_id = sitk.GetImageFromArray(np.zeros((1, 1, 1), dtype=dtype)).GetPixelID()
        self._components = 1
        if len(shape) == 5 and shape[3] == 1:
            self._components = shape[4]
            shape = shape[:3]
        while len(shape) < 3:
            shape = shape + (1,)
        self._size = shape

    def GetPixelID(self) -> int:  # noqa: N802 - the SimpleITK reader's interface
        return self._pixel_id

    def GetDimension(self) -> int:  # noqa: N802
        return len(self._size)

    def GetSize(self) -> tuple:  # noqa: N802
        return self._size

    def GetNumberOfComponents(self) -> int:  # noqa: N802
        return self._components

    GetNumberOfComponentsPerPixel = GetNumberOfComponents


__all__.append("HeaderInfo")
