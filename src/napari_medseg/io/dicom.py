"""Reading a DICOM image series (a folder, or one file of it) with exact geometry.

What this module does, and why:

* Headers are read with pydicom (no pixels) and grouped by ``SeriesInstanceUID``.
* Objects that are not images are skipped: DICOM-SEG, RTSTRUCT, structured reports,
  presentation states, ... (decided by ``SOPClassUID`` and ``Modality``). SimpleITK
  would otherwise happily read a multi-frame SEG as a 512 x 512 x N "image".
* A folder with several image series loads the one with the most slices and says so
  (a :class:`DicomWarning` naming the others).
* Slices are sorted by ``ImagePositionPatient`` projected on the slice normal
  (``ImageOrientationPatient`` row x column), never by file name or InstanceNumber.
* Slice spacing is the median gap between positions; irregular gaps and missing
  slices produce a warning naming the positions; mixed orientations and duplicated
  positions are refused (the series is not one volume).
* Enhanced (multi-frame) CT/MR objects take their geometry from the per-frame functional
  groups (plane position/orientation, pixel measures, pixel value transformation): frames
  are sorted along the normal like the slices of a series, with the same checks.
* Pixels are decoded by SimpleITK/GDCM (compressed transfer syntaxes included), which
  applies ``RescaleSlope``/``RescaleIntercept`` (CT in Hounsfield units). When the
  rescale differs between slices, pixels are read as float32 so none is clipped.
* ``Volume.metadata["dicom"]`` records the UIDs a DICOM-SEG writer needs
  (``StudyInstanceUID``, ``SeriesInstanceUID``, ``FrameOfReferenceUID``, the
  ``SOPInstanceUIDs`` and ``files`` in slice order, ``SOPClassUID``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..errors import ImageReadError, UnsupportedFormatError
from .formats import SEG_SOP_CLASS, looks_like_dicom


class DicomWarning(UserWarning):
    """Something about a DICOM series the user should know (other series, gaps, tilt)."""


# SOP classes that are never pixel volumes to display as an image.
NON_IMAGE_SOP_CLASSES = {
    SEG_SOP_CLASS: "DICOM Segmentation (SEG)",
    "1.2.840.10008.5.1.4.1.1.66.7": "Label Map Segmentation",
    "1.2.840.10008.5.1.4.1.1.481.3": "RT Structure Set (RTSTRUCT)",
    "1.2.840.10008.5.1.4.1.1.481.5": "RT Plan",
    "1.2.840.10008.5.1.4.1.1.481.2": "RT Dose",
    "1.2.840.10008.5.1.4.1.1.66": "Raw Data",
    "1.2.840.10008.5.1.4.1.1.66.1": "Spatial Registration",
    "1.2.840.10008.5.1.4.1.1.66.3": "Deformable Registration",
    "1.2.840.10008.5.1.4.1.1.104.1": "Encapsulated PDF",
    "1.2.840.10008.5.1.4.1.1.88.59": "Key Object Selection",
}
NON_IMAGE_SOP_PREFIXES = {
    "1.2.840.10008.5.1.4.1.1.88.": "Structured Report (SR)",
    "1.2.840.10008.5.1.4.1.1.11.": "Presentation State",
}
NON_IMAGE_MODALITIES = {
    "SEG": "DICOM Segmentation (SEG)", "RTSTRUCT": "RT Structure Set", "RTPLAN": "RT Plan",
    "RTDOSE": "RT Dose", "SR": "Structured Report", "PR": "Presentation State",
    "KO": "Key Object Selection", "REG": "Registration", "DOC": "Document", "RWV": "Real World Value Map",
}

_MAX_FILES = 50000  # refuse to scan absurdly large trees (say so instead of hanging)


@dataclass
class _Header:
    path: Path
    sop_class: str = ""
    sop_instance: str = ""
    modality: str = ""
    series_uid: str = ""
    study_uid: str = ""
    frame_of_reference_uid: str = ""
    series_description: str = ""
    series_number: Any = None
    rows: int = 0
    columns: int = 0
    n_frames: int = 1
    samples_per_pixel: int = 1
    position: Optional[np.ndarray] = None
    orientation: Optional[np.ndarray] = None
    pixel_spacing: Optional[tuple] = None
    slice_thickness: Optional[float] = None
    spacing_between_slices: Optional[float] = None
    slope: float = 1.0
    intercept: float = 0.0
    non_image_kind: str = ""
    mosaic_images: int = 0
    extra: dict = field(default_factory=dict)


def _float_list(value: Any, n: int) -> Optional[np.ndarray]:
    """``n`` floats (NaN/inf kept, so they can be reported), or None when absent/unparseable."""
    try:
        arr = np.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError, OverflowError):
        return None
    return arr if arr.shape == (n,) else None


def _read_header(path: Path) -> Optional[_Header]:
    """Header of one file, or None when it is not DICOM at all."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except InvalidDicomError:
        return None
    except Exception as exc:  # pydicom raises many types on damaged files
        raise ImageReadError(f"{path} is a damaged DICOM file: {exc}") from None

    def get(name: str, default: Any = "") -> Any:
        try:
            value = ds.get(name, default)
        except Exception:  # a malformed element must not stop the scan
            return default
        return default if value is None else value

    h = _Header(path=path)
    h.sop_class = str(get("SOPClassUID"))
    h.sop_instance = str(get("SOPInstanceUID"))
    h.modality = str(get("Modality")).upper()
    h.series_uid = str(get("SeriesInstanceUID"))
    h.study_uid = str(get("StudyInstanceUID"))
    h.frame_of_reference_uid = str(get("FrameOfReferenceUID"))
    h.series_description = str(get("SeriesDescription"))
    h.series_number = get("SeriesNumber", None)
    try:
        h.rows = int(get("Rows", 0) or 0)
        h.columns = int(get("Columns", 0) or 0)
        h.n_frames = int(get("NumberOfFrames", 1) or 1)
        h.samples_per_pixel = int(get("SamplesPerPixel", 1) or 1)
    except (TypeError, ValueError):
        h.rows = h.columns = 0
    h.position = _float_list(get("ImagePositionPatient", None) or (), 3)
    h.orientation = _float_list(get("ImageOrientationPatient", None) or (), 6)
    ps = _float_list(get("PixelSpacing", None) or (), 2)
    h.pixel_spacing = tuple(ps) if ps is not None else None
    for attr, name in (("slice_thickness", "SliceThickness"), ("spacing_between_slices", "SpacingBetweenSlices")):
        try:
            value = get(name, None)
            setattr(h, attr, float(value) if value not in (None, "") else None)
        except (TypeError, ValueError):
            pass
    try:
        h.slope = float(get("RescaleSlope", 1.0) or 1.0)
        h.intercept = float(get("RescaleIntercept", 0.0) or 0.0)
    except (TypeError, ValueError):
        pass
    raw_type = get("ImageType", None)
    image_type = ([str(raw_type).upper()] if isinstance(raw_type, str)
                  else [str(v).upper() for v in (raw_type or [])])
    if "MOSAIC" in image_type:
        try:
            # Siemens private (0019,100A) NumberOfImagesInMosaic (also in the CSA header)
            h.mosaic_images = int(ds[0x0019, 0x100A].value) if (0x0019, 0x100A) in ds else -1
        except (TypeError, ValueError, KeyError):
            h.mosaic_images = -1
    if h.sop_class in NON_IMAGE_SOP_CLASSES:
        h.non_image_kind = NON_IMAGE_SOP_CLASSES[h.sop_class]
    else:
        for prefix, kind in NON_IMAGE_SOP_PREFIXES.items():
            if h.sop_class.startswith(prefix):
                h.non_image_kind = kind
        if not h.non_image_kind and h.modality in NON_IMAGE_MODALITIES:
            h.non_image_kind = NON_IMAGE_MODALITIES[h.modality]
        if not h.non_image_kind and (h.rows <= 0 or h.columns <= 0):
            h.non_image_kind = "non-image object (no pixel matrix)"
    return h


