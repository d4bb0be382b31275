"""Sliding-window prediction with Gaussian importance weighting, as nnU-Net does it.

Same windows (``compute_steps``), same Gaussian (sigma = patch / 8, scaled so its
peak is 10, stored at float16 precision and with zeros replaced by the smallest
non-zero value), same padding (centred, constant 0, up to the patch size), same
test-time mirroring (every non-empty combination of the allowed axes, averaged
with the plain prediction). Differences, chosen for speed and accuracy, not
behaviour:

* by default scores are accumulated in float16 exactly as nnU-Net does (which is
  what makes the output voxel-identical); ``emulate_fp16=False`` uses float32;
* several folds share one accumulator (the per-fold normalisation is the same
  for every fold, so the sum of normalised fold predictions is the normalised
  sum);
* progress is reported and cancellation checked between windows;
* on a CUDA out-of-memory error the accumulators move to the CPU and the window
  is retried; if a single window does not fit, the error says so.
"""

from __future__ import annotations

import itertools
import logging
from functools import lru_cache
from typing import Callable, Optional, Sequence

import numpy as np

from ..errors import InsufficientMemoryError, InvalidInputError
from ..progress import check_cancel, report

__all__ = ["compute_steps", "count_windows", "gaussian_importance_map", "pad_to_patch", "sliding_window_logits",
           "mirror_combinations"]

log = logging.getLogger(__name__)


def compute_steps(image_size: Sequence[int], tile_size: Sequence[int], tile_step_size: float) -> list:
    """Start offsets of the windows along each axis (nnU-Net's ``compute_steps_for_sliding_window``)."""
    if not 0 < tile_step_size <= 1:
        raise InvalidInputError(f"tile_step_size must be in (0, 1], got {tile_step_size}")
    steps = []
    for size, tile in zip(image_size, tile_size):
        if size < tile:
            raise InvalidInputError(f"image size {tuple(image_size)} is smaller than the patch {tuple(tile_size)}")
        target = tile * tile_step_size
        num = int(np.ceil((size - tile) / target)) + 1
        max_step = size - tile
        actual = max_step / (num - 1) if num > 1 else 99999999999
        steps.append([int(np.round(actual * i)) for i in range(num)])
    return steps


def count_windows(image_size: Sequence[int], tile_size: Sequence[int], tile_step_size: float) -> int:
    """How many windows :func:`sliding_window_logits` runs on an image of ``image_size``
    (spatial; padded to the patch first, as it does), per fold and mirrored variant."""
    padded = [max(int(s), int(t)) for s, t in zip(image_size, tile_size)]
    return int(np.prod([len(s) for s in compute_steps(padded, tile_size, tile_step_size)]))


