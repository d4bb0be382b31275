"""Per-label statistics: size, volume, image intensities, extent and centroid.

One function, :func:`label_statistics`, used by the Statistics widget, the
``medseg stats`` command and the exports, so all three always show the same numbers.

Work is proportional to the volume plus the labels' bounding boxes: voxel counts,
intensity sums and sums of squares come from one :func:`numpy.bincount` each over
the whole map; bounding boxes from one :func:`scipy.ndimage.find_objects` pass; min,
max and median from the label's own voxels inside its bounding box (a partial sort,
O(n)); the centroid from axis projections of the label mask inside its box (no
coordinate arrays the size of the volume).
"""

from __future__ import annotations

import csv
import io as _io
import json
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..errors import GeometryMismatchError, InvalidInputError

#: Column order of the CSV export (and of the Statistics widget's table).
CSV_COLUMNS = (
    "label", "name", "voxels", "volume_ml", "mean", "std", "min", "max", "median",
    "bbox_z0", "bbox_z1", "bbox_y0", "bbox_y1", "bbox_x0", "bbox_x1",
    "centroid_x_mm", "centroid_y_mm", "centroid_z_mm",
)

# Above this id find_objects' list (one entry per id up to the largest) would be
# wasteful: compact the ids first.
_DENSE_MAX_ID = 1 << 20


def _check_inputs(image, labels):
    from ..io.volume import Volume

    if not isinstance(labels, Volume):
        raise InvalidInputError(
            f"labels must be a Volume (array + geometry), got {type(labels).__name__}; "
            "wrap an array with Volume(array, spacing=...)"
        )
    lab = labels.array
    if lab.dtype == np.bool_ or not np.issubdtype(lab.dtype, np.integer):
        raise InvalidInputError(f"labels must hold integer ids, got dtype {lab.dtype}")
    if lab.size and lab.min() < 0:
        raise InvalidInputError(f"labels hold negative ids (min {int(lab.min())}); ids are >= 0")
    if image is not None:
        if not isinstance(image, Volume):
            raise InvalidInputError(f"image must be a Volume or None, got {type(image).__name__}")
        if image.shape != labels.shape:
            raise GeometryMismatchError(
                f"the labels have shape {labels.shape} but the image has {image.shape} (z, y, x); "
                "statistics need the labels on the image's voxel grid"
            )
        image.check_same_grid(labels, "labels")
        if not (np.issubdtype(image.array.dtype, np.integer) or np.issubdtype(image.array.dtype, np.floating)):
            raise InvalidInputError(f"the image must be numeric, got dtype {image.array.dtype}")


def label_statistics(image, labels, table=None, *, ids: Optional[Sequence[int]] = None,
                     bias_correct: bool = False, summary_only: bool = False) -> list:
    """Statistics of every label present in ``labels``.

    Parameters
    ----------
    image : Volume or None
        The intensity image (HU for CT) on the labels' grid; intensity columns are
        ``None`` without it.
    labels : Volume
        Integer label map with its geometry.
    table : LabelTable, optional
        Names; unnamed labels are called ``"label <id>"``.
    ids : sequence of int, optional
        Only these labels (absent ones are reported with 0 voxels).
    bias_correct : bool
        Intensity columns from the MR image's N4 bias-field corrected intensities
        (:func:`~napari_medseg.inference.bias_field.correct_bias_field`, cached per
        image); CT is refused.
    summary_only : bool
        Only ``voxels``, ``volume_ml``, ``mean`` and ``std`` (``bbox``, centroids, min,
        max and median stay None): what ``medseg batch --stats`` rows hold, in about half
        the time on a 512x512x300 CT.

    Returns
    -------
    list of dict
        One dict per label, ordered by id, with keys ``label``, ``name``, ``voxels``,
        ``volume_ml``, ``mean``, ``std`` (population, ddof=0), ``min``, ``max``,
        ``median`` (of the image inside the label), ``bbox`` (``[[z0, z1], [y0, y1],
        [x0, x1]]`` voxel index ranges, stop exclusive), ``centroid_zyx`` (voxel index)
        and ``centroid_xyz_mm`` (scanner coordinates via
        :meth:`~napari_medseg.io.volume.Volume.index_to_physical`).
    """
    from scipy import ndimage

    _check_inputs(image, labels)
    if bias_correct:
        if image is None:
            raise InvalidInputError("bias-field correction needs the image; none was given")
        from ..inference.bias_field import correct_bias_field

        image = correct_bias_field(image)
    lab = labels.array
    flat = lab.ravel()

    if flat.size == 0:
        return []
    top = int(flat.max())
    if top <= _DENSE_MAX_ID:
        compact, bin_of = lab, None  # bin index == label id
    else:
        # Huge ids (e.g. 10**9): give each id a small bin number (0 stays background).
        uniq, inv = np.unique(flat, return_inverse=True)
        shift = 0 if uniq[0] == 0 else 1
        compact = (inv.reshape(lab.shape) + shift).astype(np.int64)
        bin_of = {int(v): i + shift for i, v in enumerate(uniq)}
    # one find_objects pass gives every present label's box; the counts, sums and
    # order statistics are then taken inside each box only (a whole-volume bincount
    # casts the map to int64 first: 600 MB and most of the time on a 512x512x300 map)
    boxes = ndimage.find_objects(compact)
    present_ids = ([i + 1 for i, o in enumerate(boxes) if o is not None] if bin_of is None
                   else [v for v in bin_of if v != 0])
    wanted = present_ids if ids is None else [int(i) for i in ids]

    vox_ml = labels.voxel_volume_ml
    out = []
    for label_id in wanted:
        b = label_id if bin_of is None else bin_of.get(label_id)
        box = boxes[b - 1] if b is not None and 1 <= b <= len(boxes) else None
        mask = compact[box] == b if box is not None else None
        n = int(np.count_nonzero(mask)) if mask is not None else 0
        if label_id == 0:  # background asked for: its voxel count only
            n = int(lab.size - np.count_nonzero(lab))
        name = table.name_of(label_id) if table is not None else f"label {label_id}"
        row = {
            "label": label_id, "name": name, "voxels": n, "volume_ml": n * vox_ml,
            "mean": None, "std": None, "min": None, "max": None, "median": None,
            "bbox": None, "centroid_zyx": None, "centroid_xyz_mm": None,
        }
        if n == 0 or label_id == 0:
            out.append(row)
            continue
        if not summary_only:
            row["bbox"] = [[int(s.start), int(s.stop)] for s in box]
            centroid = []
            for ax in range(3):
                other = tuple(a for a in range(3) if a != ax)
                profile = mask.sum(axis=other, dtype=np.int64)
                coords = np.arange(box[ax].start, box[ax].stop, dtype=np.float64)
                centroid.append(float(profile @ coords) / n)
            row["centroid_zyx"] = centroid
            row["centroid_xyz_mm"] = [float(v) for v in labels.index_to_physical(centroid)]
        if image is not None:
            vals = image.array[box][mask]
            # float64 sums of the label's voxels; two-pass variance (no cancellation)
            mean = float(vals.sum(dtype=np.float64)) / n
            dev = vals.astype(np.float64)
            dev -= mean
            row["mean"] = mean
            row["std"] = float(np.sqrt(float(np.dot(dev, dev)) / n))
            del dev
            if not summary_only:
                row["min"] = float(vals.min())
                row["max"] = float(vals.max())
                row["median"] = float(np.median(vals))
        out.append(row)
    return out