def _refuse_mosaic(h: _Header) -> None:
    """Siemens mosaic files tile many slices into one 2D image; reading one as a slice
    would show a grid of slices as if it were one. Refuse with the way out."""
    if h.mosaic_images:
        n = f"{h.mosaic_images} slices" if h.mosaic_images > 0 else "several slices"
        raise UnsupportedFormatError(
            f"{h.path} is a Siemens mosaic image: {n} tiled into one {h.rows}x{h.columns} image "
            "(ImageType MOSAIC, typical of EPI/DWI/fMRI); napari-medseg does not unpack mosaics. "
            "Convert the series with dcm2niix (it unpacks mosaics with their geometry) and open the NIfTI."
        )


def _candidate_files(folder: Path, recursive: bool) -> list:
    files = []
    walker = os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]
    for root, dirs, names in walker:
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or name.upper() == "DICOMDIR":
                continue
            p = Path(root) / name
            if p.is_file():
                files.append(p)
                if len(files) > _MAX_FILES:
                    raise ImageReadError(
                        f"{folder} holds more than {_MAX_FILES} files; point at the folder of "
                        "one series instead of a whole archive"
                    )
    return files


def folder_has_dicom(folder: Union[str, Path], max_checked: int = 200, max_dirs: int = 50) -> bool:
    """True when one of the first files under ``folder`` is DICOM (by content or extension).

    Bounded work (``max_checked`` files in ``max_dirs`` folders), so that a home folder
    opened by mistake is not walked completely; hidden files and folders are skipped.
    """
    checked = dirs = 0
    try:
        for root, subdirs, files in os.walk(folder):
            dirs += 1
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                checked += 1
                if looks_like_dicom(Path(root) / name):
                    return True
                if checked >= max_checked:
                    return False
            if dirs >= max_dirs:
                return False
    except OSError:
        return False
    return False


