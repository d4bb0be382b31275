"""Resampling that reproduces nnU-Net's ``resample_data_or_seg``, fast.

nnU-Net resamples with ``skimage.transform.resize(order, mode="edge",
anti_aliasing=False)``, i.e. ``scipy.ndimage.zoom(..., mode="nearest",
grid_mode=True)`` followed by clipping to the input's range, one channel at a time
in float64 (and, with an anisotropic spacing, slice by slice in-plane and nearest
neighbour along the out-of-plane axis).

``zoom`` is linear and separable: prefiltering is a per-axis recursive filter, and
interpolation is a tensor product of per-axis B-spline weights. So each axis is a
fixed matrix ``M`` (n_out x n_in) that we obtain *exactly* by zooming the unit
vectors with SciPy itself (same order, mode and grid), keep only its band (the
prefilter's weights decay like 0.268**k; entries below 1e-12 of the row's
largest are dropped) and apply in float32 with torch, block by block. For
order <= 1 a row has at most two taps and the matrix becomes two gathers.

:func:`resample_logits_to_labels` resamples the network's class scores to the
original grid in slabs and takes the argmax of each slab at once, so the
full-resolution (classes x voxels) array that nnU-Net materialises never exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence

import numpy as np

__all__ = [
    "ANISO_THRESHOLD",
    "compute_new_shape",
    "determine_separate_z",
    "zoom_matrix",
    "resample_like_nnunet",
    "resample_logits_to_labels",
    "class_argmax",
    "class_confidence",
    "ConfidenceMaps",
]

#: nnU-Net's ``ANISO_THRESHOLD``: above this spacing ratio an axis is resampled apart.
ANISO_THRESHOLD = 3

_BAND_RTOL = 1e-12


def compute_new_shape(old_shape: Sequence[int], old_spacing: Sequence[float],
                      new_spacing: Sequence[float]) -> tuple:
    """nnU-Net's shape rule: ``round(old_spacing / new_spacing * old_shape)`` per axis."""
    return tuple(int(round(i / j * k)) for i, j, k in zip(old_spacing, new_spacing, old_shape))


def _lowres_axis(spacing: Sequence[float]) -> np.ndarray:
    spacing = np.asarray(spacing, dtype=float)
    return np.where(max(spacing) / spacing == 1)[0]


def determine_separate_z(force_separate_z: Optional[bool], current_spacing: Sequence[float],
                         new_spacing: Sequence[float],
                         threshold: float = ANISO_THRESHOLD) -> tuple:
    """Replicates ``determine_do_sep_z_and_axis``: ``(do_separate_z, axis or None)``."""
    def aniso(sp):
        return (np.max(sp) / np.min(sp)) > threshold

    if force_separate_z is not None:
        do_sep = bool(force_separate_z)
        axis = _lowres_axis(current_spacing) if do_sep else None
    elif aniso(current_spacing):
        do_sep, axis = True, _lowres_axis(current_spacing)
    elif aniso(new_spacing):
        do_sep, axis = True, _lowres_axis(new_spacing)
    else:
        do_sep, axis = False, None
    if axis is not None:
        if len(axis) != 1:
            return False, None
        axis = int(axis[0])
    return do_sep, axis


@lru_cache(maxsize=64)
def zoom_matrix(n_in: int, n_out: int, order: int) -> np.ndarray:
    """The exact (n_out, n_in) float64 matrix of skimage/SciPy's 1D resize.

    Column ``i`` is ``ndimage.zoom(e_i, n_out / n_in, order, mode="nearest",
    grid_mode=True)``, the operation skimage's ``resize`` performs per axis.
    """
    from scipy import ndimage

    if n_in == n_out:
        return np.eye(n_in)
    factor = 1.0 / (n_in / n_out)  # skimage: zoom = 1 / (input / output)
    mat = np.empty((n_out, n_in))
    basis = np.zeros(n_in)
    for i in range(n_in):
        basis[:] = 0.0
        basis[i] = 1.0
        col = ndimage.zoom(basis, factor, order=order, mode="nearest", grid_mode=True)
        if col.shape[0] != n_out:  # pragma: no cover - SciPy's rounding rule changed
            raise RuntimeError(f"zoom of {n_in} by {factor} gave {col.shape[0]} samples, not {n_out}")
        mat[:, i] = col
    return mat


