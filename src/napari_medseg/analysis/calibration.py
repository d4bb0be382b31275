"""Which models have confidence maps, and the class scores that fit a model's temperature.

:func:`confidence_unavailable` says why a model has no confidence map (hu-tissue and
deepbet return labels without class probabilities). :func:`calibration_samples` runs an
nnU-Net model on one labelled case and returns its class scores at a random sample of
voxels of the case's grid together with the reference labels there: what
:func:`~napari_medseg.analysis.confidence.fit_temperature` needs (``medseg calibrate``).
"""

from __future__ import annotations

from typing import Optional

__all__ = ["confidence_unavailable", "calibration_samples"]


def confidence_unavailable(model) -> str:
    """Why ``model`` has no confidence map (``""``: it has one).

    Parameters
    ----------
    model : str, Path or ModelCard
        A registry name or an nnU-Net model folder (as for ``medseg segment``).

    Returns
    -------
    str
        Empty for network models with class probabilities; else a sentence naming the
        model and the reason.
    """
    from ..inference.segment import resolve_model

    kind, target = resolve_model(model)
    if kind == "card" and target.family.no_probabilities:
        return f"{target.name}: {target.family.no_probabilities}, so it has no confidence map"
    return ""


def calibration_samples(volume, reference, model, *, device: str = "cpu", max_voxels: int = 200_000,
                        seed: int = 0, progress=None, cancel=None) -> tuple:
    """An nnU-Net model's class scores at a random sample of a labelled case's voxels.

    The scores are the engine's own (sliding window over the preprocessed image, the
    fold ensemble's float16 accumulators), resampled to the case's grid slab by slab as
    for the labels (:func:`~napari_medseg.inference.resample.resample_logits_to_labels`);
    only the sampled voxels of each slab are kept, so no (classes x voxels) array of the
    case's grid is made. Voxels outside nnU-Net's non-zero crop (background by
    construction) are not sampled.

    Parameters
    ----------
    volume : Volume
        The image.
    reference : numpy.ndarray
        Reference label ids on the image's grid (0..classes-1 of the model).
    model : str or Path
        An nnU-Net v2 trained-model folder.
    device : str
        Where the network runs.
    max_voxels : int
        Voxels sampled from this case (uniformly, seeded).
    seed : int
        Seeds the sample.
    progress, cancel
        As for :func:`~napari_medseg.inference.segment.segment_with_info`.

    Returns
    -------
    scores : numpy.ndarray
        float32 (classes, N) logits at the sampled voxels.
    labels : numpy.ndarray
        int64 (N,) reference labels there.

    Raises
    ------
    InvalidInputError
        The reference is not on the image's grid, or holds ids outside the model's classes.
    """
    import numpy as np
    import torch

    from ..errors import InvalidInputError
    from ..inference.nnunet_predictor import NnUNetPredictor, _reorient_to_ras
    from ..inference.preprocessing import preprocess_case
    from ..inference.resample import _plan, _resample_channel_block, _row_chunks
    from ..inference.segment import resolve_model
    from ..inference.sliding_window import sliding_window_logits

    kind, target = resolve_model(model)
    if kind != "folder":
        raise InvalidInputError(f"calibration needs an nnU-Net v2 model folder; {model!s} is the "
                                "registry model's name: give the folder its weights are in")
    ref = np.asarray(reference)
    if ref.shape != tuple(volume.shape):
        raise InvalidInputError(f"the reference labels {ref.shape} are not on the image's grid "
                                f"{tuple(volume.shape)}")
    predictor = NnUNetPredictor.from_folder(target, device=device)
    n = predictor.num_classes
    ids = np.unique(ref)
    bad = [int(i) for i in ids if i < 0 or i >= n]
    if bad:
        raise InvalidInputError(
            f"reference label ids {bad} are outside the model's classes 0..{n - 1} "
            f"({', '.join(f'{k}={v}' for k, v in sorted(predictor.labels.items()))}); "
            "relabel the reference to the model's ids")
    image = np.asarray(volume.array)
    spacing = volume.spacing_zyx
    if predictor.plans.image_reader_writer == "NibabelIOWithReorient":
        axes, flips, spacing = _reorient_to_ras(volume)
        image = np.flip(np.transpose(image, axes), flips)
        ref = np.flip(np.transpose(ref, axes), flips)
    pre, geom = preprocess_case(image[None], spacing, predictor.plans)
    ref = np.transpose(ref, predictor.plans.transpose_forward)
    ref = np.ascontiguousarray(ref[tuple(slice(a, b) for a, b in geom.bbox)])
    logits = predictor._sliding_window(sliding_window_logits, torch.from_numpy(pre),
                                       predictor.mirror_axes, 0.5, progress, cancel)
    del pre
    shape = tuple(int(s) for s in geom.shape_after_cropping)
    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(ref.size, size=min(int(max_voxels), ref.size), replace=False))
    zs = take // int(np.prod(shape[1:]))
    kw = predictor.plans.probabilities_resampling_kwargs
    order, order_z = int(kw.get("order", 1)), int(kw.get("order_z", 0))
    same = tuple(logits.shape[1:]) == shape
    if not same:
        sep = _plan(logits.shape[1:], shape, geom.target_spacing, geom.original_spacing, order,
                    order_z, kw.get("force_separate_z"),
                    float(kw.get("separate_z_anisotropy_threshold", 3)))
        if sep is None:
            lo = logits.amin(dim=(1, 2, 3), keepdim=True).float()
            hi = logits.amax(dim=(1, 2, 3), keepdim=True).float()
    scores = np.empty((n, take.size), np.float32)
    for r0, r1 in _row_chunks(shape, n):
        sel = (zs >= r0) & (zs < r1)
        if not sel.any():
            continue
        if same:
            slab = logits[:, r0:r1].float()
        else:
            slab = _resample_channel_block(logits, shape, order, sep, order_z, slice(r0, r1))
            if sep is None:
                slab = torch.maximum(torch.minimum(slab, hi), lo)
            slab = slab.float()
        local = take[sel] - r0 * int(np.prod(shape[1:]))
        scores[:, sel] = slab.reshape(n, -1)[:, torch.from_numpy(local)].numpy()
    return scores, ref.ravel()[take].astype(np.int64)
