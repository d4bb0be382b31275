"""Liver + liver-lesion segmentation: the two-stage hybrid cascade, or an nnU-Net model.

Stage 1 segments the whole liver (lesions included) on a coarse grid (default 2.5 mm), the
probability map is resampled back to the image grid, thresholded and reduced to its largest
connected component. Stage 2 segments lesions in the liver's bounding box plus a margin at a
fine grid (default 1 x 1 x 2.5 mm); lesions outside the liver mask are dropped. Result: one
label map, 1 = liver, 2 = liver_lesion, with a :class:`~napari_medseg.io.label_table.LabelTable`.

Network, preprocessing and checkpoint come from the family package
:mod:`napari_medseg.models.hybrid_liver`, whose preprocessing training
(:mod:`napari_medseg.training.data`) runs too, so a trained checkpoint sees at inference exactly
what it saw in training. This module adds what only inference does: running the networks
slice by slice (PyTorch, or compiled by OpenVINO on the CPU with ``runtime="openvino"``,
PyTorch being the reference and the fallback), keeping the liver's largest component,
dropping lesion specks and pasting the stages back on the image grid.

``model`` may also name an nnU-Net model (a registry name routed through
:func:`napari_medseg.inference.segment.segment_with_info`, or a trained-model folder); its classes are
mapped to liver / lesion by name (see :func:`map_nnunet_labels`).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any, Optional

import numpy as np

from .._ndimage import largest_component, min_voxels, small_components
from ..errors import InvalidInputError, MedsegError
from ..io.volume import Volume
from ..models.hybrid_liver import CLASSES, LESION, LIVER
from ..models.hybrid_liver.preprocessing import (
    apply_flips,
    canonical_flips,
    resample_mask,
    slabs,
    stage1_input,
    stage2_box,
    stage2_input,
)
from ..progress import CancelLike, ProgressCallback, check_cancel, report, sub_progress

log = logging.getLogger(__name__)

HYBRID = "hybrid-liver"
NAMES = dict(CLASSES)

#: Class names (lower case) mapped to the liver label when an nnU-Net model is used.
LIVER_NAMES = ("liver",)
#: Substrings of class names mapped to the lesion label.
LESION_WORDS = ("tumor", "tumour", "lesion", "cancer", "metasta", "hcc", "cyst")


# ----------------------------------------------------------------------------- postprocessing
def drop_small_components(mask: np.ndarray, spacing_zyx, min_mm3: float) -> np.ndarray:
    """``mask`` without 26-connected components smaller than ``min_mm3`` cubic millimetres.

    The cascade drops lesion specks below 20 mm^3 by default (a sphere of 3.4 mm diameter;
    far below the 10 mm RECIST measurability limit): isolated voxels at the liver border are
    noise, not findings.
    """
    if min_mm3 <= 0 or not mask.any():
        return mask
    mask = np.asarray(mask, dtype=bool)
    small = small_components(mask, min_voxels(min_mm3, float(np.prod(spacing_zyx))), connectivity=3)
    return mask if small is None else mask & ~small


# ----------------------------------------------------------------------------- checks
def check_volume_for_model(volume: Volume, *, bytes_per_voxel: float = 24.0,
                           available_bytes: Optional[int] = None, what: str = "the liver cascade") -> None:
    """Refuse, before any work, volumes the cascade cannot process.

    Delegates to the shared :func:`napari_medseg.io.check_volume_for_model` (3D numeric,
    finite values; at least 1 slice, since the 2.5D network also runs on a single slice, and
    8 x 8 voxels in-plane) and :func:`napari_medseg.inference.memory.check_memory` with an
    estimate of ``bytes_per_voxel`` per voxel (float copies, probabilities, output).

    Raises
    ------
    InvalidInputError
        Non-numeric, NaN/Inf voxels, or slices too small.
    InsufficientMemoryError
        The estimate exceeds the available memory (the message says how much is needed).
    """
    from ..io import check_volume_for_model as _check
    from .memory import check_memory

    _check(volume, min_slices=1, min_size=8, what=what)
    check_memory(float(volume.array.size) * bytes_per_voxel,
                 f"{what} on a {'x'.join(str(n) for n in volume.shape)} volume", available=available_bytes)


# ----------------------------------------------------------------------------- stage runner
#: Compiled stage networks kept in this process (newest last), so a second run on the same
#: image (the dock's second click) neither reads nor compiles them again; the disk cache
#: of :mod:`.runtimes` serves other processes. Bounded: two stages of two images.
_COMPILED: "OrderedDict[tuple, Any]" = OrderedDict()
_COMPILED_MAX = 4


def compiled_stage_network(net, input_shape: tuple, report, what: str = "hybrid-liver network"):
    """``net`` compiled for ``input_shape`` by the runtime ``report`` chose, or ``None`` (torch).

    The 2.5D network takes whole slices, so each stage of each image has its own input
    shape (``(1, 2 * context + 1, Y, X)``): the compiled model is looked up in this
    process' cache first (keyed by the weights' hash, the architecture, the shape and the
    thread count), then on disk (:func:`~napari_medseg.inference.runtimes.compile_module`),
    and only then converted. ``None`` when ``report.used`` is not ``openvino`` or the
    conversion failed (the reason is then in ``report``).
    """
    if report is None or report.used != "openvino":
        return None
    import torch

    from .runtimes import compile_module
    from .runtimes.cache import weights_hash

    shape = tuple(int(s) for s in input_shape)
    weights_key = weights_hash(net)
    key = (type(net).__qualname__, repr(net), weights_key, shape, torch.get_num_threads())
    fn = _COMPILED.get(key)
    if fn is not None:
        _COMPILED.move_to_end(key)
        report.cache_hits += 1
        report.shapes.append(shape)
        return fn
    fn = compile_module(net, shape, report=report, what=what, weights_key=weights_key)
    if fn is not None:
        _COMPILED[key] = fn
        while len(_COMPILED) > _COMPILED_MAX:
            _COMPILED.popitem(last=False)
    return fn


def _forget_compiled(fn) -> None:
    """Drop ``fn`` from the in-process cache (it failed while running)."""
    for key in [k for k, v in _COMPILED.items() if v is fn]:
        del _COMPILED[key]


def predict_probability(net, volume01: np.ndarray, *, device, batch_size: int = 8,
                        progress: Optional[ProgressCallback] = None, cancel: Optional[CancelLike] = None,
                        amp: bool = False, runtime_report=None,
                        what: str = "hybrid-liver network") -> np.ndarray:
    """Foreground probability (class 1 softmax) for every slice of a preprocessed volume.

    ``volume01`` is (z, y, x) in [0, 1]; runs the 2.5D network slice by slice in batches,
    checking ``cancel`` between batches. Returns float32 (z, y, x).

    ``runtime_report`` (a :class:`~napari_medseg.inference.runtimes.RuntimeReport` from
    :func:`~napari_medseg.inference.runtimes.resolve_runtime`): when it says ``openvino``,
    the network runs compiled for one slab, ``(1, channels, Y, X)``, slab by slab (as fast
    per slice as a compiled batch of 8, measured, while the conversion traces one slab
    instead of eight and the activations are an eighth); a failure to compile or to run
    falls back to ``net`` with the reason in the report. ``None``: PyTorch.
    """
    import torch

    context = int(net.config["context"])
    nz = volume01.shape[0]
    fn = compiled_stage_network(net, (1, 2 * context + 1, *volume01.shape[1:]), runtime_report,
                                what)
    out = np.zeros(volume01.shape, dtype=np.float32)
    try:
        with torch.inference_mode():
            for start in range(0, nz, batch_size):
                check_cancel(cancel)
                idx = list(range(start, min(start + batch_size, nz)))
                x = torch.from_numpy(slabs(volume01, idx, context))
                logits = None
                if fn is not None:
                    try:
                        logits = torch.cat([fn(x[i:i + 1]) for i in range(len(idx))])
                    except Exception as exc:  # a runtime error in the compiled model: torch goes on
                        runtime_report.fall_back(f"OpenVINO failed while running the {what} "
                                                 f"({type(exc).__name__}: {exc})")
                        _forget_compiled(fn)  # the next run converts again rather than fail again
                        fn = None
                if logits is None:
                    x = x.to(device)
                    with torch.autocast(device_type=device.type, dtype=torch.float16,
                                        enabled=amp and device.type == "cuda"):
                        logits = net(x)
                prob = torch.softmax(logits.float(), dim=1)[:, 1]
                if not torch.isfinite(prob).all():
                    raise MedsegError(
                        "the hybrid-liver network produced NaN/Inf probabilities; the checkpoint may be "
                        "corrupt or the image far outside the training intensity range"
                    )
                out[idx[0]:idx[-1] + 1] = prob.cpu().numpy()
                report(progress, (start + len(idx)) / nz, f"slice {idx[-1] + 1}/{nz}")
    finally:
        if fn is not None and hasattr(fn, "release_memory"):
            fn.release_memory()  # the activation buffers; the compiled weights stay cached
    return out


def run_hybrid(volume: Volume, stage1, stage2, preprocessing: dict, *, device=None,
               progress: Optional[ProgressCallback] = None, cancel: Optional[CancelLike] = None,
               threshold: float = 0.5, runtime: str = "auto",
               info: Optional[dict] = None) -> np.ndarray:
    """Run the two-stage cascade with already-loaded networks; returns uint8 labels (z, y, x).

    ``runtime`` (``auto``/``openvino``/``torch``, resolved with ``device`` by
    :func:`~napari_medseg.inference.runtimes.resolve_runtime`) chooses what runs the
    networks on the CPU (see :func:`predict_probability`). ``info``, a dict, receives
    ``runtime`` (:meth:`RuntimeReport.as_dict`) and ``timings`` (``stage1_s``,
    ``stage2_s``, each with its compilation, and ``convert_s``, seconds).
    """
    import torch

    from .runtimes import resolve_runtime

    if device is None:
        device = next(stage1.parameters()).device
    device = torch.device(device)
    # family: under auto the runtimes module decides per network family (PyTorch for this
    # one until its first-run conversion cost is repaid, see docs/liver.md)
    runtime_report = resolve_runtime(runtime, device, family="hybrid-liver")
    timings: dict = {}
    flips = canonical_flips(volume)
    image = apply_flips(volume.array, flips)
    spacing = np.asarray(volume.spacing_zyx, dtype=float)

    def finish(labels: np.ndarray) -> np.ndarray:
        if info is not None:
            timings["convert_s"] = round(runtime_report.convert_s, 3)
            info["runtime"] = runtime_report.as_dict()
            info["timings"] = timings
        return apply_flips(labels, flips).copy()

    # ---- stage 1: liver on the coarse grid
    report(progress, 0.0, "liver: resampling")
    coarse = stage1_input(image, spacing, preprocessing)
    check_cancel(cancel)
    t0 = time.perf_counter()
    prob = predict_probability(stage1, coarse, device=device, progress=sub_progress(progress, 0.05, 0.45, "liver: "),
                               cancel=cancel, amp=True, runtime_report=runtime_report,
                               what="hybrid-liver stage 1 network")
    timings["stage1_s"] = round(time.perf_counter() - t0, 3)
    liver = largest_component(resample_mask(prob, image.shape, threshold), connectivity=3)
    check_cancel(cancel)
    labels = np.zeros(image.shape, dtype=np.uint8)
    box = stage2_box(liver, spacing, preprocessing)
    if box is None:
        log.info("stage 1 found no liver; no lesions searched")
        report(progress, 1.0, "no liver found")
        return finish(labels)
    labels[liver] = LIVER

    # ---- stage 2: lesions inside the liver box at the fine grid
    report(progress, 0.5, "lesions: resampling")
    crop = image[box]
    fine = stage2_input(crop, spacing, preprocessing)
    check_cancel(cancel)
    t0 = time.perf_counter()
    lprob = predict_probability(stage2, fine, device=device, progress=sub_progress(progress, 0.55, 0.95, "lesions: "),
                                cancel=cancel, amp=True, runtime_report=runtime_report,
                                what="hybrid-liver stage 2 network")
    timings["stage2_s"] = round(time.perf_counter() - t0, 3)
    lesion = resample_mask(lprob, crop.shape, threshold) & liver[box]
    lesion = drop_small_components(lesion, spacing, float(preprocessing.get("min_lesion_mm3", 20.0)))
    sub = labels[box]
    sub[lesion] = LESION
    check_cancel(cancel)
    report(progress, 1.0, "done")
    return finish(labels)


# ----------------------------------------------------------------------------- nnU-Net route
def map_nnunet_labels(labels: np.ndarray, names: dict) -> tuple:
    """Map an nnU-Net/TotalSegmentator label map to 1 liver / 2 lesion by class names.

    ``liver`` -> 1; any name containing one of :data:`LESION_WORDS` (``liver_tumor``,
    ``lesion``, ``tumour`` ...) -> 2; everything else (vessels, other organs) -> 0.

    Returns ``(mapped uint8 array, {source id: target id})``.

    Raises
    ------
    InvalidInputError
        Neither a liver nor a lesion class among ``names``.
    """
    mapping = {}
    for idx, name in names.items():
        key = str(name).lower().strip()
        if int(idx) == 0:
            continue
        if key in LIVER_NAMES:
            mapping[int(idx)] = LIVER
        elif any(word in key for word in LESION_WORDS):
            mapping[int(idx)] = LESION
    if not mapping:
        raise InvalidInputError(
            "the model has no class named 'liver' nor a lesion/tumour class (classes: "
            + ", ".join(f"{k}: {v}" for k, v in sorted(names.items()))
            + "); pick a liver or liver-tumour model"
        )
    lut = np.zeros(int(max(max(names), labels.max() if labels.size else 0)) + 1, dtype=np.uint8)
    for src, dst in mapping.items():
        if src < len(lut):
            lut[src] = dst
    return lut[np.asarray(labels, dtype=np.int64)], mapping


def run_nnunet(volume: Volume, model, *, weights=None, device="auto",
               progress: Optional[ProgressCallback] = None, cancel: Optional[CancelLike] = None,
               runtime: str = "auto", info: Optional[dict] = None) -> np.ndarray:
    """Liver/lesion labels from an nnU-Net model (trained-model folder or registry name).

    Runs :func:`napari_medseg.inference.segment.segment_with_info` (the
    automatic-segmentation engine) and maps its classes to 1 liver / 2 lesion with
    :func:`map_nnunet_labels`. ``info``, a dict, receives the engine's ``runtime`` and
    ``timings``.
    """
    from .segment import segment_with_info

    result = segment_with_info(volume, model=model, weights=weights, device=device,
                               progress=progress, cancel=cancel, runtime=runtime)
    check_cancel(cancel)
    if info is not None:
        info["runtime"] = dict(result.runtime)
        info["timings"] = dict(result.timings)
    mapped, _ = map_nnunet_labels(result.labels, result.table.names)
    return mapped


# ----------------------------------------------------------------------------- public entry
def label_table():
    """The output's :class:`LabelTable` (1 liver, 2 liver_lesion)."""
    from ..io.label_table import LabelTable

    return LabelTable.from_names(dict(NAMES))