def scan_folder(folder: Union[str, Path], recursive: bool = True) -> tuple:
    """Headers of the DICOM files under ``folder``.

    Returns
    -------
    (list of _Header, list of Path)
        The DICOM headers and the files that were not DICOM.
    """
    folder = Path(folder)
    headers, others, damaged = [], [], []
    for p in _candidate_files(folder, recursive):
        if not looks_like_dicom(p):
            others.append(p)
            continue
        try:
            h = _read_header(p)
        except ImageReadError:
            damaged.append(p)
            continue
        if h is None:
            others.append(p)
        else:
            headers.append(h)
    if damaged:
        warnings.warn(
            f"skipped {len(damaged)} damaged DICOM file(s) in {folder}: "
            + ", ".join(p.name for p in damaged[:5]) + (" ..." if len(damaged) > 5 else ""),
            DicomWarning, stacklevel=3,
        )
    return headers, others


def _series_label(h: _Header, n: int) -> str:
    desc = f" '{h.series_description}'" if h.series_description else ""
    number = f" #{h.series_number}" if h.series_number not in (None, "") else ""
    uid = f"UID {h.series_uid}" if h.series_uid else "no SeriesInstanceUID"
    return f"{h.modality or '?'} series{number}{desc} ({n} slice{'s' if n != 1 else ''}, {uid})"


def _series_key(h: _Header) -> str:
    """What a file's series is known by: its SeriesInstanceUID or, where an anonymiser
    blanked it, what defines a volume: orientation, in-plane size and pixel spacing
    (plus the study, modality and series number when present). Never an empty string."""
    if h.series_uid:
        return h.series_uid
    ori = "?" if h.orientation is None else ",".join(f"{v:.3f}" for v in h.orientation)
    ps = "?" if h.pixel_spacing is None else ",".join(f"{v:.4f}" for v in h.pixel_spacing)
    number = "" if h.series_number in (None, "") else str(h.series_number)
    return (f"<no SeriesInstanceUID: {h.modality or '?'} #{number} {h.rows}x{h.columns} px {ps} mm "
            f"orientation {ori} study {h.study_uid or '?'}>")


def _group(headers: list) -> dict:
    groups: dict = {}
    for h in headers:
        groups.setdefault(_series_key(h), []).append(h)
    return groups


