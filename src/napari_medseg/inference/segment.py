"""Automatic segmentation: one entry point for every automatic model.

:func:`segment` takes a :class:`~napari_medseg.io.volume.Volume` and a model name from the
registry (``"hu-tissue"``, ``"total"``, ``"total-fast"``, ``"liver-vessels"``, ...) or the
path of any nnU-Net v2 trained-model folder, and returns a label array on the volume's
grid with a :class:`~napari_medseg.io.label_table.LabelTable`.

TotalSegmentator tasks are run the way TotalSegmentator runs them:

- ``total``: the five part models (organs, vertebrae, cardiac, muscles, ribs) each predict
  their own ids, mapped to the global 117-class ids by name and merged in part order;
- ``roi_subset``: only the part models holding the requested structures run, only those
  structures are kept, and when ``total-fastest`` (6 mm) is installed the part models run
  only inside the box that model finds for the structures (plus 20 voxels), as
  TotalSegmentator does; without it they run on the whole image (same result, slower);
- cropped tasks (``liver-vessels``, ``liver-lesions``): the rough model
  (``total-fastest`` / ``total-fast``) finds the liver first, the task model runs inside its
  box (plus 20 voxels) and the result is pasted back.

The input is checked (3D, finite, numeric) and the memory estimated before any work
starts. Nothing the caller owns is modified, so a cancelled run leaves no trace.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..errors import InvalidInputError, WeightsNotFoundError
from ..io.label_table import LabelTable
from ..io.volume import Volume
from ..models.nnunet.folder import is_model_folder, trained_model_folder
from ..progress import CancelLike, ProgressCallback, check_cancel, report, sub_progress

ModelLike = Union[str, Path, "ModelCard"]  # noqa: F821


@dataclass
class SegmentResult:
    """What :func:`segment_with_info` returns: labels, names, timings and remarks."""

    labels: np.ndarray
    table: LabelTable
    model: str
    timings: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    #: What ran the networks: ``requested``, ``used`` (openvino/torch), ``reason`` for a
    #: fallback, ``convert_s``, ``compiled``, ``cache_hits`` (empty for models without one).
    runtime: dict = field(default_factory=dict)
    #: With ``confidence=True`` (network models): the voxel maps on the volume's grid
    #: (:class:`~napari_medseg.inference.resample.ConfidenceMaps`); None otherwise.
    confidence: Optional[object] = None


# --------------------------------------------------------------------- model lookup
def resolve_model(model: ModelLike):
    """Return ``("card", ModelCard)`` or ``("folder", Path)`` for ``model``."""
    from ..models.registry import ModelCard, get_card

    if isinstance(model, ModelCard):
        return "card", model
    text = str(model)
    path = Path(text).expanduser()
    has_sep = "/" in text or "\\" in text
    if not isinstance(model, Path) and not has_sep:
        from ..models.registry import list_cards

        names = {c.name for c in list_cards()}
        if text in names or text.replace("_", "-").lower() in names:
            return "card", get_card(text)  # a registry name wins over a same-named folder
    if isinstance(model, Path) or has_sep or path.is_dir():
        if is_model_folder(path):
            return "folder", path
        if not path.exists():
            raise InvalidInputError(
                f"model folder {path} does not exist; give a registry name (see "
                "`medseg weights list`) or the path of an nnU-Net v2 trained-model folder")
        raise InvalidInputError(
            f"{path} is not an nnU-Net v2 model folder: it needs plans.json, dataset.json and "
            "fold_N/checkpoint_final.pth (or one {trainer}__{plans}__{configuration} subfolder "
            "holding them)")
    return "card", get_card(text)


def validate_roi_subset(roi_subset: Optional[Sequence[str]], classes: dict, model: str) -> Optional[list]:
    """Check requested structure names against a model's classes; return them (canonical).

    Raises
    ------
    InvalidInputError
        Naming every unknown structure with its closest matches.
    """
    if roi_subset is None:
        return None
    if isinstance(roi_subset, str):
        roi_subset = [s for s in roi_subset.split(",")]
    names = [str(s).strip() for s in roi_subset if str(s).strip()]
    if not names:
        raise InvalidInputError("roi_subset is empty; name at least one structure or leave it out")
    from ..models.registry import suggest

    known = {n.lower(): n for n in classes.values()}
    out, problems = [], []
    for name in names:
        canonical = known.get(name.lower().replace(" ", "_").replace("-", "_"))
        if canonical is None:
            problems.append(f"{name!r}{suggest(name.lower(), list(known.values()))}")
        elif canonical not in out:
            out.append(canonical)
    if problems:
        raise InvalidInputError(
            f"unknown structure(s) for model {model!r}: " + "; ".join(problems)
            + ("" if problems[-1].endswith("?") else ".") + f" Valid names ({len(classes)}): "
            + ", ".join(sorted(set(classes.values()), key=str.lower)))
    return out


def check_segment_options(model: ModelLike, *, weights=None, device: Optional[str] = "auto",
                          roi_subset: Optional[Sequence[str]] = None, runtime: Optional[str] = "auto"):
    """Refuse options the model does not use, before any image is read.

    Parameters
    ----------
    model, weights, device, roi_subset, runtime
        As for :func:`segment`.

    Returns
    -------
    tuple
        ``(kind, target, roi)``: what :func:`resolve_model` returns and the canonical
        structure names (None when ``roi_subset`` is None).

    Raises
    ------
    InvalidInputError
        Unknown model or structure (the message lists the valid names); ``weights`` for
        a model that has none to load (hu-tissue) or holds its own (a model folder);
        a GPU ``device`` for the CPU-only hu-tissue model; a forced device this machine
        lacks (the message says which devices exist); a promptable model; an unknown
        ``runtime``.
    """
    from .runtimes import check_runtime

    check_runtime(runtime)
    kind, target = resolve_model(model)
    family = target.family if kind == "card" else None
    if family is not None and not family.automatic:
        raise InvalidInputError(
            f"{target.name!r} is a promptable ({target.kind}) model: use it from the "
            "Interactive segmentation widget or `medseg prompt`, not automatic segmentation")
    if kind == "folder" and roi_subset is not None:
        raise InvalidInputError("roi_subset works with registry models (TotalSegmentator tasks, "
                                "hu-tissue), not with a custom model folder")
    if weights is not None and str(weights).strip():
        if family is not None and not family.needs_weights:
            raise InvalidInputError(
                f"the {target.name!r} model needs no weights ({family.no_weights_reason}); "
                f"leave the weights out (got {weights!s})")
        if kind == "folder":
            raise InvalidInputError(
                f"the model folder {target} holds its own weights (fold_N/checkpoint_final.pth); "
                f"leave the weights out (got {weights!s})")
    dev = (device or "auto").strip().lower()
    cpu_only = family.cpu_only if family is not None else ""
    if cpu_only and dev not in ("auto", "cpu"):
        raise InvalidInputError(
            f"the {target.name!r} model runs on the CPU only ({cpu_only}); "
            f"device {device!r} does not apply: use auto or cpu")
    if not cpu_only and dev != "auto":
        from .device import choose_device

        choose_device(dev)  # a forced device that is missing fails here, before any work
    roi = validate_roi_subset(roi_subset, target.classes, target.name) if kind == "card" else None
    return kind, target, roi


#: Fewest distinct values a CT sample holds (a label map has a handful; CT noise thousands).
_LABEL_MAP_MAX_VALUES = 256
#: Every body CT holds air, lung or fat below this (HU); an MRI or a scaled image does not.
_HU_LOW_TISSUE = -200.0


def check_ct_values(volume: Volume, what: str = "the hu-tissue model") -> list:
    """Refuse a label map or a non-CT image for an HU model, judging by the voxel values.

    The modality tag is often missing (NIfTI has none), so the values decide: a volume
    of few distinct non-negative whole numbers is a label map; a volume with no voxel
    below -200 (no air, lung or fat, which every body CT holds) is not in Hounsfield
    units (an MRI, a PET, or a CT stored without its rescale). A sample of about a
    million voxels is enough and keeps this cheap.

    Parameters
    ----------
    volume : Volume
        The image about to be segmented.
    what : str
        The consumer, for messages.

    Returns
    -------
    list of str
        Warnings for an image tagged CT whose values still look odd (the run goes on).

    Raises
    ------
    InvalidInputError
        MR/PT/... modality tag, a label map, or values not in HU on an untagged image.
    """
    src = volume.metadata.get("source_path") if isinstance(volume.metadata, dict) else None
    name = f"the image {src}" if src else "the image"
    modality = (volume.modality or "").upper()
    if modality in ("MR", "MRI", "PT", "NM", "US"):
        raise InvalidInputError(
            f"{what} works on CT in Hounsfield units; {name} is {modality}. For "
            "MRI use the interactive backends (region-growing works on any modality) or an "
            "nnU-Net model folder trained on MR images")
    arr = np.asarray(volume.array)
    step = max(1, int(round((arr.size / 1_000_000) ** (1 / 3))))
    sample = np.asarray(arr[::step, ::step, ::step]).ravel()
    if sample.dtype.kind == "f":
        sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return []
    lo, hi = float(sample.min()), float(sample.max())
    whole = sample.dtype.kind in "iub" or bool(np.all(sample == np.round(sample)))
    if whole and lo >= 0:
        distinct = np.unique(sample)
        if distinct.size <= _LABEL_MAP_MAX_VALUES:
            raise InvalidInputError(
                f"{name} looks like a label map, not a CT: it holds only {distinct.size} "
                f"distinct whole values ({lo:g}..{hi:g}). Give {what} the CT image (open the "
                "label map as labels, or measure it with `medseg stats CT LABELS`)")
    low = float(np.percentile(sample, 1.0))
    if lo >= _HU_LOW_TISSUE or low > 0:
        text = (f"{name} does not look like a CT in Hounsfield units: its values span "
                f"{lo:g}..{hi:g} with no air, lung or fat (nothing below {_HU_LOW_TISSUE:g})")
        if modality == "CT":
            return [text + "; the tissue classes may be empty or wrong"]
        raise InvalidInputError(
            text + f"; {what} needs CT in HU: for MRI use the interactive backends or an "
            "nnU-Net model trained on MR; a CT stored without its rescale (e.g. 0..4095) must "
            "be converted to HU (value x slope + intercept) first")
    return []


# ------------------------------------------------------------------------ helpers
def _output_dtype(max_id: int):
    return np.uint8 if max_id <= 255 else np.uint16


def _memory_check_nnunet(volume: Volume, folder: Path, what: str) -> None:
    """Estimate an nnU-Net run from the plans and refuse it if it cannot fit."""
    from ..inference.memory import check_memory, estimate_nnunet_bytes
    from ..models.nnunet.plans import label_names, load_plans, read_json

    try:
        plans_json = read_json(folder / "plans.json", "plans.json")
        dataset_json = read_json(folder / "dataset.json", "dataset.json")
        configuration = folder.name.split("__")[-1] if "__" in folder.name else "3d_fullres"
        plans = load_plans(plans_json, configuration, str(folder / "plans.json"))
        spacing_net = [float(v) for v in plans.spacing]
        patch = [int(v) for v in plans.patch_size]
        order = [int(v) for v in plans.transpose_forward]
        n_classes = len(label_names(dataset_json))
    except Exception:  # noqa: BLE001 - the engine reports broken plans properly later
        return
    # nnU-Net works on the image axes permuted by transpose_forward, at the plans' spacing.
    phys = np.asarray(volume.shape, float) * np.asarray(volume.spacing_zyx, float)
    net_shape = tuple(int(np.ceil(phys[order[i]] / spacing_net[i])) for i in range(3))
    needed = estimate_nnunet_bytes(volume.shape, net_shape, max(2, n_classes), patch)
    check_memory(needed, what)


def _crop_box(mask: np.ndarray, margin: int) -> Optional[tuple]:
    """Bounding box of ``mask`` grown by ``margin`` voxels (clipped); None if empty."""
    if not mask.any():
        return None
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        lo = max(0, int(idx[0]) - margin)
        hi = min(mask.shape[axis], int(idx[-1]) + margin + 1)
        box.append(slice(lo, hi))
    return tuple(box)


def sub_volume(volume: Volume, box: tuple) -> Volume:
    """The part of ``volume`` inside ``box`` (index slices), with its geometry."""
    start = [s.start for s in box]
    origin = volume.index_to_physical(start)
    return Volume(array=volume.array[box], spacing=volume.spacing, origin=tuple(origin),
                  direction=volume.direction, modality=volume.modality,
                  metadata=dict(volume.metadata))


#: nnU-Net predictors kept loaded by (folder, folds, device) while
#: :func:`keep_models_loaded` is on in this process (a batch worker); None: load per call.
_LOADED: Optional[dict] = None


def keep_models_loaded(enabled: bool = True) -> None:
    """Keep every nnU-Net model this process loads for :func:`segment` in memory.

    A batch worker segments many cases with one model: reading the checkpoints and
    building the network each time would cost more than a small case. Off (the
    default), each call loads its model and frees it afterwards.

    Parameters
    ----------
    enabled : bool
        True: load each (folder, folds, device) once and reuse it; False: drop the
        loaded models and load per call again.
    """
    global _LOADED
    _LOADED = {} if enabled else None


def _predict_folder(folder: Path, volume: Volume, *, device, folds, use_mirroring: bool,
                    progress, cancel, runtime: str = "auto",
                    result: Optional[SegmentResult] = None, confidence: bool = False,
                    temperature: float = 1.0) -> tuple:
    """Run one nnU-Net trained-model folder; return (labels, {id: name}).

    ``result``: the network runtime's report is added to its ``runtime``,
    ``timings["convert_s"]`` and, for a fallback, ``notes``. ``confidence``: returns
    ``(labels, names, ConfidenceMaps)``.
    """
    from .nnunet_predictor import NnUNetPredictor

    key = (str(folder), None if folds is None else tuple(folds), str(device), runtime)
    model = _LOADED.get(key) if _LOADED is not None else None
    if model is None:
        model = NnUNetPredictor.from_folder(folder, folds=folds, device=device, runtime=runtime)
        if _LOADED is not None:
            _LOADED[key] = model
    if confidence:
        labels, conf = model.predict_with_confidence(volume, progress=progress, cancel=cancel,
                                                     use_mirroring=use_mirroring,
                                                     temperature=temperature)
    else:
        labels = model.predict(volume, progress=progress, cancel=cancel,
                               use_mirroring=use_mirroring)
    if result is not None and model.runtime_report is not None:
        _add_runtime_report(result, model.runtime_report)
    if confidence:
        return np.asarray(labels), dict(model.labels), conf
    return np.asarray(labels), dict(model.labels)


class _ConfidenceMerge:
    """Confidence of several part models merged like their labels.

    A voxel a part labels (> 0, later parts winning) takes that part's maps; a
    voxel no part labels takes the least sure part's (lowest probability, highest
    entropy and disagreement): each part only vouches for its own structures.
    """

    def __init__(self):
        self.maps = None
        self._labelled = None

    def add(self, conf, won: np.ndarray) -> None:
        from .resample import ConfidenceMaps

        if self.maps is None:
            self.maps, self._labelled = conf, won.copy()
            return
        m, merged = self.maps, {}
        for name in ("max_prob", "entropy", "fold_disagreement"):
            old, new = getattr(m, name), getattr(conf, name)
            if old is None or new is None:
                merged[name] = None
                continue
            worst = np.minimum(old, new) if name == "max_prob" else np.maximum(old, new)
            merged[name] = np.where(won, new, np.where(self._labelled, old, worst)).astype(np.float32)
        self._labelled |= won
        self.maps = ConfidenceMaps(merged["max_prob"], merged["entropy"],
                                   merged["fold_disagreement"], temperature=conf.temperature,
                                   n_classes=max(m.n_classes, conf.n_classes),
                                   n_folds=min(m.n_folds, conf.n_folds))


def _paste_confidence(conf, box: tuple, shape: tuple):
    """Maps of a sub-volume placed in the whole image (outside: background, probability 1)."""
    def paste(a, fill):
        full = np.full(shape, fill, np.float32)
        full[box] = a
        return full

    return type(conf)(paste(conf.max_prob, 1.0), paste(conf.entropy, 0.0),
                      None if conf.fold_disagreement is None else paste(conf.fold_disagreement, 0.0),
                      conf.temperature, conf.n_classes, conf.n_folds)


def _add_runtime_report(result: SegmentResult, report) -> None:
    """Sum one network's runtime report into ``result`` (several part models add up)."""
    rt = result.runtime
    new = report.as_dict()
    if not rt:
        rt.update(new)
    else:
        rt["convert_s"] = round(rt["convert_s"] + new["convert_s"], 3)
        rt["compiled"] += new["compiled"]
        rt["cache_hits"] += new["cache_hits"]
        if new["used"] == "torch":
            rt["used"] = "torch"
            rt["reason"] = rt["reason"] or new["reason"]
    result.timings["convert_s"] = rt["convert_s"]
    note = f"networks ran with PyTorch, not OpenVINO: {rt['reason']}"
    if rt["requested"] != "torch" and rt["used"] == "torch" and rt["reason"] \
            and note not in result.notes:
        result.notes.append(note)


