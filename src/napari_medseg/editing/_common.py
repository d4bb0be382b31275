"""Validation and region helpers shared by the editing operations.

Every editing operation is a pure function ``op(labels, spacing_zyx, ...) -> new array``.
This module holds what they all need: checking the inputs (integer 3D label map,
positive spacing, labels that exist), choosing the labels an operation applies to,
restricting work to one slice, and splitting labels into independent boxes so that the
expensive :mod:`scipy.ndimage` calls only ever see the region that matters (the box and
footprint primitives themselves live in :mod:`napari_medseg._ndimage`).
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np

# bbox, ellipsoid and mm_to_voxels are re-exported for the editing modules
from .._ndimage import bbox, ellipsoid, grow_box, label_boxes, mm_to_voxels  # noqa: F401
from ..errors import InvalidInputError
from ..io.arrays import present_ids

#: The largest label id we hand out when adding labels (fits any signed 32-bit map).
MAX_LABEL_ID = 2**31 - 1


def check_labels(labels: np.ndarray, what: str = "label map") -> np.ndarray:
    """Return ``labels`` as an ndarray after checking it is a 3D integer label map.

    Raises
    ------
    InvalidInputError
        When the array is not 3D, not integer-typed (floats and bools are refused so
        that a probability map is never silently truncated) or holds negative ids.
    """
    arr = np.asarray(labels)
    if arr.ndim != 3:
        raise InvalidInputError(
            f"the {what} must be 3D (z, y, x); got an array of shape {arr.shape}"
        )
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInputError(
            f"the {what} must hold integer label ids, got dtype {arr.dtype}; "
            "convert it (e.g. threshold a probability map) before editing"
        )
    if arr.size and np.issubdtype(arr.dtype, np.signedinteger) and arr.min() < 0:
        raise InvalidInputError(
            f"the {what} holds negative ids (min {int(arr.min())}); label ids are >= 0"
        )
    return arr


def check_spacing(spacing_zyx: Sequence[float]) -> tuple:
    """Return spacing (z, y, x) as a float tuple, checking three positive finite values."""
    try:
        sp = tuple(float(s) for s in spacing_zyx)
    except (TypeError, ValueError):
        raise InvalidInputError(f"spacing must be three numbers (z, y, x mm), got {spacing_zyx!r}") from None
    if len(sp) != 3 or not all(np.isfinite(s) and s > 0 for s in sp):
        raise InvalidInputError(
            f"spacing must be three positive finite numbers (z, y, x mm), got {spacing_zyx!r}"
        )
    return sp


def check_size(value: float, what: str, *, allow_zero: bool = True) -> float:
    """Check a size (mm, mL) is a finite number >= 0 (or > 0)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidInputError(f"{what} must be a finite number {bound}, got {value!r}")
    return v


def check_label_id(value, what: str = "label") -> int:
    """Check ``value`` is a positive integer label id (0 is the background)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise InvalidInputError(f"{what} must be an integer id, got {value!r}")
    value = int(value)
    if value <= 0 or value > MAX_LABEL_ID:
        raise InvalidInputError(
            f"{what} must be a positive id (0 is the background), got {value}"
        )
    return value


def select_ids(labels: np.ndarray, label: Optional[int | Iterable[int]]) -> list:
    """Labels an operation applies to: ``None`` means every label present.

    Raises
    ------
    InvalidInputError
        When a requested label does not occur in the map (so that a typo never turns
        into a silent no-op).
    """
    if label is None:
        return present_ids(labels)
    wanted = [label] if isinstance(label, (int, np.integer, float, bool, np.bool_)) else list(label)
    ids = [check_label_id(v) for v in wanted]
    # one comparison per requested id is cheaper than listing every id present
    missing = [i for i in ids if i > labels.max(initial=0) or not (labels == i).any()]
    if missing:
        present = set(present_ids(labels))
        shown = sorted(present)[:20]
        raise InvalidInputError(
            f"label {missing[0] if len(missing) == 1 else missing} is not present in the label map "
            f"(present: {shown}{' ...' if len(present) > 20 else ''})"
        )
    return ids


def plane(axis: Optional[int], index: Optional[int], shape: Sequence[int]) -> Optional[tuple]:
    """The index tuple of one slice ``(axis, index)`` or ``None`` for the whole volume."""
    if axis is None and index is None:
        return None
    if axis is None or index is None:
        raise InvalidInputError("a single-slice edit needs both axis and index")
    if isinstance(axis, bool) or int(axis) != axis or not 0 <= int(axis) < 3:
        raise InvalidInputError(f"axis must be 0, 1 or 2 (z, y, x), got {axis!r}")
    axis = int(axis)
    if isinstance(index, bool) or int(index) != index or not 0 <= int(index) < shape[axis]:
        raise InvalidInputError(
            f"slice index {index!r} is outside 0..{shape[axis] - 1} along axis {axis}"
        )
    key = [slice(None)] * 3
    key[axis] = slice(int(index), int(index) + 1)
    return tuple(key)


def voxel_volume_ml(spacing: Sequence[float]) -> float:
    """Volume of one voxel in millilitres (mm^3 / 1000)."""
    return float(np.prod(spacing)) / 1000.0


def result_dtype(labels: np.ndarray, max_id: int) -> np.dtype:
    """The label map's dtype, or a wider unsigned/signed one if ``max_id`` does not fit."""
    info = np.iinfo(labels.dtype)
    if max_id <= info.max:
        return labels.dtype
    for cand in (np.uint16, np.int32, np.int64) if info.min == 0 else (np.int32, np.int64):
        if max_id <= np.iinfo(cand).max:
            return np.dtype(cand)
    return np.dtype(np.int64)  # pragma: no cover