@lru_cache(maxsize=4)
def _gaussian_np(tile_size: tuple, sigma_scale: float, value_scaling_factor: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    tmp = np.zeros(tile_size)
    tmp[tuple(i // 2 for i in tile_size)] = 1
    g = gaussian_filter(tmp, [i * sigma_scale for i in tile_size], 0, mode="constant", cval=0)
    g /= np.max(g) / value_scaling_factor
    g = g.astype(np.float16)  # nnU-Net keeps the map in float16: use the same weights
    mask = g == 0
    if mask.any():
        g[mask] = g[~mask].min()
    return g.astype(np.float32)


def gaussian_importance_map(tile_size: Sequence[int], sigma_scale: float = 1.0 / 8,
                            value_scaling_factor: float = 10.0, device=None):
    """The importance map as a float32 torch tensor on ``device``."""
    import torch

    g = _gaussian_np(tuple(int(t) for t in tile_size), float(sigma_scale), float(value_scaling_factor))
    return torch.from_numpy(g.copy()).to(device or "cpu")


def pad_to_patch(data, patch_size: Sequence[int]):
    """Centre-pad (C, *spatial) with zeros to at least ``patch_size``; returns (padded, slicer)."""
    import torch

    spatial = data.shape[1:]
    pads = []
    slicer = [slice(None)]
    for size, patch in zip(spatial, patch_size):
        diff = max(0, int(patch) - int(size))
        below, above = diff // 2, diff // 2 + diff % 2
        pads.append((below, above))
        slicer.append(slice(below, below + size))
    if not any(b or a for b, a in pads):
        return data, tuple(slicer)
    flat = []
    for below, above in reversed(pads):  # torch.nn.functional.pad wants the last axis first
        flat += [below, above]
    return torch.nn.functional.pad(data, flat, mode="constant", value=0.0), tuple(slicer)


def mirror_combinations(mirror_axes: Optional[Sequence[int]]) -> list:
    """Every non-empty combination of spatial mirror axes, as tensor dims (nnU-Net's order)."""
    if not mirror_axes:
        return []
    axes = [int(m) + 2 for m in mirror_axes]
    return [c for i in range(len(axes)) for c in itertools.combinations(axes, i + 1)]


def _predict_window(network, x, combos: list, mirror_batch: int):
    """nnU-Net's ``_internal_maybe_mirror_and_predict`` (optionally batching flips).

    A network with ``forward_features`` and ``head`` (this project's U-Nets) has
    its mirrored *decoder features* averaged and the seg layer run once: the seg
    layer is a per-voxel linear map, so it commutes with flips and with the mean,
    and the result is the same to float rounding while the flips and sums touch
    a few feature channels instead of every class (118 for TotalSegmentator).
    """
    import torch

    forward = network.forward_features if _has_split_head(network) else network
    if not combos:
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return forward(x)
    variants = [None] + combos
    total = None
    step = max(1, mirror_batch)
    for i in range(0, len(variants), step):
        group = variants[i:i + step]
        batch = torch.cat([x if axes is None else torch.flip(x, axes) for axes in group], 0)
        if batch.device.type == "cpu":
            batch = batch.contiguous(memory_format=torch.channels_last_3d)
        out = forward(batch)
        del batch
        for k, axes in enumerate(group):
            if axes is None:
                # the plain prediction starts the sum (float32 even under autocast; a
                # copy when batched, so the sum does not keep the whole batch alive)
                total = out[k:k + 1].float()
                if len(group) > 1 and total.dtype == out.dtype:
                    total = total.clone()
            else:
                total.add_(torch.flip(out[k:k + 1], axes))
        del out
    return total.div_(len(combos) + 1)


def _score_blocks(network, out, num_classes: int, start: int = 0):
    """Yield ``(class slice, scores)`` of one window from ``_predict_window``'s output.

    For a network with ``forward_features``/``head`` the seg layer runs per block of
    classes, so a 118-class window never exists in float32 all at once (760 MB for a
    112 x 112 x 128 window; ~128 MB per block). ``start``: first class (a retry after
    running out of GPU memory resumes where it stopped).
    """
    if not _has_split_head(network):
        yield slice(0, num_classes), out[0]
        return
    voxels = max(1, out[0, 0].numel())
    step = max(1, min(num_classes, _SCORE_BLOCK_BYTES // (4 * voxels)))
    for c0 in range(start, num_classes, step):
        classes = slice(c0, min(c0 + step, num_classes))
        yield classes, network.head(out, classes)[0]


def _has_split_head(network) -> bool:
    return hasattr(network, "forward_features") and hasattr(network, "head")


#: float32 scores computed at once per window when the network has a split head
_SCORE_BLOCK_BYTES = 128 << 20


def sliding_window_logits(
    network: Callable,
    data,
    *,
    patch_size: Sequence[int],
    num_classes: int,
    tile_step_size: float = 0.5,
    mirror_axes: Optional[Sequence[int]] = None,
    device=None,
    use_gaussian: bool = True,
    autocast: bool = False,
    mirror_batch: int = 1,
    accumulate_on_device: Optional[bool] = None,
    progress: Optional[Callable[[float, str], None]] = None,
    cancel=None,
    n_folds: int = 1,
    set_fold: Optional[Callable[[int], None]] = None,
    emulate_fp16: bool = True,
    fold_labels: bool = False,
):
    """Average class scores of every window (and fold), Gaussian-weighted.

    Parameters
    ----------
    network : callable
        The network (in eval mode, on ``device``).
    data : torch.Tensor
        (C, Z, Y, X) float32 preprocessed image (CPU).
    patch_size, num_classes, tile_step_size, mirror_axes
        From the plans / checkpoint.
    device : torch.device
        Where the network runs.
    autocast : bool
        Mixed precision (CUDA only).
    mirror_batch : int
        How many mirrored variants to run in one forward pass.
    accumulate_on_device : bool, optional
        Keep the accumulators on ``device`` (default: yes for CUDA, then CPU on OOM).
    progress, cancel
        Progress callback and cancellation token (checked between windows).
    n_folds : int
        Number of passes over all windows (one per fold of an ensemble).
    set_fold : callable, optional
        Called with the fold index before each pass, to load that fold's weights
        into ``network``. All folds add into one accumulator.
    emulate_fp16 : bool
        Reproduce nnU-Net's float16 accumulators exactly (each addition rounded to
        float16, also the division and the fold average), computing in float32.
        This is what makes the output voxel-identical to nnU-Net's: near the image
        border, where a single window's Gaussian weight is tiny, nnU-Net's float16
        sums underflow and the scores there are quantised. ``False`` keeps full
        float32 precision (better-defined borders, not nnU-Net-identical).
    fold_labels : bool
        Also return each fold's own argmax (for the fold-disagreement confidence map).
        With ``emulate_fp16`` the folds are normalised one by one anyway, so this adds
        one uint8 image per fold; in float32 it also holds a second score sum.
        Ignored (an empty list) for a single fold: that path pays nothing.

    Returns
    -------
    torch.Tensor
        (num_classes, Z, Y, X) on the CPU: float16 when ``emulate_fp16`` (exactly
        nnU-Net's values), else float32. With ``fold_labels``: ``(scores, labels)``,
        ``labels`` a list of one (Z, Y, X) uint8 tensor per fold (empty for one fold).
    """
    import contextlib

    import torch

    device = torch.device(device or "cpu")
    n_folds = max(1, int(n_folds))
    padded, revert = pad_to_patch(data, patch_size)
    steps = compute_steps(padded.shape[1:], patch_size, tile_step_size)
    slicers = [tuple(slice(s, s + p) for s, p in zip(start, patch_size))
               for start in itertools.product(*steps)]
    combos = mirror_combinations(mirror_axes)
    on_device = (device.type == "cuda") if accumulate_on_device is None else bool(accumulate_on_device)
    gauss_dev = gaussian_importance_map(patch_size, device=device) if use_gaussian else None

    # nnU-Net accumulates in float16; emulating it exactly means doing the same
    # (each in-place add is computed in float32 and rounded once), at half the memory
    acc_dtype = torch.float16 if emulate_fp16 else torch.float32

    def alloc(where):
        logits = torch.zeros((num_classes, *padded.shape[1:]), dtype=acc_dtype, device=where)
        weights = torch.zeros(padded.shape[1:], dtype=acc_dtype, device=where)
        return logits, weights

    acc_dev = device if on_device else torch.device("cpu")
    try:
        logits, weights = alloc(acc_dev)
    except torch.cuda.OutOfMemoryError:
        log.warning("not enough GPU memory for the score accumulators; accumulating on the CPU")
        _empty_cache(device)
        acc_dev = torch.device("cpu")
        logits, weights = alloc(acc_dev)
    gauss_acc = gauss_dev.to(acc_dev) if gauss_dev is not None else None
    for sl in slicers:
        if gauss_acc is not None:
            weights[sl] += gauss_acc
        else:
            weights[sl] += 1
    total_folds = None

    amp = (torch.autocast(device_type="cuda", dtype=torch.float16) if (autocast and device.type == "cuda")
           else contextlib.nullcontext())
    total = len(slicers) * n_folds
    done = 0
    per_fold = []  # each fold's argmax, when fold_labels (fold ensembles only)
    track_folds = bool(fold_labels) and n_folds > 1
    padded_dev = None
    with torch.inference_mode():
        for fold in range(n_folds):
            if set_fold is not None:
                set_fold(fold)
            for sl in slicers:
                check_cancel(cancel)
                window = padded[(slice(None),) + sl][None]
                next_class = 0  # classes already accumulated (kept across a GPU-memory retry)
                while True:
                    try:
                        x = window.to(device, non_blocking=True)
                        with amp:
                            out = _predict_window(network, x, combos, mirror_batch)
                            for classes, pred in _score_blocks(network, out, num_classes, next_class):
                                pred = pred.float()
                                if not bool(torch.isfinite(pred.sum())):
                                    # one reduction per block (NaN/Inf propagate into the
                                    # sum) instead of scanning the accumulators at the end
                                    raise InvalidInputError(
                                        "the network produced non-finite scores (NaN/Inf); the "
                                        "weights or the input are broken")
                                if gauss_dev is not None:
                                    pred *= gauss_dev
                                logits[(classes,) + sl] += pred.to(acc_dev)
                                next_class = classes.stop
                                del pred
                            del out
                        break
                    except torch.cuda.OutOfMemoryError as exc:
                        del exc
                        _empty_cache(device)
                        if acc_dev.type != "cpu":
                            log.warning("GPU out of memory: moving the score accumulators to the CPU "
                                        "and retrying (slower, same result)")
                            logits, weights = logits.cpu(), weights.cpu()
                            acc_dev = torch.device("cpu")
                            _empty_cache(device)
                            continue
                        if mirror_batch > 1:
                            log.warning("GPU out of memory: running mirrored windows one at a time")
                            mirror_batch = 1
                            continue
                        raise InsufficientMemoryError(
                            f"one {tuple(patch_size)} window of this model does not fit in the memory of "
                            f"{device}; run on the CPU (device='cpu') or close other GPU programs"
                        ) from None
                done += 1
                report(progress, done / total, f"window {done}/{total}")
            if (emulate_fp16 or track_folds) and n_folds > 1:
                # nnU-Net: each fold's scores are normalised (float16), then summed and averaged
                fold_scores = torch.div(logits, weights).cpu()
                if track_folds:
                    from .resample import class_argmax

                    per_fold.append(class_argmax(fold_scores[(slice(None),) + revert[1:]]))
                if total_folds is None:
                    total_folds = fold_scores
                else:
                    total_folds += fold_scores
                if fold < n_folds - 1:
                    logits.zero_()
    with torch.inference_mode():
        if total_folds is not None:
            del logits
            logits = total_folds
            logits /= n_folds
        else:
            logits = logits.cpu() if logits.device.type != "cpu" else logits
            weights = weights.cpu() if weights.device.type != "cpu" else weights
            if n_folds > 1:
                weights *= n_folds
            logits /= weights
    if fold_labels:
        return logits[revert], per_fold
    return logits[revert]


def _empty_cache(device) -> None:
    import torch

    if getattr(device, "type", None) == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