def _csv_row(row: dict) -> list:
    bbox = row.get("bbox") or [[None, None]] * 3
    cen = row.get("centroid_xyz_mm") or [None] * 3
    values = [row["label"], row["name"], row["voxels"], row["volume_ml"], row["mean"], row["std"],
              row["min"], row["max"], row["median"],
              bbox[0][0], bbox[0][1], bbox[1][0], bbox[1][1], bbox[2][0], bbox[2][1], *cen]
    return ["" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in values]


def add_confidence_columns(stats: Sequence[dict], labels, max_prob, thresholds=None) -> list:
    """The statistics rows with the confidence columns of their structures.

    Each row gains ``CONFIDENCE_COLUMNS`` (mean confidence, fraction below the voxel
    threshold, boundary confidence, review flag) and ``reasons``, from
    :func:`~napari_medseg.analysis.confidence.summarise_confidence` of ``labels`` (array)
    and the confidence map ``max_prob`` on the same grid; the background row and ids
    absent from the labels get None.
    """
    from .confidence import CONFIDENCE_COLUMNS, summarise_confidence

    ids = [int(r["label"]) for r in stats if int(r["label"]) > 0]
    summary = {c.id: c for c in summarise_confidence(np.asarray(labels), max_prob,
                                                     thresholds=thresholds, ids=ids)}
    out = []
    for row in stats:
        c = summary.get(int(row["label"]))
        extra = {k: None if c is None else getattr(c, k) for k in CONFIDENCE_COLUMNS}
        extra["reasons"] = None if c is None else "; ".join(c.reasons)
        out.append(dict(row, **extra))
    return out


def to_csv_text(stats: Sequence[dict]) -> str:
    """The statistics as CSV text (header + one row per label; the confidence columns
    too when the rows have them: :func:`add_confidence_columns`)."""
    from .confidence import CONFIDENCE_COLUMNS

    conf = any("mean_confidence" in row for row in stats)
    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS + (CONFIDENCE_COLUMNS if conf else ()))
    for row in stats:
        extra = [row.get(k) for k in CONFIDENCE_COLUMNS] if conf else []
        writer.writerow(_csv_row(row) + ["" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)
                                         for v in extra])
    return buf.getvalue()


def to_csv(stats: Sequence[dict], path: Union[str, Path]) -> Path:
    """Write the statistics as CSV, atomically (a failed write leaves the old file)."""
    from ..io.atomic import atomic_write_text

    return atomic_write_text(path, to_csv_text(stats))


def to_json_text(stats: Sequence[dict]) -> str:
    """The statistics as a JSON list of objects."""
    return json.dumps(list(stats), indent=2)