# ---------------------------------------------------------------------------- runs
def _run_hu(card, volume: Volume, roi: Optional[list], weights, device, progress, cancel,
            result: SegmentResult, runtime: str = "auto", confidence: bool = False,
            temperature: Optional[float] = None):
    from ..inference.memory import check_memory
    from ..models.hu_tissue import segment_hu_tissue

    # int16/float input + ~8 boolean masks + uint8/int32 label scratch at full resolution.
    check_memory(volume.array.size * (volume.array.itemsize + 14) + 200 * 2**20,
                 f"the HU tissue model on a {'x'.join(map(str, volume.shape))} image")
    t0 = time.perf_counter()
    labels = segment_hu_tissue(volume, progress=progress, cancel=cancel)
    result.timings["hu_tissue_s"] = time.perf_counter() - t0
    if confidence:
        result.notes.append("the hu-tissue model thresholds HU values and has no class "
                            "probabilities: no confidence map")
    return labels, dict(card.classes)


def _run_totalseg(card, volume: Volume, roi: Optional[list], weights, device, progress,
                  cancel, result: SegmentResult, runtime: str = "auto", confidence: bool = False,
                  temperature: Optional[float] = None):
    from ..models import weights as wm
    from ..models.registry import get_card

    root = wm.resolve_weights(card, weights)
    units = []  # (label, folder, to_global or None)
    if card.parts:
        wanted_parts = card.parts
        if roi is not None:
            wanted_parts = [p for p in card.parts if set(roi) & set(p.classes.values())]
        for p in wanted_parts:
            units.append((f"{p.name} ({p.dataset_id})", root / p.folder / card.model_folder_name,
                          p.to_global))
    else:
        folder = root / card.remote_files[0].target / card.model_folder_name
        units.append((card.name, folder, None))

    # ---- region of interest from the rough model (TotalSegmentator's crop pre-pass)
    crop_names = list(card.crop) or (roi if roi is not None and card.crop_model else [])
    box = None
    work = volume
    if crop_names and card.crop_model:
        crop_card = get_card(card.crop_model)
        try:
            crop_root = wm.resolve_weights(crop_card)
        except WeightsNotFoundError as exc:
            if card.crop:  # the task model was trained on crops: it needs them
                raise WeightsNotFoundError(
                    f"{card.name!r} first finds {', '.join(card.crop)} with {crop_card.name!r}, "
                    f"whose weights are missing: run `medseg weights download {crop_card.name}`"
                ) from exc
            result.notes.append(f"{crop_card.name!r} is not installed: ran on the whole image "
                                "instead of the region of interest (same result, slower)")
            crop_root = None
        if crop_root is not None:
            t0 = time.perf_counter()
            crop_folder = Path(crop_root) / crop_card.remote_files[0].target / crop_card.model_folder_name
            _memory_check_nnunet(volume, crop_folder, f"{crop_card.name} (region of interest)")
            rough, _ = _predict_folder(
                crop_folder, volume, device=device, folds=crop_card.folds, use_mirroring=False,
                progress=sub_progress(progress, 0.0, 0.15, f"{crop_card.name}: "), cancel=cancel,
                runtime=runtime, result=result)
            ids = [k for k, n in crop_card.classes.items() if n in crop_names]
            box = _crop_box(np.isin(rough, ids), card.crop_margin_vox)
            result.timings["roi_s"] = time.perf_counter() - t0
            del rough
            if box is None:
                result.notes.append(f"{', '.join(crop_names)} not found by {crop_card.name}: "
                                    "empty result")
                return np.zeros(volume.shape, _output_dtype(max(card.classes, default=1))), \
                    dict(card.classes)
            work = sub_volume(volume, box)
            result.notes.append("ran inside the region of interest "
                                + "x".join(str(s.stop - s.start) for s in box) + " (z, y, x)")
    check_cancel(cancel)

    max_id = max(card.classes, default=1)
    out = np.zeros(work.shape, _output_dtype(max_id))
    merge = _ConfidenceMerge() if confidence else None
    start = 0.15 if box is not None else 0.0
    span = (1.0 - start) / max(1, len(units))
    for i, (label, folder, to_global) in enumerate(units):
        check_cancel(cancel)
        t0 = time.perf_counter()
        _memory_check_nnunet(work, folder, f"{card.name}: {label}")
        step = sub_progress(progress, start + i * span, start + (i + 1) * span,
                            f"{card.name} {label} [{i + 1}/{len(units)}]: " if len(units) > 1
                            else f"{card.name}: ")
        pred, _names, *conf = _predict_folder(
            folder, work, device=device, folds=card.folds, use_mirroring=False, progress=step,
            cancel=cancel, runtime=runtime, result=result, confidence=confidence,
            temperature=getattr(card, "temperature", 1.0) if temperature is None else temperature)
        if merge is not None:
            merge.add(conf[0], pred > 0)
        if to_global is not None:
            lut = np.zeros(max(max(to_global), int(pred.max(initial=0))) + 1, out.dtype)
            for local, glob in to_global.items():
                lut[local] = glob
            pred = lut[pred]
        pred = pred.astype(out.dtype, copy=False)
        np.copyto(out, pred, where=pred > 0)  # later parts win where parts overlap
        result.timings[f"{label}_s"] = time.perf_counter() - t0
        del pred
    if box is not None:
        full = np.zeros(volume.shape, out.dtype)
        full[box] = out
        out = full
    if merge is not None:
        conf = merge.maps
        result.confidence = conf if box is None else _paste_confidence(conf, box, volume.shape)
    return out, dict(card.classes)


