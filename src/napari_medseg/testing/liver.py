"""Small phantom cases and tiny settings for the liver cascade's tests (coarse grids: fast on CPU)."""

from __future__ import annotations

import numpy as np

#: a tiny hybrid network and training run (seconds on a CPU)
TINY = dict(features=4, heads=2, transformer_layers=1, batch_size=4, patch_size=(32, 32))
#: coarse stage spacings (mm, xyz) matching :func:`small_phantom`
COARSE = {"stage1_spacing_xyz": [4.0, 4.0, 4.0], "stage2_spacing_xyz": [2.6, 2.6, 4.0]}


def small_phantom(seed: int):
    """A 32 x 80 x 80 phantom (4 x 2.6 x 2.6 mm) with two lesions.

    Parameters
    ----------
    seed : int
        The phantom's seed.

    Returns
    -------
    napari_medseg.phantom.Phantom
    """
    from ..phantom import make_phantom

    return make_phantom(seed=seed, shape=(32, 80, 80), spacing_zyx=(4.0, 2.6, 2.6), n_lesions=2)


def liver_labels(ph) -> np.ndarray:
    """The phantom's labels reduced to the cascade's classes (1 liver, 2 lesion)."""
    out = np.zeros(ph.labels.shape, np.uint8)
    out[ph.labels == 1] = 1
    out[ph.labels == 2] = 2
    return out


# Random-weight hybrid-liver networks and checkpoints for the runtime parity tests and
# benchmarks/bench_liver.py (torch imported inside: this module is also used without it).
#: the network of benchmarks/train_liver_synthetic.py (its defaults: 8 features, 2 heads;
#: 4 levels, 2 transformer layers and batch norm from DEFAULT_CONFIG)
SYNTHETIC_TRAINED = {"features": 8, "heads": 2}
#: a random-weight network small enough to convert in seconds
TINY_NET = {"features": 4, "levels": 3, "transformer_layers": 1, "heads": 2}


def random_net(config: dict, seed: int):
    """A network with random weights and, for batch norm, random running statistics (the
    defaults, mean 0 and variance 1, would hide a wrongly converted norm)."""
    import torch

    from ..models.hybrid_liver import build_model

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
    import torch

    from ..models.hybrid_liver import preprocessing as pp

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
    from ..models.hybrid_liver import DEFAULT_PREPROCESSING, make_checkpoint
    from ..models.hybrid_liver import preprocessing as pp

    pre = dict(DEFAULT_PREPROCESSING, **COARSE)
    coarse = pp.stage1_input(ph.ct.array, ph.ct.spacing_zyx, pre)
    fine = pp.stage2_input(ph.ct.array, ph.ct.spacing_zyx, pre)
    stage1 = foreground_fraction(random_net(TINY_NET, 1), coarse, 0.3)
    stage2 = foreground_fraction(random_net(TINY_NET, 2), fine, 0.3)
    return make_checkpoint(stage1, stage2, preprocessing=pre)
