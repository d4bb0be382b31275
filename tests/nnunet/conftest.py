"""Fixtures for the nnU-Net engine tests: tiny random-weight model folders and the reference.

Networks are tiny (4-16 features, 3 stages) and volumes small, so that nnunetv2's
``nnUNetPredictor`` (the parity reference) runs in seconds on a CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

TINY = dict(patch_size=(16, 32, 32), base_features=4, max_features=16, n_stages=3)


@pytest.fixture(scope="session")
def model_factory(tmp_path_factory):
    """Build (and cache) small model folders by keyword arguments."""
    from napari_medseg.models.nnunet.synthetic import make_random_model_folder

    cache = {}

    def make(**kwargs):
        key = tuple(sorted((k, repr(v)) for k, v in kwargs.items()))
        if key not in cache:
            args = dict(TINY)
            args.update(kwargs)
            out = tmp_path_factory.mktemp("nnunet_model")
            cache[key] = make_random_model_folder(out, **args)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def ct_small(shared_data):
    """The real CT, 3 mm, cropped to 30 slices (122 x 101 x 30), as a Volume."""
    import SimpleITK as sitk

    from napari_medseg.io.volume import Volume

    path = shared_data / "totalseg_example" / "example_ct_sm.nii.gz"
    return Volume.from_sitk(sitk.ReadImage(str(path)), modality="CT")


@pytest.fixture(scope="session")
def synthetic_ct():
    """A small synthetic CT (air, body ellipse, organs, bone) with anisotropic spacing."""
    from napari_medseg.io.volume import Volume

    rng = np.random.default_rng(3)
    z, y, x = np.mgrid[0:16, 0:48, 0:56]
    arr = np.full(z.shape, -1000.0)
    body = ((y - 24) / 21.0) ** 2 + ((x - 28) / 25.0) ** 2 < 1
    arr[body] = 40.0
    arr[((y - 20) / 7.0) ** 2 + ((x - 20) / 8.0) ** 2 + ((z - 8) / 6.0) ** 2 < 1] = 120.0
    arr[((y - 38) / 4.0) ** 2 + ((x - 28) / 4.0) ** 2 < 1] = 700.0
    arr += rng.normal(0, 15, arr.shape)
    # 7 mm slices, 2 mm pixels: anisotropic enough (> 3x) for nnU-Net's separate-z resampling
    return Volume(arr.astype(np.int16), spacing=(2.0, 2.0, 7.0), origin=(10.0, -5.0, 3.0),
                  modality="CT")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread: on this shared 2-core machine OpenMP barriers dominate tiny nets.

    Both engines run in this process, so the comparison is unaffected.
    """
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