def _slice_geometry(where: Path, series: list) -> tuple:
    """Sort the slices of one series and derive origin, spacing, direction.

    Returns (sorted headers, spacing xyz, origin xyz, direction 9, positions mm).
    """
    label = _series_label(series[0], len(series))
    missing = [h.path.name for h in series if h.position is None or h.orientation is None]
    if missing:
        raise ImageReadError(
            f"{where}: {label}: {len(missing)} file(s) lack ImagePositionPatient/"
            f"ImageOrientationPatient (e.g. {missing[0]}), so their place in the volume is unknown"
        )
    for h in series:
        if not (np.all(np.isfinite(h.position)) and np.all(np.isfinite(h.orientation))):
            raise ImageReadError(
                f"{where}: {h.path.name} has a non-numeric ImagePositionPatient/ImageOrientationPatient "
                f"({h.position.tolist()}, {h.orientation.tolist()}); its place in the volume is unknown"
            )
    ref = series[0].orientation
    bad = [h for h in series if not np.allclose(h.orientation, ref, atol=1e-3)]
    if bad:
        raise ImageReadError(
            f"{where}: {label} mixes slice orientations ({np.round(ref, 3).tolist()} in "
            f"{series[0].path.name} vs {np.round(bad[0].orientation, 3).tolist()} in {bad[0].path.name}); "
            "it is not one volume (e.g. a localizer stored with the axial slices). Move the "
            "odd files away or open a folder holding one orientation."
        )
    sizes = {(h.rows, h.columns) for h in series}
    if len(sizes) > 1:
        raise ImageReadError(f"{where}: {label} mixes image sizes {sorted(sizes)}; it is not one volume")
    row, col = ref[:3], ref[3:]
    if np.linalg.norm(row) < 0.5 or np.linalg.norm(col) < 0.5:
        raise ImageReadError(f"{where}: {label} has a degenerate ImageOrientationPatient {ref.tolist()}")
    row = row / np.linalg.norm(row)
    col = col / np.linalg.norm(col)
    if abs(float(np.dot(row, col))) > 0.01:
        raise ImageReadError(
            f"{where}: {label} has an ImageOrientationPatient whose row and column directions are not "
            f"perpendicular ({ref.tolist()}); the header is broken"
        )
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    positions = np.array([float(np.dot(h.position, normal)) for h in series])
    order = np.argsort(positions, kind="stable")
    series = [series[i] for i in order]
    positions = positions[order]
    pixel_spacing = series[0].pixel_spacing or (1.0, 1.0)
    if series[0].pixel_spacing is None:
        warnings.warn(f"{where}: {label} has no PixelSpacing; assuming 1 mm", DicomWarning, stacklevel=4)
    elif not all(np.isfinite(v) and v > 0 for v in pixel_spacing):
        raise ImageReadError(
            f"{where}: {label} has PixelSpacing {list(pixel_spacing)}, which is not a positive size in mm; "
            "the header is broken"
        )
    bad_rescale = [h for h in series if not (np.isfinite(h.slope) and np.isfinite(h.intercept) and h.slope != 0)]
    if bad_rescale:
        h = bad_rescale[0]
        raise ImageReadError(
            f"{where}: {h.path.name} has RescaleSlope {h.slope} / RescaleIntercept {h.intercept}; "
            "intensities (e.g. Hounsfield units) cannot be computed"
        )
    if len(series) > 1:
        gaps = np.diff(positions)
        dup = np.flatnonzero(gaps < 1e-3)
        if dup.size:
            i = int(dup[0])
            raise ImageReadError(
                f"{where}: {label} has several slices at the same "
                f"position ({positions[i]:.2f} mm along the slice normal: {series[i].path.name}, "
                f"{series[i + 1].path.name}); the series holds several stacks (e.g. echoes, phases or "
                "repeated acquisitions). Split them into separate folders."
            )
        # Positions are decimal strings; drop float noise (1.0 not 0.99999999999999).
        dz = round(float(np.median(gaps)), 6)
        tol = max(0.01 * dz, 1e-3)
        irregular = np.flatnonzero(np.abs(gaps - dz) > tol)
        if irregular.size:
            parts = []
            for i in irregular[:6]:
                n_missing = int(round(gaps[i] / dz)) - 1
                what = f"{n_missing} missing slice(s)" if n_missing >= 1 and abs(gaps[i] - (n_missing + 1) * dz) <= tol else f"gap {gaps[i]:.3g} mm"
                parts.append(f"{what} between {positions[i]:.2f} and {positions[i + 1]:.2f} mm")
            more = f" and {irregular.size - 6} more" if irregular.size > 6 else ""
            warnings.warn(
                f"{where}: {label} has irregular slice spacing (usual gap {dz:.3g} mm): "
                + "; ".join(parts) + more
                + ". The volume is treated as evenly spaced, so distances and volumes near these "
                "positions are off; check the export is complete.",
                DicomWarning, stacklevel=4,
            )
        # Gantry tilt: slices not stacked along their normal (sheared volume).
        span = series[-1].position - series[0].position
        along = float(np.dot(span, normal))
        if along > 0 and np.linalg.norm(span - along * normal) > 0.01 * along + 0.01:
            warnings.warn(
                f"{where}: {label} is tilted (slices are not stacked along their normal, e.g. gantry "
                "tilt); it is shown as an unsheared volume, so positions are approximate.",
                DicomWarning, stacklevel=4,
            )
    else:
        dz = series[0].spacing_between_slices or series[0].slice_thickness or 1.0
        if not np.isfinite(dz) or dz <= 0:
            dz = 1.0
    spacing = (float(pixel_spacing[1]), float(pixel_spacing[0]), float(dz))
    direction = tuple(float(v) for v in np.column_stack([row, col, normal]).ravel())
    origin = tuple(float(v) for v in series[0].position)
    return series, spacing, origin, direction, positions


