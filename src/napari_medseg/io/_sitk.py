"""SimpleITK plumbing shared by the readers and writers (SimpleITK imported inside functions).

:func:`read_image_file` reads a NIfTI/NRRD/MetaImage file (header only, or pixels after
the integrity checks of :mod:`._integrity`); :func:`select_channel` turns 4D and
multi-component images into one 3D scalar image; :func:`write_image` writes one staged
file; :func:`itk_message` keeps the one useful line of ITK's multi-line C++ exceptions,
so they never reach the user.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import ImageReadError, InvalidInputError, UnsupportedFormatError
from ._integrity import decoded_bzip2_nrrd, nrrd_encoding, precheck, verify_payload
from ._nifti import HeaderInfo, load_nifti, nifti_header, to_sitk
from .formats import FORMAT_NAMES


class MultiChannelError(UnsupportedFormatError):
    """The file holds several volumes/channels and the caller did not pick one."""


_ITK_ERROR = re.compile(r"(?:ITK ERROR:\s*[^:]*?:|sitk::ERROR:)\s*(.*)", re.S)


def itk_message(exc: BaseException) -> str:
    """The useful line of a SimpleITK/ITK exception (no C++ file names)."""
    text = str(exc).strip()
    m = _ITK_ERROR.search(text)
    if m:
        text = m.group(1)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("Exception thrown in SimpleITK")
             and not re.match(r"^(/|[A-Za-z]:\\).*\.(h|hxx|cxx|cpp):\d+", ln)]
    if lines and lines[0].startswith("Unable to determine ImageIO reader"):
        return "no image reader recognises its content"
    return lines[0] if lines else "unknown error"


def read_image_file(path: Path, fmt: str, *, read_pixels: bool = True, verify: bool = True) -> tuple:
    """Read a NIfTI/NRRD/MetaImage file with SimpleITK. Returns (image or reader, header dict)."""
    import SimpleITK as sitk

    precheck(path, fmt)
    if fmt == "nifti":
        # NIfTI-1/2 and pairs: nibabel (NIfTI-2, NaN voxels and the qform/sform rules; see _nifti)
        if read_pixels and verify:
            verify_payload(path, fmt)  # first: nibabel's own message on a cut gzip stream is vague
        img = load_nifti(path)
        if not read_pixels:
            return HeaderInfo(img), nifti_header(img)
        if np.dtype(img.get_data_dtype()).kind == "c":
            raise UnsupportedFormatError(f"{path} holds complex-valued voxels; napari-medseg reads real-valued images only")
        return to_sitk(img, path), nifti_header(img)
    if fmt == "nrrd" and nrrd_encoding(path) in ("bz2", "bzip2"):
        # ITK cannot decode bzip2 NRRD data: decode it here and let ITK read the raw copy
        with decoded_bzip2_nrrd(path) as plain:
            image, header = read_image_file(plain, fmt, read_pixels=read_pixels, verify=False)
            if not read_pixels:
                image = _header_only(image)
            return image, header
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ImageReadError(f"{path} is not a readable {FORMAT_NAMES[fmt]} file: {itk_message(exc)}") from None
    header = {}
    for key in reader.GetMetaDataKeys():
        try:
            value = reader.GetMetaData(key)
        except RuntimeError:
            continue
        if len(value) <= 1000:
            header[key] = value
    if not read_pixels:
        return reader, header
    if reader.GetPixelID() in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
        raise UnsupportedFormatError(f"{path} holds complex-valued voxels; napari-medseg reads real-valued images only")
    if verify:
        verify_payload(path, fmt)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        msg = itk_message(exc)
        if re.search(r"spacing|direction|determinant", msg, re.I):
            raise ImageReadError(f"{path} has a broken geometry header: {msg}") from None
        raise ImageReadError(
            f"{path} is damaged: its pixel data cannot be read ({itk_message(exc)}); "
            "the file is probably truncated or corrupt"
        ) from None
    except MemoryError:
        raise ImageReadError(f"{path}: not enough memory to load its pixel data") from None
    return image, header


def _header_only(reader: Any) -> Any:
    """A header-only reader's answers kept after its (temporary) file is gone."""
    class _Info:
        pass

    info = _Info()
    pid, dim, size, ncomp = reader.GetPixelID(), reader.GetDimension(), reader.GetSize(), reader.GetNumberOfComponents()
    info.GetPixelID = lambda: pid
    info.GetDimension = lambda: dim
    info.GetSize = lambda: size
    info.GetNumberOfComponents = info.GetNumberOfComponentsPerPixel = lambda: ncomp
    return info


