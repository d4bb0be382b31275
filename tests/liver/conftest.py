"""Small phantoms and an MSD-layout dataset for the liver tests (coarse grids: fast on CPU)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def one_thread():
    """One torch thread: on a busy shared CPU OpenMP spin-waiting makes more threads slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_phantom(seed: int):
    from napari_medseg.phantom import make_phantom

    return make_phantom(seed=seed, shape=(32, 80, 80), spacing_zyx=(4.0, 2.6, 2.6), n_lesions=2)


def liver_labels(ph) -> np.ndarray:
    out = np.zeros(ph.labels.shape, np.uint8)
    out[ph.labels == 1] = 1
    out[ph.labels == 2] = 2
    return out


@pytest.fixture(scope="session")
def msd_dataset(tmp_path_factory):
    """Three small phantom cases in the Decathlon layout (imagesTr/, labelsTr/)."""
    from napari_medseg.io import write_volume

    root = tmp_path_factory.mktemp("msd")
    for seed in (11, 12, 13):
        ph = small_phantom(seed)
        write_volume(ph.ct, root / "imagesTr" / f"liver_{seed}.nii.gz")
        write_volume(ph.ct.with_array(liver_labels(ph)), root / "labelsTr" / f"liver_{seed}.nii.gz")
    return root


TINY = dict(features=4, heads=2, transformer_layers=1, batch_size=4, patch_size=(32, 32))
COARSE = {"stage1_spacing_xyz": [4.0, 4.0, 4.0], "stage2_spacing_xyz": [2.6, 2.6, 4.0]}
