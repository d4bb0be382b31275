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
