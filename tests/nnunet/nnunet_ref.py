"""Helpers shared by the nnU-Net engine tests (reference prediction, Dice)."""

from __future__ import annotations

import numpy as np


def reference_predict(folder, volume, folds=(0,), use_mirroring=True, tile_step_size=0.5):
    """nnunetv2's own prediction for ``volume`` (the parity reference), on the CPU."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    import torch

    predictor = nnUNetPredictor(tile_step_size=tile_step_size, use_mirroring=use_mirroring,
                                perform_everything_on_device=False, device=torch.device("cpu"),
                                verbose=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(folder), use_folds=tuple(folds))
    props = {"spacing": [float(s) for s in volume.spacing_zyx]}
    return predictor.predict_single_npy_array(volume.array[None].astype(np.float32), props)


def dice_per_class(a, b, n_classes):
    out = {}
    for c in range(1, n_classes):
        sa, sb = a == c, b == c
        denom = sa.sum() + sb.sum()
        if denom:
            out[c] = 2.0 * np.logical_and(sa, sb).sum() / denom
    return out