def _read_pixels(where: Path, series: list) -> Any:
    import SimpleITK as sitk

    files = [str(h.path) for h in series]
    slopes = {(h.slope, h.intercept) for h in series}
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    if len(slopes) > 1 or any(s != int(s) or i != int(i) for s, i in slopes):
        # Different (or fractional) rescales per slice: integer output would clip.
        reader.SetOutputPixelType(sitk.sitkFloat32)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise ImageReadError(f"{where}: cannot decode the pixels of the DICOM series: {msg}") from None
    return _narrow_int32(image)


def _narrow_int32(image: Any) -> Any:
    """GDCM widens rescaled 12/16-bit CT to int32; HU fit int16 (half the memory)."""
    import SimpleITK as sitk

    if image.GetPixelID() == sitk.sitkInt32:
        stats = sitk.MinimumMaximumImageFilter()
        stats.Execute(image)
        if -32768 <= stats.GetMinimum() and stats.GetMaximum() <= 32767:
            image = sitk.Cast(image, sitk.sitkInt16)
    return image


def _normalise_multiframe(image: Any) -> Any:
    """Give a multi-frame image the same layout as a classic series read.

    GDCM keeps frames in file order, so the slice axis may point against the slice
    normal (row x column). Reverse the frames in that case so the direction is
    right-handed and slice 0 is the lowest position, as for single-frame series.
    """
    import SimpleITK as sitk

    image = _narrow_int32(image)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        return image
    d = np.reshape(image.GetDirection(), (3, 3))
    if float(np.dot(d[:, 2], np.cross(d[:, 0], d[:, 1]))) >= 0:
        return image
    n = image.GetSize()[2]
    origin = image.TransformContinuousIndexToPhysicalPoint((0.0, 0.0, float(n - 1)))
    arr = sitk.GetArrayFromImage(image)[::-1]
    out = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    d[:, 2] *= -1
    out.SetSpacing(image.GetSpacing())
    out.SetOrigin(origin)
    out.SetDirection(tuple(float(v) for v in d.ravel()))
    return out


