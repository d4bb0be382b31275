"""Random-weight hybrid-liver networks and checkpoints for runtime parity tests (shared by
tests/inference and tests/cli)."""

from __future__ import annotations

import torch

from napari_medseg.models.hybrid_liver import preprocessing as pp

#: the network of benchmarks/train_liver_synthetic.py (its defaults: 8 features, 2 heads;
#: 4 levels, 2 transformer layers and batch norm from DEFAULT_CONFIG)
SYNTHETIC_TRAINED = {"features": 8, "heads": 2}
#: a random-weight network small enough to convert in seconds
TINY_NET = {"features": 4, "levels": 3, "transformer_layers": 1, "heads": 2}


def random_net(config: dict, seed: int):
    """A network with random weights and, for batch norm, random running statistics (the
    defaults, mean 0 and variance 1, would hide a wrongly converted norm)."""
    from napari_medseg.models.hybrid_liver import build_model

    torch.manual_seed(seed)
    net = build_model(config).eval()
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return net


def foreground_fraction(net, volume01, fraction: float):
    """Shift the head's foreground bias so that about ``fraction`` of ``volume01``'s voxels
    come out foreground (a random network's map is otherwise all or nothing)."""
    x = torch.from_numpy(pp.slabs(volume01, range(volume01.shape[0]), int(net.config["context"])))
    with torch.inference_mode():
        logits = net(x)
    margin = (logits[:, 1] - logits[:, 0]).flatten()
    with torch.no_grad():
        net.head.conv.conv.bias[1] -= torch.quantile(margin, 1 - fraction)
    return net


def tiny_checkpoint(ph) -> dict:
    """A checkpoint of random tiny stage networks for the phantom ``ph`` (coarse grids) whose
    stages find a 'liver' and 'lesions' in it, so both stages run."""
    from napari_medseg.models.hybrid_liver import DEFAULT_PREPROCESSING, make_checkpoint
    from napari_medseg.testing.liver import COARSE

    pre = dict(DEFAULT_PREPROCESSING, **COARSE)
    coarse = pp.stage1_input(ph.ct.array, ph.ct.spacing_zyx, pre)
    fine = pp.stage2_input(ph.ct.array, ph.ct.spacing_zyx, pre)
    stage1 = foreground_fraction(random_net(TINY_NET, 1), coarse, 0.3)
    stage2 = foreground_fraction(random_net(TINY_NET, 2), fine, 0.3)
    return make_checkpoint(stage1, stage2, preprocessing=pre)