def work_region(out: np.ndarray, spacing: Sequence[float], axis: Optional[int], index: Optional[int]):
    """A writable view of ``out`` that an edit works on, and the matching spacing.

    The whole volume, or (``axis``, ``index`` given) one slice as a 2D view with the
    in-plane spacing. Working in 2D on a slice matters: a 1-voxel-thick 3D slab would
    make every voxel touch the array border (no hole could ever be filled).
    """
    key = plane(axis, index, out.shape)
    if key is None:
        return out, tuple(spacing)
    axis = int(axis)
    view_key = [slice(None)] * 3
    view_key[axis] = int(index)
    sp = tuple(s for a, s in enumerate(spacing) if a != axis)
    return out[tuple(view_key)], sp


def prepare_boxes(labels, spacing_zyx, label, axis=None, index=None):
    """:func:`prepare`, with the bounding boxes of the labels to edit in ``view``.

    Returns ``(out, view, spacing_view, boxes)``, ``boxes`` = {id: box} for the
    selected labels present in ``view``. Every label (``label=None``) costs one
    ``find_objects`` pass for both the ids and their boxes (on a 512 x 512 x 300 map
    that pass is half a second, and used to be made twice).
    """
    if label is not None:
        out, view, sp_view, ids = prepare(labels, spacing_zyx, label, axis, index)
        return out, view, sp_view, label_boxes(view, ids)
    out, view, sp_view = _copy_and_view(labels, spacing_zyx, axis, index)
    boxes = label_boxes(view)
    if boxes is None:
        boxes = label_boxes(view, present_ids(view))
    return out, view, sp_view, boxes


def _copy_and_view(labels, spacing_zyx, axis, index) -> tuple:
    """Validated copy of ``labels`` (the result), the part an edit may touch, its spacing."""
    arr = check_labels(labels)
    sp = check_spacing(spacing_zyx)
    out = arr.copy()
    view, sp_view = work_region(out, sp, axis, index)
    return out, view, sp_view


def prepare(labels, spacing_zyx, label, axis=None, index=None):
    """Common start of an edit: validate, copy, pick the region and the label ids.

    Returns ``(out, view, spacing_view, ids)`` where ``out`` is a fresh copy of the
    labels (the result) and ``view`` is the part of it the edit may touch.
    """
    ids = select_ids(check_labels(labels), label)
    out, view, sp_view = _copy_and_view(labels, spacing_zyx, axis, index)
    return out, view, sp_view, ids


def distance_to(mask: np.ndarray, spacing: Sequence[float], threads: Optional[int] = None) -> np.ndarray:
    """Euclidean distance (mm, float32) from every voxel to the nearest voxel of ``mask``.

    Exact (Maurer's linear-time algorithm, SimpleITK; ~5x faster than
    :func:`scipy.ndimage.distance_transform_edt`, which builds the full feature
    transform). Voxels of ``mask`` get 0; an empty mask gives ``inf`` everywhere.
    Works for 2D and 3D arrays; ``spacing`` in array order. ``threads``: SimpleITK
    threads for this call (None: its default); callers that run many small
    transforms side by side pass 1 (SimpleITK releases the GIL while it works).
    """
    import SimpleITK as sitk

    if not mask.any():
        return np.full(mask.shape, np.inf, dtype=np.float32)
    if mask.all():
        return np.zeros(mask.shape, dtype=np.float32)
    image = sitk.GetImageFromArray(np.ascontiguousarray(mask, dtype=np.uint8))
    image.SetSpacing(tuple(float(s) for s in reversed(tuple(spacing))))
    edt = sitk.SignedMaurerDistanceMapImageFilter()
    edt.SetInsideIsPositive(False)
    edt.SetSquaredDistance(False)
    edt.SetUseImageSpacing(True)
    edt.SetBackgroundValue(0)
    if threads:
        edt.SetNumberOfThreads(int(threads))
    dist = edt.Execute(image)
    out = sitk.GetArrayFromImage(dist).astype(np.float32, copy=False)
    np.maximum(out, 0.0, out=out)
    return out


#: Below this many voxels a label's bounding box is processed in one piece.
CLUSTER_MIN_VOXELS = 2_000_000
#: At most this many independent boxes per label (each box has a fixed overhead).
MAX_PIECES = 64