def _frame_headers(h: _Header) -> Optional[list]:
    """One pseudo-header per frame of an enhanced (multi-frame) object, from its functional
    groups (per-frame first, then shared): PlanePositionSequence, PlaneOrientationSequence,
    PixelMeasuresSequence, PixelValueTransformationSequence. ``extra["frame"]`` is the
    frame's index in the file. None when the frames carry no plane positions (e.g. a
    multi-frame secondary capture): GDCM's reading is then the only geometry there is."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(h.path), stop_before_pixels=True)
        per_frame = ds.get("PerFrameFunctionalGroupsSequence", None)
        shared_seq = ds.get("SharedFunctionalGroupsSequence", None)
    except Exception as exc:  # pydicom raises many types on damaged sequences
        raise ImageReadError(f"{h.path}: the multi-frame functional groups cannot be read: {exc}") from None
    if not per_frame or len(per_frame) != h.n_frames:
        return None
    shared = shared_seq[0] if shared_seq else None

    def item(frame: Any, seq: str) -> Any:
        for group in (frame, shared):
            if group is not None and seq in group and len(group[seq].value):
                return group[seq].value[0]
        return None

    frames = []
    for i, frame in enumerate(per_frame):
        pos, ori, pix, rescale = (item(frame, s) for s in (
            "PlanePositionSequence", "PlaneOrientationSequence", "PixelMeasuresSequence",
            "PixelValueTransformationSequence"))
        if pos is None:
            return None
        f = _Header(path=h.path, sop_class=h.sop_class, sop_instance=h.sop_instance, modality=h.modality,
                    series_uid=h.series_uid, series_description=h.series_description,
                    series_number=h.series_number, rows=h.rows, columns=h.columns,
                    slope=h.slope, intercept=h.intercept, extra={"frame": i})
        f.position = _float_list(pos.get("ImagePositionPatient", None) or (), 3)
        f.orientation = (_float_list(ori.get("ImageOrientationPatient", None) or (), 6) if ori is not None
                         else h.orientation)
        ps = _float_list(pix.get("PixelSpacing", None) or (), 2) if pix is not None else None
        f.pixel_spacing = tuple(ps) if ps is not None else h.pixel_spacing
        if pix is not None and pix.get("SliceThickness", None) not in (None, ""):
            f.slice_thickness = float(pix.SliceThickness)
        if rescale is not None:
            try:
                f.slope = float(rescale.get("RescaleSlope", 1.0) or 1.0)
                f.intercept = float(rescale.get("RescaleIntercept", 0.0) or 0.0)
            except (TypeError, ValueError):
                pass
        frames.append(f)
    return frames


def _read_multiframe(where: Path, h: _Header) -> tuple:
    """An enhanced (multi-frame) CT/MR object as a volume, its geometry from the functional
    groups: frames are sorted by position along the slice normal (files store them in
    acquisition order, descending, or interleaved; GDCM keeps the file order and derives
    one spacing from the first frames, so an interleaved file would come out scrambled), and
    the same checks as for a classic series apply (mixed orientations, several frames at one
    position, gaps, tilt). Returns (image, slice positions or None)."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(h.path))
    except RuntimeError as exc:
        raise ImageReadError(f"{h.path}: cannot read the multi-frame DICOM image: {exc}") from None
    frames = _frame_headers(h)
    if frames is None or image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1 \
            or image.GetSize()[2] != len(frames):
        return _normalise_multiframe(image), None
    ordered, spacing, origin, direction, positions = _slice_geometry(where, frames)
    order = [f.extra["frame"] for f in ordered]
    rescales = {(f.slope, f.intercept) for f in frames}
    if len(rescales) > 1:
        # Per-frame rescale (e.g. MR scaled frame by frame): GDCM applies one; apply each.
        import pydicom

        try:
            stored = pydicom.dcmread(str(h.path)).pixel_array
        except Exception as exc:
            raise ImageReadError(
                f"{h.path}: its frames have different RescaleSlope/Intercept, and pydicom cannot decode "
                f"its pixels to apply them frame by frame ({exc}); install the [test] extra's decoders"
            ) from None
        arr = np.stack([stored[f.extra["frame"]] * f.slope + f.intercept for f in ordered]).astype(np.float32)
    else:
        arr = sitk.GetArrayFromImage(image)[order]
    out = _narrow_int32(sitk.GetImageFromArray(np.ascontiguousarray(arr)))
    out.SetSpacing(spacing)
    out.SetOrigin(origin)
    out.SetDirection(direction)
    return out, positions