def _run_folder(path: Path, volume, device, progress, cancel, result: SegmentResult,
                runtime: str = "auto", confidence: bool = False,
                temperature: Optional[float] = None):
    folder = trained_model_folder(path)
    first = volume[0] if isinstance(volume, list) else volume
    _memory_check_nnunet(first, folder, f"nnU-Net model {folder.name}")
    t0 = time.perf_counter()
    labels, names, *conf = _predict_folder(
        folder, volume, device=device, folds=None, use_mirroring=True, progress=progress,
        cancel=cancel, runtime=runtime, result=result, confidence=confidence,
        temperature=1.0 if temperature is None else temperature)
    if conf:
        result.confidence = conf[0]
    result.timings["predict_s"] = time.perf_counter() - t0
    names = {int(k): v for k, v in names.items() if int(k) != 0}
    return labels, names


def _run_deepbet(card, volume: Volume, roi: Optional[list], weights, device, progress, cancel,
                 result: SegmentResult, runtime: str = "auto", confidence: bool = False,
                 temperature: Optional[float] = None):
    """deepbet on ``volume`` in any orientation; the mask comes back on the exact source grid.

    deepbet reads a NIfTI image and works in its closest-canonical (RAS) voxel order, then
    puts the mask back in the input's voxel order. The Volume is handed over as an in-memory
    NIfTI whose affine is the Volume's own geometry (LPS -> RAS: x and y negated), so any
    reader's volume, flipped or permuted, gives the same mask in physical space.
    """
    import nibabel as nib
    import torch

    from ..models import deepbet as deepbet_model

    dev = (device or "auto").strip().lower()
    no_gpu = dev == "cpu" or not (torch.cuda.is_available() or (
        hasattr(torch.backends, "mps") and torch.backends.mps.is_available()))
    t0 = time.perf_counter()
    if not deepbet_model.loaded():
        report(progress, 0.05, "deepbet: loading its networks from the installed package")
    # only the installed package's networks, hash-checked when loaded; kept loaded per device
    bet, run_lock = deepbet_model.brain_extractor(no_gpu)
    check_cancel(cancel)
    affine_lps = np.eye(4)
    affine_lps[:3, :3] = volume.direction_matrix * np.asarray(volume.spacing, float)[None, :]
    affine_lps[:3, 3] = volume.origin
    affine_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps
    xyz = np.ascontiguousarray(np.asarray(volume.array, np.float32).transpose(2, 1, 0))
    img = nib.Nifti1Image(xyz, affine_ras)
    report(progress, 0.2, "deepbet: extracting the brain")
    try:
        with run_lock:
            _, mask_img, tiv = bet.run(img)
    except AssertionError as exc:  # deepbet's own checks (e.g. no head found)
        raise InvalidInputError(f"deepbet could not find a brain in the image: {exc}. It "
                                "expects a T1-weighted head MRI") from None
    mask = np.asarray(mask_img.dataobj).astype(bool).transpose(2, 1, 0)
    result.timings["deepbet_s"] = time.perf_counter() - t0
    result.notes.append(f"brain volume {float(tiv):.1f} ml")
    if confidence:
        result.notes.append("deepbet returns a mask without its probabilities: no confidence map")
    return np.ascontiguousarray(mask.astype(np.uint8)), dict(card.classes)