def embed_2d(image: Any) -> Any:
    """A 2D SimpleITK image as a one-slice 3D image (spacing z 1 mm, identity z axis)."""
    import SimpleITK as sitk

    arr = sitk.GetArrayViewFromImage(image)
    out = sitk.GetImageFromArray(np.ascontiguousarray(arr)[None], isVector=image.GetNumberOfComponentsPerPixel() > 1)
    sx, sy = image.GetSpacing()
    ox, oy = image.GetOrigin()
    d = image.GetDirection()
    out.SetSpacing((sx, sy, 1.0))
    out.SetOrigin((ox, oy, 0.0))
    out.SetDirection((d[0], d[1], 0.0, d[2], d[3], 0.0, 0.0, 0.0, 1.0))
    return out


def select_channel(image: Any, path: Path, channel: Optional[int]) -> tuple:
    """Reduce 4D / multi-component images to one 3D scalar image. Returns (image, note)."""
    import SimpleITK as sitk

    dim = image.GetDimension()
    ncomp = image.GetNumberOfComponentsPerPixel()
    note = None
    if dim > 4 or dim < 2:
        raise UnsupportedFormatError(f"{path} is a {dim}D image; napari-medseg reads 2D, 3D and 4D images")
    if dim == 4 and ncomp > 1:
        raise UnsupportedFormatError(
            f"{path} is a 4D image with {ncomp} components per voxel; split it into 3D files first")
    if dim == 4:
        size = list(image.GetSize())
        n = size[3]
        if n == 1 and channel in (None, 0):
            image = sitk.Extract(image, size[:3] + [0], [0, 0, 0, 0])
        else:
            if channel is None:
                raise MultiChannelError(
                    f"{path} is a 4D image holding {n} volumes ({size[0]}x{size[1]}x{size[2]} voxels each, "
                    f"e.g. time points or MR channels); pass channel=0..{n - 1} to pick one "
                    "(medseg: --channel N), or split the file"
                )
            if not 0 <= int(channel) < n:
                raise InvalidInputError(f"channel {channel} is out of range for {path}: it holds {n} volumes (0..{n - 1})")
            image = sitk.Extract(image, size[:3] + [0], [0, 0, 0, int(channel)])
            note = f"volume {int(channel)} of {n}"
    elif ncomp > 1:
        rgb = ncomp in (3, 4) and image.GetPixelID() in (sitk.sitkVectorUInt8,)
        kind = ("an RGB" if ncomp == 3 else "an RGBA") + " colour image" if rgb else f"a {ncomp}-channel image"
        if channel is None:
            raise MultiChannelError(
                f"{path} is {kind} ({ncomp} values per voxel); CT/MRI tools need one value per voxel: "
                f"pass channel=0..{ncomp - 1} to pick one (medseg: --channel N)"
            )
        if not 0 <= int(channel) < ncomp:
            raise InvalidInputError(f"channel {channel} is out of range for {path}: it has {ncomp} channels (0..{ncomp - 1})")
        image = sitk.VectorIndexSelectionCast(image, int(channel))
        note = f"channel {int(channel)} of {ncomp}"
    elif channel not in (None, 0):
        raise InvalidInputError(f"{path} has a single channel; channel={channel} does not exist (use 0 or leave it out)")
    if image.GetDimension() == 2:
        image = embed_2d(image)
        note = (note + ", " if note else "") + "2D image loaded as one slice"
    return image, note


def channel_count(path: Path) -> int:
    """Volumes of a 4D file or components per voxel (0 when the header cannot be read)."""
    from .formats import detect_format

    fmt = detect_format(path)
    if fmt not in FORMAT_NAMES or fmt == "dicom":
        return 0
    try:
        reader, _ = read_image_file(Path(path), fmt, read_pixels=False)
    except (ImageReadError, UnsupportedFormatError):
        return 0
    if reader.GetDimension() == 4:
        return int(reader.GetSize()[3])
    return int(reader.GetNumberOfComponents())


def is_integer_pixel(reader: Any) -> bool:
    """Whether a SimpleITK reader/image holds integer scalar voxels."""
    import SimpleITK as sitk

    return reader.GetPixelID() in (sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16,
                                   sitk.sitkUInt32, sitk.sitkInt32, sitk.sitkUInt64, sitk.sitkInt64)


def is_float_pixel(reader: Any) -> bool:
    """Whether a SimpleITK reader/image holds float scalar voxels."""
    import SimpleITK as sitk

    return reader.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64)


def write_image(image: Any, path: Path, staged: Path, *, compress: bool) -> None:
    """Write ``image`` to the staged file ``staged`` of ``path`` (errors name ``path``)."""
    import SimpleITK as sitk

    try:
        sitk.WriteImage(image, str(staged), compress)
    except RuntimeError as exc:
        raise ImageReadError(f"could not write {path}: {itk_message(exc)}") from None


__all__ = ["MultiChannelError", "itk_message", "read_image_file", "select_channel", "embed_2d",
           "channel_count", "is_integer_pixel", "is_float_pixel", "write_image"]
