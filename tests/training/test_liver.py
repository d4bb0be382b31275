"""The liver cascade's training loop: a few steps reduce the loss (tiny, CPU)."""

from __future__ import annotations

import numpy as np
import torch

from napari_medseg.models import hybrid_liver as hl
from napari_medseg.testing.liver import COARSE, TINY, liver_labels, small_phantom


def test_few_steps_reduce_loss(one_thread):
    from napari_medseg.training import data as td
    from napari_medseg.training.liver import Trainer, TrainConfig

    ph = small_phantom(21)
    pre = dict(hl.DEFAULT_PREPROCESSING, **COARSE)
    case = td.prepare_case("c", ph.ct, liver_labels(ph), pre)
    cfg = TrainConfig(epochs=1, steps_per_epoch=25, lr=5e-3, **TINY)
    trainer = Trainer([case], cfg, pre, torch.device("cpu"))
    batch = trainer.samplers[1].batch(4)
    assert batch[0].shape == (4, 3, 32, 32) and set(np.unique(batch[1].numpy())) <= {0, 1}
    first = trainer.train_step(1, batch)
    losses = [trainer.train_step(1, batch) for _ in range(24)]
    assert min(losses[-5:]) < 0.8 * first