@lru_cache(maxsize=64)
def _banded(n_in: int, n_out: int, order: int) -> tuple:
    """(matrix, first, last): the zoom matrix and each row's band [first, last)."""
    mat = zoom_matrix(n_in, n_out, order)
    absm = np.abs(mat)
    keep = absm > _BAND_RTOL * absm.max(axis=1, keepdims=True)
    first = keep.argmax(axis=1)
    last = n_in - keep[:, ::-1].argmax(axis=1)
    return mat, first, last


def _apply_axis(x, axis: int, n_out: int, order: int, out_rows: Optional[slice] = None):
    """Resample torch tensor ``x`` along ``axis`` to ``n_out`` samples (or rows ``out_rows``).

    ``x`` holds the whole input extent along ``axis``. Returns float32.
    """
    import torch

    n_in = x.shape[axis]
    rows = out_rows if out_rows is not None else slice(0, n_out)
    if n_in == n_out:
        return x.narrow(axis, rows.start, rows.stop - rows.start)
    mat, first, last = _banded(n_in, n_out, order)
    mat, first, last = mat[rows], first[rows], last[rows]
    width = int((last - first).max())
    if width <= 2:
        # order 0/1: at most two taps per output sample -> two gathers and a blend
        i0 = torch.from_numpy(first.astype(np.int64))
        i1 = torch.from_numpy(np.minimum(first + 1, n_in - 1).astype(np.int64))
        r = np.arange(len(first))
        w0 = mat[r, first]
        w1 = np.where(last - first > 1, mat[r, np.minimum(first + 1, n_in - 1)], 0.0)
        shape = [1] * x.dim()
        shape[axis] = len(first)
        a = torch.from_numpy(w0.astype(np.float32)).reshape(shape)
        out = x.index_select(axis, i0) * a
        if np.any(w1 != 0):
            b = torch.from_numpy(w1.astype(np.float32)).reshape(shape)
            out += x.index_select(axis, i1) * b
        return out
    # higher orders: block-banded matrix product along the axis
    xm = x.movedim(axis, -1)
    pieces = []
    block = 64
    for b0 in range(0, len(first), block):
        b1 = min(b0 + block, len(first))
        lo, hi = int(first[b0:b1].min()), int(last[b0:b1].max())
        m = torch.from_numpy(np.ascontiguousarray(mat[b0:b1, lo:hi].T, dtype=np.float32))
        pieces.append(torch.matmul(xm[..., lo:hi].float(), m))
    return torch.cat(pieces, dim=-1).movedim(-1, axis)


def _resample_channel_block(x, new_shape: Sequence[int], order: int, sep_axis: Optional[int],
                            order_z: int, out_rows: slice):
    """Resample (C, Z, Y, X) float32 torch ``x`` to rows ``out_rows`` of axis 0 of ``new_shape``.

    Returns ``(values, clip_lo, clip_hi)``; clipping bounds are per channel (3D
    resize) or per channel and slice of the separate axis, as skimage clips each
    call's output to that call's input range.
    """
    import torch

    if sep_axis is None:
        y = _apply_axis(x, 1, new_shape[0], order, out_rows)
        y = _apply_axis(y, 2, new_shape[1], order)
        y = _apply_axis(y, 3, new_shape[2], order)
        return y
    # separate axis: in-plane resize (order) slice by slice, then nearest along the axis
    t = sep_axis + 1
    inplane = [a for a in (1, 2, 3) if a != t]
    n_sep_in = x.shape[t]
    if sep_axis == 0:
        idx = _nearest_index(n_sep_in, new_shape[0], order_z)[out_rows]
        uniq, inv = np.unique(idx, return_inverse=True)
        sub = x.index_select(1, torch.from_numpy(uniq.astype(np.int64)))
        lo = sub.amin(dim=(2, 3), keepdim=True).float()
        hi = sub.amax(dim=(2, 3), keepdim=True).float()
        y = _apply_axis(sub, 2, new_shape[1], order)
        y = _apply_axis(y, 3, new_shape[2], order)
        y = torch.maximum(torch.minimum(y, hi), lo)
        return y.index_select(1, torch.from_numpy(inv.astype(np.int64)))
    # separate axis is y or x: rows of axis 0 are in-plane
    lo = x.amin(dim=tuple(inplane), keepdim=True).float()
    hi = x.amax(dim=tuple(inplane), keepdim=True).float()
    y = _apply_axis(x, 1, new_shape[0], order, out_rows)
    other = inplane[1]
    y = _apply_axis(y, other, new_shape[other - 1], order)
    y = torch.maximum(torch.minimum(y, hi), lo)
    idx = _nearest_index(n_sep_in, new_shape[sep_axis], order_z)
    return y.index_select(t, torch.from_numpy(idx.astype(np.int64)))


