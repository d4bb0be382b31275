"""DICOM Segmentation objects (DICOM-SEG): write with highdicom, read with pydicom.

Writing needs the source image series: a SEG references the SOP instances it was
derived from, shares their Study and Frame of Reference, and places each frame at the
position of a source slice. The source files are found from the image Volume's
``metadata["dicom"]["files"]`` (recorded by the DICOM reader, in slice order), or
given directly as a folder, a list of files or a list of pydicom datasets.

Each label id present in the label map becomes one segment (segment numbers 1..K in id
order; ids listed in the table but absent from the map are not written) with:

- the label's name and colour (as the recommended CIELab display value);
- its coded meaning from the label table (:meth:`LabelTable.code_of`): the structure's
  anatomical code where it is known (TotalSegmentator's published SNOMED CT codes, set by
  automatic segmentation or read from a SEG), else the generic SNOMED CT "Tissue"
  category and type. Codes are never guessed from free text;
- its provenance from the label table (:meth:`LabelTable.algorithm_of`): Segment
  Algorithm Type ``AUTOMATIC`` (model output), ``SEMIAUTOMATIC`` (interactive, or model
  output edited by hand) or ``MANUAL`` (drawn by hand, or unknown), with the algorithm's
  name in the Algorithm Identification for the first two.

The original label id is kept in the segment's Tracking ID (``"napari-medseg label <id>"``),
so reading our own SEG restores the same ids.

Reading accepts BINARY, FRACTIONAL (thresholded at 0.5) and LABELMAP segmentations,
onto a reference image grid (``reference``) or onto a grid built from the frames'
own positions; segment names, colours, codes and provenance go into the returned table.
"""

from __future__ import annotations

import copy
import os
import re
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .. import __version__
from ..errors import GeometryMismatchError, ImageReadError, InvalidInputError, UnsupportedFormatError
from .atomic import atomic_write
from .dicom import read_dicom
from .formats import SEG_SOP_CLASSES
from .label_table import Code, LabelTable, SegmentCode, SegmentInfo
from .volume import Volume
_TRACKING_RE = re.compile(r"^napari-medseg label (\d+)$")
_POS_TOL_MM = 0.05


# ----------------------------------------------------------------- sources
def _source_files(source: Any) -> list:
    """The source image datasets (headers only), in the labels' slice order."""
    import pydicom

    if isinstance(source, Volume):
        info = (source.metadata or {}).get("dicom") or {}
        files = info.get("files")
        if not files:
            raise InvalidInputError(
                "the reference image did not come from DICOM (no source files recorded); "
                "DICOM-SEG needs the original DICOM series: open the image from its DICOM folder"
            )
        source = files
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if folder.is_dir():
            # the folder's image series, in slice order, as the DICOM reader records it
            return _source_files(read_dicom(folder)[2]["dicom"]["files"])
        source = [folder]
    datasets = []
    for item in source:
        if isinstance(item, pydicom.Dataset):
            datasets.append(item)
            continue
        path = Path(item)
        try:
            datasets.append(pydicom.dcmread(str(path), stop_before_pixels=True))
        except FileNotFoundError:
            raise ImageReadError(f"source DICOM file {path} is missing; DICOM-SEG needs the original series") from None
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types
            raise ImageReadError(f"cannot read source DICOM file {path}: {exc}") from None
    if not datasets:
        raise InvalidInputError("no source DICOM images given for the DICOM-SEG")
    return datasets


def _frame_geometry(ds) -> tuple:
    pos = np.array([float(v) for v in ds.ImagePositionPatient])
    ori = np.array([float(v) for v in ds.ImageOrientationPatient])
    spacing = np.array([float(v) for v in ds.PixelSpacing])  # row spacing (y), column spacing (x)
    return pos, ori, spacing