#: How each automatic model family runs (``ModelFamily.automatic``; keyed by family kind).
_RUNNERS = {"hu-tissue": _run_hu, "totalseg": _run_totalseg, "nnunet": _run_totalseg,
            "deepbet": _run_deepbet}


def model_channels(model: ModelLike) -> dict:
    """``{index: name}`` of the input channels a model takes (from its ``dataset.json``).

    Registry models other than nnU-Net folders take one image: ``{0: "image"}``.
    """
    kind, target = resolve_model(model)
    if kind != "folder":
        return {0: "image"}
    from ..models.nnunet.plans import read_json

    folder = trained_model_folder(target)
    data = read_json(folder / "dataset.json", "dataset.json")
    channels = data.get("channel_names", data.get("modality", {"0": "image"}))
    return {int(k): str(v) for k, v in sorted(channels.items(), key=lambda kv: int(kv[0]))}


def channels_onto_first_grid(volumes: Sequence[Volume], names: Optional[Sequence[str]] = None
                             ) -> tuple:
    """Put every channel volume on the first one's voxel grid.

    A channel on another grid (shape, spacing, origin or direction) is resampled in
    physical space (linear, zero outside its field of view) and a warning says so: a
    multi-sequence study is often acquired on different grids, and silently mixing grids
    would misalign the sequences.

    Returns
    -------
    (list of Volume, list of str)
        The volumes on the first grid and the warnings.
    """
    import SimpleITK as sitk

    vols = list(volumes)
    names = list(names) if names is not None else [f"channel {i}" for i in range(len(vols))]
    ref = vols[0]
    out, warnings = [ref], []
    for vol, name in zip(vols[1:], names[1:]):
        if ref.same_grid(vol):
            out.append(vol)
            continue
        moving = vol.to_sitk(np.asarray(vol.array, np.float32))
        resampled = sitk.Resample(moving, ref.to_sitk(np.zeros(ref.shape, np.float32)),
                                  sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        out.append(ref.with_array(sitk.GetArrayFromImage(resampled)))
        warnings.append(
            f"the {name} image ({'x'.join(map(str, vol.shape))} voxels, spacing "
            f"{'x'.join(f'{v:g}' for v in vol.spacing)} mm) is not on the {names[0]} image's "
            f"grid ({'x'.join(map(str, ref.shape))}, {'x'.join(f'{v:g}' for v in ref.spacing)}"
            " mm): resampled onto it (linear interpolation, zero outside its field of view)")
    return out, warnings


def _channel_inputs(volume, model: ModelLike, label: str) -> tuple:
    """``(volume or list of Volume, notes)``: the inputs in the model's channel order.

    ``volume`` is one Volume, a sequence of Volumes (channel order) or a mapping
    ``{channel name: Volume}`` (names from the model's ``dataset.json``, case-insensitive).
    """
    channels = model_channels(model)
    names = [channels[k] for k in sorted(channels)]
    if isinstance(volume, Volume):
        given = [volume]
    elif isinstance(volume, dict):
        by_name = {str(k).strip().lower(): v for k, v in volume.items()}
        unknown = [k for k in volume if str(k).strip().lower() not in
                   {n.lower() for n in names}]
        if unknown and len(names) > 1:
            raise InvalidInputError(
                f"model {label!r} has no channel named {', '.join(map(repr, unknown))}; its "
                f"channels are {', '.join(names)}")
        if len(names) == 1 and len(volume) == 1:
            given = list(volume.values())
        else:
            given = [by_name.get(n.lower()) for n in names]
    else:
        given = list(volume)
    missing = [n for n, v in zip(names, given + [None] * len(names)) if v is None]
    if len(given) > len(names):
        raise InvalidInputError(
            f"model {label!r} takes {len(names)} image(s) ({', '.join(names)}); got "
            f"{len(given)}")
    if missing:
        raise InvalidInputError(
            f"model {label!r} takes {len(names)} images, one per channel "
            f"({', '.join(names)}); missing: {', '.join(missing)}. Give each with "
            "`--channel-image NAME=PATH` (or repeat --image in channel order)")
    if len(given) == 1:
        return given[0], []
    vols, notes = channels_onto_first_grid(given, names)
    return vols, notes


# ---------------------------------------------------------------------- entry points
def segment_with_info(volume: Volume, model: ModelLike = "hu-tissue", *,
                      weights: Optional[Union[str, Path]] = None, device: str = "auto",
                      roi_subset: Optional[Sequence[str]] = None,
                      progress: Optional[ProgressCallback] = None,
                      cancel: Optional[CancelLike] = None,
                      runtime: str = "auto", confidence: bool = False,
                      temperature: Optional[float] = None) -> SegmentResult:
    """Like :func:`segment`, returning a :class:`SegmentResult` (with timings, notes and the
    network runtime used: ``result.runtime``; conversion time in ``timings["convert_s"]``).

    ``confidence=True`` also computes the model's voxel confidence
    (``result.confidence``, a :class:`~napari_medseg.inference.resample.ConfidenceMaps` on
    the volume's grid; None for hu-tissue, which has no probabilities, with a note); the
    labels are the same either way. ``temperature``: softmax temperature (> 0) for the
    maps (default: the model card's, 1 for a model folder), fitted with ``medseg
    calibrate``; per-structure figures: :func:`napari_medseg.analysis.confidence.summarise_confidence`.
    """
    if temperature is not None and not (np.isfinite(float(temperature)) and float(temperature) > 0):
        raise InvalidInputError(f"temperature must be a positive number, got {temperature!r}")
    from ..io.validation import check_volume_for_model

    t_start = time.perf_counter()
    kind, target, roi = check_segment_options(model, weights=weights, device=device,
                                              roi_subset=roi_subset, runtime=runtime)
    runtime = (runtime or "auto").strip().lower()
    label = target.name if kind == "card" else str(target)
    volume, channel_notes = _channel_inputs(volume, model, label)
    for v in (volume if isinstance(volume, list) else [volume]):
        check_volume_for_model(v, what=f"model {label!r}")
    result = SegmentResult(labels=np.zeros(0, np.uint8), table=LabelTable(), model=label)
    result.notes.extend(channel_notes)
    if kind == "card" and target.family.hu_input:
        result.notes.extend(check_ct_values(volume, what=f"the {label!r} model"))
    report(progress, 0.0, f"{label}: starting")
    check_cancel(cancel)
    if kind == "folder":
        labels, names = _run_folder(target, volume, device, progress, cancel, result, runtime,
                                    confidence=confidence, temperature=temperature)
    else:
        run = _RUNNERS[target.family.kind]
        labels, names = run(target, volume, roi, weights, device, progress, cancel, result,
                            runtime=runtime, confidence=confidence, temperature=temperature)
    check_cancel(cancel)
    if roi is not None:
        keep_ids = [k for k, n in names.items() if n in roi]
        labels = np.where(np.isin(labels, keep_ids), labels, 0).astype(labels.dtype)
        names = {k: names[k] for k in keep_ids}
    max_id = max(max(names, default=0), int(labels.max(initial=0)))
    labels = np.ascontiguousarray(labels.astype(_output_dtype(max_id), copy=False))
    result.labels = labels
    from ..models.totalseg_classes import automatic_table

    # names, the model's colours, published anatomical codes and AUTOMATIC provenance
    result.table = automatic_table(names, label)
    result.timings["total_s"] = time.perf_counter() - t_start
    report(progress, 1.0, f"{label}: done")
    return result


def segment(volume: Volume, model: ModelLike = "hu-tissue", *,
            weights: Optional[Union[str, Path]] = None, device: str = "auto",
            roi_subset: Optional[Sequence[str]] = None,
            progress: Optional[ProgressCallback] = None,
            cancel: Optional[CancelLike] = None, runtime: str = "auto") -> tuple:
    """Segment ``volume`` automatically.

    Parameters
    ----------
    volume : Volume
        A 3D image (CT in HU for the CT models).
    model : str, Path or ModelCard
        Registry name (``medseg weights list``) or an nnU-Net v2 model folder.
    weights : str or Path, optional
        Where the model's weights are (default: cache, then TotalSegmentator's folder).
    device : {"auto", "cpu", "cuda", "mps"}
        Where the network runs ("auto": CUDA, then MPS, then CPU).
    roi_subset : list of str, optional
        Structure names to keep (and, for ``total``, the part models to run).
    progress : callable, optional
        ``(fraction, text)``.
    cancel : CancelToken-like, optional
        Checked between stages; raises :class:`~napari_medseg.errors.Cancelled`.
    runtime : {"auto", "openvino", "torch"}
        What runs the networks on the CPU: ``openvino`` (compiled once, cached on disk;
        any OpenVINO failure falls back to PyTorch with a note) or ``torch``; ``auto`` runs
        nnU-Net networks with OpenVINO when the converted model is cached or the run has
        enough window passes to repay the conversion (``runtimes.conversion_pays``), else
        PyTorch with the reason in the notes. GPUs always run PyTorch.

    Returns
    -------
    labels : numpy.ndarray
        Integer ids on ``volume``'s grid (uint8, or uint16 beyond 255 classes).
    table : LabelTable
        Names and colours of the model's classes.

    Raises
    ------
    InvalidInputError
        Unknown model or structure names (the valid names listed), options the model does
        not use (:func:`check_segment_options`), 2D/NaN input, promptable model, a label
        map or non-CT image for hu-tissue (:func:`check_ct_values`).
    WeightsNotFoundError
        Weights missing (the message says what to run).
    InsufficientMemoryError
        The estimate exceeds the available memory (nothing was started).
    Cancelled
        ``cancel`` was set; nothing was modified.
    """
    res = segment_with_info(volume, model, weights=weights, device=device,
                            roi_subset=roi_subset, progress=progress, cancel=cancel,
                            runtime=runtime)
    return res.labels, res.table