@lru_cache(maxsize=32)
def _nearest_index(n_in: int, n_out: int, order_z: int) -> np.ndarray:
    """Input index of each output sample along the separate axis (nnU-Net's map_coordinates)."""
    from scipy import ndimage

    if n_in == n_out:
        return np.arange(n_in)
    if order_z != 0:
        raise NotImplementedError("order_z > 0 along the separate axis is not supported")
    scale = float(n_in) / n_out
    coords = scale * (np.arange(n_out) + 0.5) - 0.5
    return ndimage.map_coordinates(np.arange(n_in, dtype=float), coords[None], order=0,
                                   mode="nearest").astype(np.int64)


def _plan(shape_in, new_shape, current_spacing, new_spacing, order, order_z, force_separate_z,
          threshold):
    do_sep, axis = determine_separate_z(force_separate_z, current_spacing, new_spacing, threshold)
    if do_sep and axis is None:  # pragma: no cover - nnU-Net asserts here too
        raise ValueError("separate-z resampling needs an anisotropic axis")
    sep_axis = axis if do_sep else None
    if sep_axis is not None and order_z != 0:
        raise NotImplementedError("order_z > 0 along the separate axis is not supported")
    return sep_axis


def resample_like_nnunet(data: np.ndarray, new_shape: Sequence[int], current_spacing: Sequence[float],
                         new_spacing: Sequence[float], *, order: int = 3, order_z: int = 0,
                         force_separate_z: Optional[bool] = None,
                         separate_z_anisotropy_threshold: float = ANISO_THRESHOLD) -> np.ndarray:
    """Resample (C, Z, Y, X) data like ``resample_data_or_seg_to_shape(is_seg=False)``.

    B-spline of ``order`` with nnU-Net's separate-z rule and clipping to the input's
    range; the plain trilinear resampling of the prompt sessions and the liver cascade
    is :func:`napari_medseg._ndimage.resample_linear`.

    Returns float32. The input is returned unchanged (as float32) when the shape
    already matches, as nnU-Net does.
    """
    import torch

    data = np.asarray(data)
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(data.shape[1:]) == new_shape:
        return data.astype(np.float32, copy=False)
    sep_axis = _plan(data.shape[1:], new_shape, current_spacing, new_spacing, order, order_z,
                     force_separate_z, separate_z_anisotropy_threshold)
    x = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
    out = np.empty((data.shape[0], *new_shape), dtype=np.float32)
    if sep_axis is None:
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
    for r0, r1 in _row_chunks(new_shape, data.shape[0]):
        y = _resample_channel_block(x, new_shape, order, sep_axis, order_z, slice(r0, r1))
        if sep_axis is None:
            y = torch.maximum(torch.minimum(y, hi), lo)
        out[:, r0:r1] = y.numpy()
    return out