def _order_sources(labels: Volume, datasets: list) -> list:
    """Match each label slice z to the source dataset at the same physical position."""
    rows, cols = labels.shape[1], labels.shape[2]
    by_pos = []
    for ds in datasets:
        try:
            pos, ori, spacing = _frame_geometry(ds)
        except (AttributeError, TypeError, ValueError):
            raise InvalidInputError(
                f"source image {getattr(ds, 'SOPInstanceUID', '?')} has no usable position/orientation"
            ) from None
        if int(ds.Rows) != rows or int(ds.Columns) != cols:
            raise GeometryMismatchError(
                f"the labels are {rows}x{cols} per slice but the source DICOM images are "
                f"{int(ds.Rows)}x{int(ds.Columns)}; export onto the image the labels were drawn on"
            )
        by_pos.append((pos, ori, spacing, ds))
    ordered = []
    for z in range(labels.shape[0]):
        want = labels.index_to_physical([z, 0, 0])
        dists = [np.linalg.norm(p - want) for p, _, _, _ in by_pos]
        k = int(np.argmin(dists))
        if dists[k] > _POS_TOL_MM:
            raise GeometryMismatchError(
                f"label slice {z} lies at {np.round(want, 2).tolist()} mm but no source DICOM slice "
                f"is there (nearest {dists[k]:.2f} mm away); the labels are not on the source series' grid"
            )
        pos, ori, spacing, ds = by_pos[k]
        d = labels.direction_matrix
        if not (np.allclose(ori[:3], d[:, 0], atol=1e-4) and np.allclose(ori[3:], d[:, 1], atol=1e-4)):
            raise GeometryMismatchError("the labels' orientation differs from the source DICOM images'")
        if not np.allclose(spacing[::-1], labels.spacing[:2], atol=1e-4):
            raise GeometryMismatchError(
                f"the labels' pixel spacing {labels.spacing[:2]} differs from the source images' "
                f"{tuple(spacing[::-1])} (x, y mm)"
            )
        ordered.append(ds)
    return ordered


# ----------------------------------------------------------------- writing
# Patient and study attributes the SEG copies from its source (type 2: they must be present
# but may be empty). Anonymised series often drop them; highdicom reads each one from the
# source, so a missing one is added empty rather than refusing the export.
_TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                 "StudyID", "AccessionNumber", "ReferringPhysicianName")


def _sanitised(ds):
    """A copy of a source header with values highdicom rejects but DICOM tolerates fixed."""
    ds = copy.deepcopy(ds)
    if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
        del ds.SpecificCharacterSet  # empty = default repertoire
    for keyword in _TYPE2_COPIED:
        if keyword not in ds:
            setattr(ds, keyword, None)  # present and empty: what type 2 allows
    return ds


def _coded(code: Code):
    import highdicom as hd

    return hd.sr.CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def _segment_description(hd, number: int, label_id: int, table: LabelTable, version: str):
    """One SegmentDescription: name, colour, code (+ modifiers) and provenance of a label."""
    code = table.code_of(label_id)
    kind, name = table.algorithm_of(label_id)
    algorithm = None
    if kind != "MANUAL":
        from pydicom.sr.codedict import codes

        # DICOM requires an algorithm name for AUTOMATIC/SEMIAUTOMATIC segments.
        algorithm = hd.AlgorithmIdentificationSequence(
            name=(name or "napari-medseg")[:64], family=codes.DCM.ArtificialIntelligence, version=version)
    r, g, b, _ = table.color_of(label_id)
    desc = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=table.name_of(label_id)[:64],
        segmented_property_category=_coded(code.category),
        segmented_property_type=_coded(code.type),
        algorithm_type=getattr(hd.seg.SegmentAlgorithmTypeValues, kind),
        algorithm_identification=algorithm,
        tracking_id=f"napari-medseg label {label_id}",
        tracking_uid=hd.UID(),
        anatomic_regions=[_coded(code.region)] if code.region is not None else None,
        display_color=hd.color.CIELabColor.from_rgb(int(round(r * 255)), int(round(g * 255)), int(round(b * 255))),
    )
    # Modifiers sit inside the coded item they modify (PS3.3 C.8.20.2, C.10.21 "Left"/"Right").
    if code.modifier is not None:
        desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            _coded(code.modifier)]
    if code.region is not None and code.region_modifier is not None:
        desc.AnatomicRegionSequence[0].AnatomicRegionModifierSequence = [_coded(code.region_modifier)]
    return desc