def segment_liver(volume: Volume, model: str = HYBRID, *, weights=None, device="auto",
                  progress: Optional[ProgressCallback] = None, cancel: Optional[CancelLike] = None,
                  runtime: str = "auto", info: Optional[dict] = None) -> tuple:
    """Segment the liver and its lesions.

    Parameters
    ----------
    volume : Volume
        CT (HU) volume.
    model : str
        ``"hybrid-liver"`` (the cascade; ``weights`` = checkpoint file, else the registry's
        installed weights), an nnU-Net trained-model folder, or an nnU-Net/TotalSegmentator
        registry name handled by :func:`napari_medseg.inference.segment.segment`.
    weights : path, optional
        Checkpoint (hybrid) or weights folder (registry models).
    device : str
        "auto", "cpu", "cuda" or "mps".
    progress, cancel
        Progress callback ``(fraction, text)`` and cancel flag (``is_set()``).
    runtime : {"auto", "openvino", "torch"}
        What runs the networks on the CPU (:mod:`napari_medseg.inference.runtimes`):
        ``openvino`` compiles each stage network for its input shape (one per stage and
        image, cached in memory and on disk) and falls back to PyTorch with the reason on
        any failure; ``auto`` is PyTorch for the cascade (family ``hybrid-liver`` is not in
        :data:`~napari_medseg.inference.runtimes.AUTO_OPENVINO_FAMILIES`: a first run pays
        the conversion, see ``docs/liver.md``) and the engine's choice for an nnU-Net
        model. GPUs run PyTorch.
    info : dict, optional
        Receives ``runtime`` (what ran the networks: ``requested``, ``used``, ``reason``,
        ``convert_s``, ``compiled``, ``cache_hits``) and ``timings`` (seconds).

    Returns
    -------
    labels : ndarray of uint8
        On ``volume``'s grid: 0 background, 1 liver, 2 liver_lesion.
    table : LabelTable

    Raises
    ------
    Cancelled
        ``cancel`` was set; nothing was modified.
    WeightsNotFoundError, CheckpointMismatchError, UnsafeCheckpointError, InvalidInputError
    """
    from .runtimes import check_runtime

    runtime = check_runtime(runtime)
    check_volume_for_model(volume)
    check_cancel(cancel)
    if str(model) == HYBRID or str(model).endswith((".pt", ".pth")):
        # a checkpoint file given as the model is the hybrid cascade with those weights
        ckpt = weights if str(model) == HYBRID else model
        labels = run_hybrid_from_weights(volume, weights=ckpt, device=device, progress=progress,
                                         cancel=cancel, runtime=runtime, info=info)
    else:
        labels = run_nnunet(volume, model, weights=weights, device=device, progress=progress,
                            cancel=cancel, runtime=runtime, info=info)
    return labels, label_table()


def run_hybrid_from_weights(volume: Volume, *, weights=None, device="auto",
                            progress: Optional[ProgressCallback] = None,
                            cancel: Optional[CancelLike] = None, runtime: str = "auto",
                            info: Optional[dict] = None) -> np.ndarray:
    """Load a hybrid-liver checkpoint (path, or the registry's installed one) and run it
    (``runtime`` and ``info`` as in :func:`run_hybrid`)."""
    from ..models.hybrid_liver.checkpoint import checkpoint_file, load_cascade
    from .device import choose_device

    if weights is None:
        from ..models.weights import resolve_weights

        weights = resolve_weights(HYBRID)  # the install folder (raises with what to run)
    weights = checkpoint_file(weights)
    dev = choose_device(device)
    report(progress, 0.0, "loading checkpoint")
    stage1, stage2, ckpt = load_cascade(weights, device=dev)
    return run_hybrid(volume, stage1, stage2, ckpt["preprocessing"], device=dev,
                      progress=sub_progress(progress, 0.02, 1.0), cancel=cancel,
                      runtime=runtime, info=info)