def read_dicom(path: Union[str, Path]) -> tuple:
    """Read a DICOM series from a folder or from one file of the series.

    Parameters
    ----------
    path : path-like
        A folder (searched recursively; the image series with the most slices is
        loaded) or one DICOM file (its series is loaded from the same folder).

    Returns
    -------
    (SimpleITK.Image, str or None, dict)
        The image with exact geometry, the modality and metadata for the Volume.

    Raises
    ------
    ImageReadError
        Empty folder, no image series, mixed orientations, duplicated positions,
        undecodable pixels (message names the folder/file).
    UnsupportedFormatError
        ``path`` is a DICOM object that is not an image (e.g. a SEG).
    """
    path = Path(path)
    if path.is_dir():
        folder, wanted_uid = path, None
        if not any(True for _ in path.iterdir()):
            raise ImageReadError(f"{path} is an empty folder: no DICOM files to read")
        headers, others = scan_folder(path, recursive=True)
    else:
        folder = path.parent
        own = _read_header(path)
        if own is None:
            raise ImageReadError(f"{path} is not a DICOM file")
        if own.rows <= 0 or own.columns <= 0:
            raise ImageReadError(
                f"{path} is a DICOM file without an image (no pixel matrix: Rows/Columns missing); "
                "it is damaged or a non-image object"
            )
        if own.non_image_kind:
            raise UnsupportedFormatError(
                f"{path} is a {own.non_image_kind}, not an image; open the image series it refers "
                "to (its folder), and load segmentations with the DICOM-SEG reader"
            )
        _refuse_mosaic(own)
        wanted_uid = _series_key(own)
        headers, others = scan_folder(folder, recursive=False)
    if not headers:
        shown = ", ".join(p.name for p in others[:4]) + (" ..." if len(others) > 4 else "")
        hint = f" (it holds {len(others)} other file(s): {shown}; open an image file directly)" if others else ""
        raise ImageReadError(f"{path} holds no DICOM files{hint}")
    images = [h for h in headers if not h.non_image_kind]
    skipped = [h for h in headers if h.non_image_kind]
    if not images:
        kinds = sorted({h.non_image_kind for h in skipped})
        raise ImageReadError(
            f"{path} holds DICOM objects but no image series (only: {', '.join(kinds)}); "
            "open the folder of the images they refer to"
        )
    groups = _group(images)
    if wanted_uid is not None:
        chosen_uid = wanted_uid
    else:
        chosen_uid = max(groups, key=lambda uid: (sum(h.n_frames for h in groups[uid]), uid))
        if len(groups) > 1:
            others_text = "; ".join(
                _series_label(g[0], sum(h.n_frames for h in g)) for uid, g in groups.items() if uid != chosen_uid
            )
            chosen = groups[chosen_uid]
            warnings.warn(
                f"{path} holds {len(groups)} image series; loading the one with the most slices, "
                f"{_series_label(chosen[0], sum(h.n_frames for h in chosen))}. Ignored: {others_text}. "
                "Open a folder holding only the series you want to choose another.",
                DicomWarning, stacklevel=3,
            )
    series = groups.get(chosen_uid) or [own]
    _refuse_mosaic(series[0])
    # The same instance copied twice (a common export accident) is one slice.
    unique: dict = {}
    for h in series:
        unique.setdefault(h.sop_instance or str(h.path), h)
    if len(unique) < len(series):
        warnings.warn(
            f"{path}: ignoring {len(series) - len(unique)} duplicate file(s) of the same DICOM instance",
            DicomWarning, stacklevel=3,
        )
        series = list(unique.values())
    first = series[0]
    meta: dict = {
        "source_path": str(path),
        "format": "dicom",
        "dicom": {
            "StudyInstanceUID": first.study_uid,
            "SeriesInstanceUID": first.series_uid,
            "FrameOfReferenceUID": first.frame_of_reference_uid,
            "SOPClassUID": first.sop_class,
            "Modality": first.modality,
            "SeriesDescription": first.series_description,
            "SeriesNumber": None if first.series_number in (None, "") else str(first.series_number),
            "ignored_objects": sorted({f"{h.non_image_kind}: {h.path.name}" for h in skipped}),
        },
    }
    modality = first.modality or None
    if len(series) == 1 and first.n_frames > 1:
        # Enhanced (multi-frame) object: geometry from its functional groups.
        image, positions = _read_multiframe(path, first)
        meta["dicom"].update({"SOPInstanceUIDs": [first.sop_instance], "files": [str(first.path)],
                              "multiframe": True})
        if positions is not None:
            meta["dicom"]["slice_positions_mm"] = [float(p) for p in positions]
        return image, modality, meta
    series, spacing, origin, direction, positions = _slice_geometry(path, series)
    image = _read_pixels(path, series)
    if image.GetDimension() == 3 and image.GetSize()[2] == len(series):
        try:
            image.SetSpacing(spacing)
            image.SetOrigin(origin)
            image.SetDirection(direction)
        except RuntimeError:
            raise ImageReadError(
                f"{path}: the DICOM geometry (spacing {spacing}, direction {direction}) is invalid"
            ) from None
    meta["dicom"].update({
        "SOPInstanceUIDs": [h.sop_instance for h in series],
        "files": [str(h.path) for h in series],
        "slice_positions_mm": [float(p) for p in positions],
        "rescale": sorted({(h.slope, h.intercept) for h in series}),
    })
    return image, modality, meta