def write_dicom_seg(labels: Volume, table: Optional[LabelTable], source: Any,
                    path: Union[str, os.PathLike], *, series_description: str = "napari-medseg segmentation",
                    content_creator: Optional[str] = None, segmentation_type: str = "binary") -> Path:
    """Write a label map as a DICOM-SEG referencing its source series (atomic).

    Parameters
    ----------
    labels : Volume
        Integer label map on the source series' grid.
    table : LabelTable, optional
        Segment names, colours, codes and provenance (unnamed ids become
        ``"label <id>"``, uncoded ones "Tissue", those without provenance ``MANUAL``).
    source : Volume, path or sequence
        The image Volume read from DICOM (its recorded files are used), the DICOM
        folder, a list of files or a list of pydicom datasets of the source series.
    path : path-like
        Output file (``.dcm``).
    segmentation_type : {"binary", "labelmap"}
        ``"binary"`` (default): a Segmentation Storage object, one bit mask per segment and
        slice, read by every SEG consumer. ``"labelmap"``: a Label Map Segmentation Storage
        object (SOP class 1.2.840.10008.5.1.4.1.1.66.7, DICOM 2024+), one frame per slice
        whose pixel values are segment numbers; smaller, but older viewers do not read it.

    Returns
    -------
    pathlib.Path
        The file; it holds one segment per label id present in ``labels``
        (:func:`segment_ids` lists them).
    """
    import highdicom as hd

    if not isinstance(labels, Volume):
        raise InvalidInputError(f"labels must be a Volume, got {type(labels).__name__}")
    arr = labels.array
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInputError(f"labels must hold integer ids, got dtype {arr.dtype}")
    kinds = {"binary": "BINARY", "labelmap": "LABELMAP"}
    if str(segmentation_type).lower() not in kinds:
        raise InvalidInputError(f"segmentation_type must be 'binary' or 'labelmap', got {segmentation_type!r}")
    seg_kind = getattr(hd.seg.SegmentationTypeValues, kinds[str(segmentation_type).lower()])
    ids = segment_ids(arr)
    if not ids:
        raise InvalidInputError("the label map is empty: a DICOM-SEG needs at least one labelled voxel")
    table = table or LabelTable.from_ids(ids)
    datasets = [_sanitised(ds) for ds in _order_sources(labels, _source_files(source))]

    # label-map style input (pixel value = segment number): one array the size of the
    # volume, not one mask per segment (117 TotalSegmentator classes would need 117x)
    seg_dtype = np.uint8 if len(ids) < 256 else np.uint16
    lut = np.zeros(int(max(ids)) + 1, dtype=seg_dtype)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=seg_dtype)
    stacked = lut[arr]
    descriptions = [_segment_description(hd, k, label_id, table, str(__version__))
                    for k, label_id in enumerate(ids, start=1)]
    try:
        with warnings.catch_warnings():
            # highdicom warns about oddities of the *source* headers (e.g. one-component
            # patient names); they are copied as they are and are not ours to fix.
            warnings.simplefilter("ignore", UserWarning)
            seg = hd.seg.Segmentation(
                source_images=datasets,
                pixel_array=stacked,
                segmentation_type=seg_kind,
                segment_descriptions=descriptions,
                series_instance_uid=hd.UID(),
                series_number=int(getattr(datasets[0], "SeriesNumber", 0) or 0) + 1000,
                sop_instance_uid=hd.UID(),
                instance_number=1,
                manufacturer="napari-medseg",
                manufacturer_model_name="napari-medseg",
                software_versions=str(__version__),
                device_serial_number="0",
                series_description=series_description,
                content_creator_name=content_creator,
                omit_empty_frames=True,
            )
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidInputError(f"cannot build the DICOM-SEG for {path}: {exc}") from None
    out = Path(path)
    with atomic_write(out) as tmp:
        seg.save_as(str(tmp))
    return out


def segment_ids(labels: Any) -> list:
    """The label ids a DICOM-SEG of ``labels`` holds, one segment each (non-zero ids present)."""
    arr = labels.array if isinstance(labels, Volume) else np.asarray(labels)
    return [int(i) for i in np.unique(arr) if i > 0]


# ----------------------------------------------------------------- reading
def _code_of(item, seq_name: str) -> Optional[Code]:
    seq = getattr(item, seq_name, None)
    if not seq:
        return None
    c = seq[0]
    try:
        return Code(str(c.CodingSchemeDesignator), str(c.CodeValue), str(c.CodeMeaning))
    except AttributeError:
        return None


def _segment_info(item) -> SegmentInfo:
    """Codes and provenance of one SegmentSequence item (what was written, read back)."""
    category = _code_of(item, "SegmentedPropertyCategoryCodeSequence")
    ptype = _code_of(item, "SegmentedPropertyTypeCodeSequence")
    code = None
    if category is not None and ptype is not None:
        type_item = item.SegmentedPropertyTypeCodeSequence[0]
        region_seq = getattr(item, "AnatomicRegionSequence", None)
        code = SegmentCode(
            category, ptype,
            modifier=_code_of(type_item, "SegmentedPropertyTypeModifierCodeSequence"),
            region=_code_of(item, "AnatomicRegionSequence"),
            region_modifier=_code_of(region_seq[0], "AnatomicRegionModifierSequence") if region_seq else None)
    kind = str(getattr(item, "SegmentAlgorithmType", "") or "").upper() or None
    name = str(getattr(item, "SegmentAlgorithmName", "") or "") or None
    if kind not in ("AUTOMATIC", "SEMIAUTOMATIC", "MANUAL"):
        kind, name = None, None
    return SegmentInfo(algorithm_type=kind, algorithm_name=name if kind != "MANUAL" else None, code=code)