def _row_chunks(new_shape: Sequence[int], n_channels: int, budget_bytes: int = 192 * 2**20):
    plane = int(np.prod(new_shape[1:])) * max(1, n_channels) * 4 * 3  # a few temporaries
    rows = max(1, min(int(new_shape[0]), budget_bytes // max(plane, 1)))
    for r0 in range(0, int(new_shape[0]), rows):
        yield r0, min(r0 + rows, int(new_shape[0]))


def class_argmax(scores, return_max: bool = False):
    """``scores.argmax(0)`` of (C, ...) class scores, as the smallest unsigned dtype.

    A running maximum over the classes: every step reads one contiguous class
    image, where ``argmax(0)`` strides across all C images for every voxel (about
    twice as slow for 118 classes). Ties go to the lowest class id, as in
    ``argmax``. float16 scores are compared in float32, one class at a time.
    ``return_max``: also return the running maximum (float32), which
    :func:`class_confidence` reuses.
    """
    import torch

    n = scores.shape[0]
    dtype = torch.uint8 if n <= 256 else torch.int32
    best = scores[0].float().clone()
    index = torch.zeros(best.shape, dtype=dtype)
    for c in range(1, n):
        value = scores[c].float()
        better = value > best
        index.masked_fill_(better, c)
        torch.maximum(best, value, out=best)
    return (index, best) if return_max else index


def class_confidence(scores, best, temperature: float = 1.0) -> tuple:
    """Maximum softmax probability and normalised entropy of (C, ...) class scores.

    Streams over the classes (one class image at a time, as :func:`class_argmax`),
    so no (C, ...) float32 probability array is made: with ``z = scores / T``,
    ``m = max_c z_c`` (``best / T``), ``s = sum_c exp(z_c - m)`` and
    ``t = sum_c (z_c - m) exp(z_c - m)``, the largest probability is ``1 / s`` and
    the entropy ``-sum p log p = log s - t / s``, divided by ``log C`` so that 0
    means one class holds all the probability and 1 means every class is equally
    likely.

    Parameters
    ----------
    scores : torch.Tensor
        (C, ...) class scores (logits), float16 or float32.
    best : torch.Tensor
        Their maximum over the classes (``class_argmax(scores, return_max=True)[1]``).
    temperature : float
        Softmax temperature (> 0); 1 is the network's own softmax. It never changes
        the argmax.

    Returns
    -------
    (max_prob, entropy) : tuple of torch.Tensor
        float32, the shape of ``best``.
    """
    import torch

    n = scores.shape[0]
    inv_t = 1.0 / float(temperature)
    m = best * inv_t
    s = torch.zeros_like(m)
    t = torch.zeros_like(m)
    for c in range(n):
        d = scores[c].to(torch.float32, copy=True)  # a copy: the scores stay untouched
        d.mul_(inv_t).sub_(m)  # z_c - m <= 0
        e = torch.exp(d)
        s.add_(e)
        t.add_(d.mul_(e))
    max_prob = torch.reciprocal(s)
    entropy = torch.log(s).sub_(t.mul_(max_prob))
    if n > 1:
        entropy.mul_(1.0 / float(np.log(n))).clamp_(0.0, 1.0)
    else:
        entropy.zero_()
    return max_prob, entropy


@dataclass
class ConfidenceMaps:
    """How sure an automatic segmentation is, voxel by voxel, on the image's grid.

    Computed from the network's class scores while they are turned into labels
    (:func:`resample_logits_to_labels` with ``confidence=True``). These are the
    model's own probabilities, not a measured accuracy: a confident model can be
    confidently wrong (an unseen scanner, a pathology it never saw).

    Attributes
    ----------
    max_prob : numpy.ndarray
        float32, the softmax probability of the chosen class, in [1/C, 1]
        (1 outside the region the model looked at, where the label is background).
    entropy : numpy.ndarray
        float32, the normalised entropy of the class probabilities in [0, 1]
        (0: certain; 1: all classes equally likely).
    fold_disagreement : numpy.ndarray or None
        float32, for a fold ensemble: the fraction of folds whose own label differs
        from the ensemble's (computed on the network's grid, resampled linearly);
        None for a single fold.
    temperature : float
        The softmax temperature used (1: none).
    n_classes, n_folds : int
        What the scores came from.
    """

    max_prob: np.ndarray
    entropy: np.ndarray
    fold_disagreement: Optional[np.ndarray] = None
    temperature: float = 1.0
    n_classes: int = 0
    n_folds: int = 1

    def map(self, measure: str = "max_prob") -> np.ndarray:
        """One map by name: ``max_prob``, ``entropy`` or ``fold_disagreement``."""
        if measure not in ("max_prob", "entropy", "fold_disagreement"):
            raise ValueError(f"unknown confidence measure {measure!r}; use max_prob, entropy or "
                             "fold_disagreement")
        out = getattr(self, measure)
        if out is None:
            raise ValueError("fold_disagreement needs a fold ensemble (this model ran one fold)")
        return out

    def transformed(self, fn) -> "ConfidenceMaps":
        """The same maps with ``fn(array)`` applied to each (crop, paste, transpose)."""
        return ConfidenceMaps(
            fn(self.max_prob), fn(self.entropy),
            None if self.fold_disagreement is None else fn(self.fold_disagreement),
            self.temperature, self.n_classes, self.n_folds)


def resample_logits_to_labels(logits, new_shape: Sequence[int], current_spacing: Sequence[float],
                              new_spacing: Sequence[float], *, order: int = 1, order_z: int = 0,
                              force_separate_z: Optional[bool] = None,
                              separate_z_anisotropy_threshold: float = ANISO_THRESHOLD,
                              out_dtype=np.uint8, round_fp16: bool = False, progress=None,
                              cancel=None, confidence: bool = False, temperature: float = 1.0):
    """Resample class scores (C, Z, Y, X) to ``new_shape`` and take the argmax, slab by slab.

    Equivalent to nnU-Net's ``resampling_fn_probabilities`` followed by
    ``argmax(0)``, without holding the full-resolution class scores.
    ``round_fp16`` rounds the resampled scores to float16 before the argmax, as
    nnU-Net stores them (so ties are broken the same way: lowest class id).

    ``confidence=True`` also computes, from the same slab of resampled scores, the
    maximum softmax probability and the normalised entropy (:func:`class_confidence`,
    with ``temperature``), which equal those of nnU-Net's saved probabilities
    (softmax of the resampled scores); the labels are the same either way. Returns
    ``(labels, max_prob, entropy)`` then (float32 maps of ``new_shape``).
    """
    import torch

    from ..progress import check_cancel, report

    # float16 scores stay float16 (converted slab by slab): no full-size float32 copy
    x = logits if isinstance(logits, torch.Tensor) else torch.from_numpy(np.asarray(logits))
    if x.dtype not in (torch.float16, torch.float32):
        x = x.float()
    new_shape = tuple(int(s) for s in new_shape)
    if temperature is None or not float(temperature) > 0 or not np.isfinite(float(temperature)):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    out = np.empty(new_shape, dtype=out_dtype)
    conf = (np.empty(new_shape, np.float32), np.empty(new_shape, np.float32)) if confidence else None

    def finish(r0, r1, slab):
        if conf is None:
            out[r0:r1] = class_argmax(slab).numpy()
            return
        index, best = class_argmax(slab, return_max=True)
        out[r0:r1] = index.numpy()
        max_prob, entropy = class_confidence(slab, best, temperature)
        conf[0][r0:r1] = max_prob.numpy()
        conf[1][r0:r1] = entropy.numpy()

    if tuple(x.shape[1:]) == new_shape:
        for r0, r1 in _row_chunks(new_shape, x.shape[0]):
            finish(r0, r1, x[:, r0:r1])
        return out if conf is None else (out, *conf)
    sep_axis = _plan(x.shape[1:], new_shape, current_spacing, new_spacing, order, order_z,
                     force_separate_z, separate_z_anisotropy_threshold)
    if sep_axis is None:
        lo = x.amin(dim=(1, 2, 3), keepdim=True).float()
        hi = x.amax(dim=(1, 2, 3), keepdim=True).float()
    chunks = list(_row_chunks(new_shape, x.shape[0]))
    for k, (r0, r1) in enumerate(chunks):
        check_cancel(cancel)
        y = _resample_channel_block(x, new_shape, order, sep_axis, order_z, slice(r0, r1))
        if sep_axis is None:
            y = torch.maximum(torch.minimum(y, hi), lo)
        # float16-rounded scores go to the argmax as float16: class_argmax compares them
        # in float32 one class at a time (no full-size float32 copy of the slab)
        y = y.half() if round_fp16 else y.float()
        finish(r0, r1, y)
        report(progress, (k + 1) / len(chunks), "resampling to the original grid")
    return out if conf is None else (out, *conf)