#: Coarse-grid cells of :func:`clustered_boxes` aim at about this many cells.
CLUSTER_CELLS = 2**18


def _cell_size(mask: np.ndarray) -> int:
    """Cell edge (voxels) giving about CLUSTER_CELLS cells; 1 for small masks."""
    return int(np.clip(round((mask.size / CLUSTER_CELLS) ** (1.0 / mask.ndim)), 1, 8))


def _block_any(mask: np.ndarray, block: int) -> np.ndarray:
    """Whether each ``block``-voxel cell (edge cells may be smaller) holds a True voxel."""
    out = mask
    if block == 1:
        return out
    for axis in range(mask.ndim):
        out = np.logical_or.reduceat(out, np.arange(0, out.shape[axis], block), axis=axis)
    return out


def clustered_boxes(mask: np.ndarray, pad: Sequence[int]) -> list:
    """Boxes covering ``mask`` that can be processed independently by a radius-``pad`` op.

    Each connected component's bounding box is grown by ``pad`` voxels; boxes that
    overlap are merged (repeatedly) into their common bounding box. Two final boxes
    are then farther apart than ``pad`` along some axis, so an operation whose reach
    is at most ``pad`` voxels (a margin, a smoothing kernel) gives the same result
    box by box as on the whole array. Scattered islands thus cost their own small
    boxes instead of the whole volume. Falls back to the one grown bounding box when
    the pieces would not be much smaller.
    """
    from scipy import ndimage
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    whole = bbox(mask, pad)
    if whole is None:
        return []
    whole_size = int(np.prod([s.stop - s.start for s in whole]))
    if whole_size < CLUSTER_MIN_VOXELS:
        return [whole]
    # Components of a coarse occupancy grid (a cell is occupied when any of its voxels
    # is): labelling the full-resolution mask of a large label (a body outline) cost
    # seconds, the grid a few milliseconds. Cell boxes contain the voxel boxes, so the
    # pieces still cover every voxel with its pad; islands closer than a cell merge.
    block = _cell_size(mask)
    occupied = _block_any(mask, block)
    comp, n = ndimage.label(occupied, structure=np.ones((3,) * mask.ndim, bool))
    if n <= 1:
        return [whole]
    objs = ndimage.find_objects(comp)
    del comp
    pad = np.asarray(pad, dtype=np.int64)
    shape = np.asarray(mask.shape)
    lo = np.array([[s.start * block for s in o] for o in objs]) - pad
    hi = np.minimum(np.array([[s.stop * block for s in o] for o in objs]), shape) + pad
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, shape)
    if len(lo) > MAX_PIECES:
        # Many islands: per-box overhead would dominate. Group them by a coarse grid
        # cell (of the box centres) first; the overlap merge below keeps it exact.
        cells = max(1, int(round(MAX_PIECES ** (1.0 / mask.ndim))))
        centre = (lo + hi) / 2.0
        cell = np.minimum((centre / shape * cells).astype(np.int64), cells - 1)
        key = np.ravel_multi_index(cell.T, (cells,) * mask.ndim)
        _, groups = np.unique(key, return_inverse=True)
        k = int(groups.max()) + 1
        new_lo = np.full((k, mask.ndim), np.iinfo(np.int64).max)
        new_hi = np.zeros((k, mask.ndim), dtype=np.int64)
        np.minimum.at(new_lo, groups, lo)
        np.maximum.at(new_hi, groups, hi)
        lo, hi = new_lo, new_hi
    while True:
        overlap = np.all((lo[:, None, :] < hi[None, :, :]) & (lo[None, :, :] < hi[:, None, :]), axis=2)
        k, groups = connected_components(csr_matrix(overlap), directed=False)
        if k == len(lo):
            break
        new_lo = np.full((k, mask.ndim), np.iinfo(np.int64).max)
        new_hi = np.zeros((k, mask.ndim), dtype=np.int64)
        np.minimum.at(new_lo, groups, lo)
        np.maximum.at(new_hi, groups, hi)
        lo, hi = new_lo, new_hi
        if k == 1:
            break
    sizes = np.prod(hi - lo, axis=1)
    if sizes.sum() > 0.7 * whole_size:
        return [whole]
    return [tuple(slice(int(a), int(b)) for a, b in zip(l, h)) for l, h in zip(lo, hi)]


def label_pieces(original: np.ndarray, lab_id: int, box: tuple, pad: Sequence[int]) -> list:
    """Independent boxes (in ``original``'s indices) to process label ``lab_id`` in.

    ``box`` is the label's bounding box; the result covers it grown by ``pad`` voxels,
    split by :func:`clustered_boxes` so that distant islands are processed apart.
    """
    outer = grow_box(box, pad, original.shape)
    pieces = clustered_boxes(original[outer] == lab_id, pad)
    return [tuple(slice(o.start + p.start, o.start + p.stop) for o, p in zip(outer, piece)) for piece in pieces]