def _seq_item(group, name):
    seq = getattr(group, name, None)
    return seq[0] if seq else None


def _frame_info(ds, path: Path) -> list:
    """(position, orientation, pixel spacing, segment number) of every frame."""
    shared = _seq_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None) or []
    n = int(getattr(ds, "NumberOfFrames", 1))
    if len(per_frame) != n:
        raise ImageReadError(f"{path}: the SEG lists {len(per_frame)} frame descriptions for {n} frames")

    def _get(frame, seq_name, attr):
        for group in (frame, shared):
            item = _seq_item(group, seq_name) if group is not None else None
            if item is not None and hasattr(item, attr):
                return getattr(item, attr)
        return None

    infos = []
    for i, frame in enumerate(per_frame):
        pos = _get(frame, "PlanePositionSequence", "ImagePositionPatient")
        ori = _get(frame, "PlaneOrientationSequence", "ImageOrientationPatient")
        sp = _get(frame, "PixelMeasuresSequence", "PixelSpacing")
        seg_no = _get(frame, "SegmentIdentificationSequence", "ReferencedSegmentNumber")
        if pos is None or ori is None or sp is None:
            raise ImageReadError(
                f"{path}: frame {i + 1} of the SEG has no position/orientation/pixel spacing, so where it "
                "lies is unknown; the file is incomplete (re-export it from the tool that made it)")
        infos.append((np.array([float(v) for v in pos]), np.array([float(v) for v in ori]),
                      np.array([float(v) for v in sp]), None if seg_no is None else int(seg_no)))
    return infos


def _grid_from_frames(ds, infos) -> Volume:
    ori = infos[0][1]
    row, col = ori[:3], ori[3:]
    normal = np.cross(row, col)
    dists = sorted({round(float(p @ normal), 4) for p, _, _, _ in infos})
    if len(dists) > 1:
        gaps = np.diff(dists)
        dz = float(np.min(gaps))
        shared = _seq_item(ds, "SharedFunctionalGroupsSequence")
        pm = _seq_item(shared, "PixelMeasuresSequence") if shared is not None else None
        sbs = getattr(pm, "SpacingBetweenSlices", None) if pm is not None else None
        if sbs is not None and float(sbs) > 0 and np.allclose(gaps / float(sbs), np.round(gaps / float(sbs)), atol=1e-3):
            dz = float(sbs)
    else:
        shared = _seq_item(ds, "SharedFunctionalGroupsSequence")
        pm = _seq_item(shared, "PixelMeasuresSequence") if shared is not None else None
        dz = float(getattr(pm, "SpacingBetweenSlices", 0) or getattr(pm, "SliceThickness", 1) or 1)
    first = min(infos, key=lambda f: f[0] @ normal)[0]
    nz = int(round((dists[-1] - dists[0]) / dz)) + 1
    sp = infos[0][2]
    direction = np.column_stack([row, col, normal]).ravel()
    return Volume(np.zeros((nz, int(ds.Rows), int(ds.Columns)), np.uint8),
                  spacing=(float(sp[1]), float(sp[0]), dz), origin=tuple(first), direction=tuple(direction))


def read_dicom_seg(path: Union[str, os.PathLike], reference: Optional[Volume] = None) -> tuple:
    """Read a DICOM-SEG into a label map.

    Parameters
    ----------
    path : path-like
        The SEG file.
    reference : Volume, optional
        The image to put the labels on (its grid must contain every frame). Without
        it the grid is built from the frames' positions.

    Returns
    -------
    (Volume, LabelTable)
        Integer labels (ids from our Tracking IDs, else the segment numbers) and
        segment names/colours. Where segments overlap, the higher segment wins.
    """
    import pydicom

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path} does not exist")
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(f"{path} is not a readable DICOM file: {exc}") from None
    if str(getattr(ds, "SOPClassUID", "")) not in SEG_SOP_CLASSES and getattr(ds, "Modality", "") != "SEG":
        raise UnsupportedFormatError(f"{path} is not a DICOM Segmentation (Modality {getattr(ds, 'Modality', '?')})")
    seg_type = str(getattr(ds, "SegmentationType", "BINARY")).upper()
    try:
        frames = ds.pixel_array
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(f"{path}: cannot decode the SEG frames: {exc}") from None
    if frames.ndim == 2:
        frames = frames[None]
    infos = _frame_info(ds, path)

    seg_to_id, entries, infos_by_id = {}, {}, {}
    for item in getattr(ds, "SegmentSequence", []):
        number = int(item.SegmentNumber)
        match = _TRACKING_RE.match(str(getattr(item, "TrackingID", "")))
        label_id = int(match.group(1)) if match else number
        seg_to_id[number] = label_id
        color = None
        lab = getattr(item, "RecommendedDisplayCIELabValue", None)
        if lab is not None:
            color = cielab_to_rgb(lab)
        entries[label_id] = (str(getattr(item, "SegmentLabel", f"segment {number}")), color)
        infos_by_id[label_id] = _segment_info(item)
    if not seg_to_id:
        raise ImageReadError(f"{path} describes no segments")

    grid = reference if reference is not None else _grid_from_frames(ds, infos)
    top = max(seg_to_id.values())
    dtype = np.uint8 if top < 256 else (np.uint16 if top < 65536 else np.uint32)
    out = np.zeros(grid.shape, dtype=dtype)
    dmat = grid.direction_matrix
    for i, (pos, ori, sp, seg_no) in enumerate(infos):
        if not (np.allclose(ori[:3], dmat[:, 0], atol=1e-4) and np.allclose(ori[3:], dmat[:, 1], atol=1e-4)):
            raise GeometryMismatchError(f"{path}: frame {i + 1} is not oriented like the reference image")
        if frames.shape[1:] != grid.shape[1:] or not np.allclose(sp[::-1], grid.spacing[:2], atol=1e-4):
            raise GeometryMismatchError(
                f"{path}: frames are {frames.shape[1]}x{frames.shape[2]} at {tuple(sp[::-1])} mm but the "
                f"reference slices are {grid.shape[1]}x{grid.shape[2]} at {grid.spacing[:2]} mm"
            )
        zyx = grid.physical_to_index(pos)
        z = int(round(float(zyx[0])))
        if abs(zyx[0] - z) * grid.spacing[2] > _POS_TOL_MM or np.abs(zyx[1:]).max() > 1e-2 or not 0 <= z < grid.shape[0]:
            raise GeometryMismatchError(
                f"{path}: frame {i + 1} at {np.round(pos, 2).tolist()} mm does not fall on a slice of the reference"
            )
        frame = frames[i]
        if seg_type == "LABELMAP":
            for number, label_id in seg_to_id.items():
                out[z][frame == number] = label_id
            continue
        if seg_type == "FRACTIONAL":
            maxv = float(getattr(ds, "MaximumFractionalValue", 255) or 255)
            mask = frame.astype(np.float32) / maxv >= 0.5
        else:
            mask = frame > 0
        if seg_no is None or seg_no not in seg_to_id:
            raise ImageReadError(f"{path}: frame {i + 1} refers to an undefined segment {seg_no}")
        out[z][mask] = seg_to_id[seg_no]
    meta = {"source_path": str(path), "format": "dicom-seg",
            "dicom_seg": {"SeriesInstanceUID": str(getattr(ds, "SeriesInstanceUID", "")),
                          "ReferencedSeriesInstanceUID": _referenced_series(ds)}}
    labels = Volume(out, spacing=grid.spacing, origin=grid.origin, direction=grid.direction, metadata=meta)
    table = LabelTable({k: v for k, v in sorted(entries.items())}, infos_by_id)
    return labels, table


def cielab_to_rgb(value: Any) -> tuple:
    """sRGB (0..1) of a DICOM-encoded CIELab value (PS3.3 C.10.7.1.1: L* 0..100 and a*/b*
    -128..127 scaled to 0..65535; D65 white), clipped to the sRGB gamut.

    Colours outside sRGB are legal in DICOM (dcmqi and other tools write them); they
    are clipped to the nearest displayable colour instead of failing.
    """
    enc = np.asarray([float(v) for v in value], dtype=float)
    L = enc[0] * 100.0 / 65535.0
    a = enc[1] * 255.0 / 65535.0 - 128.0
    b = enc[2] * 255.0 / 65535.0 - 128.0
    fy = (L + 16.0) / 116.0
    f = np.array([fy + a / 500.0, fy, fy - b / 200.0])
    delta = 6.0 / 29.0
    xyz = np.where(f > delta, f ** 3, 3 * delta ** 2 * (f - 4.0 / 29.0)) * np.array([0.95047, 1.0, 1.08883])
    m = np.array([[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560],
                  [0.0556434, -0.2040259, 1.0572252]])
    lin = np.clip(m @ xyz, 0.0, 1.0)
    rgb = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
    return tuple(float(round(c, 4)) for c in np.clip(rgb, 0.0, 1.0))


def _referenced_series(ds) -> Optional[str]:
    seq = getattr(ds, "ReferencedSeriesSequence", None)
    return str(seq[0].SeriesInstanceUID) if seq else None
