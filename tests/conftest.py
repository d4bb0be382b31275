"""Shared test fixtures.

Real data lives in ``../shared/data`` beside the repository (never copied in).
Tests that need it use the ``shared_data`` fixture, which skips with a reason when
the folder is absent (CI always has it). ``MEDSEG_SHARED_DIR`` overrides the place.

The fixtures shared by several test packages live here too: tiny nnU-Net model folders and
small CTs (inference, models/nnunet, cli), the liver dataset, and SAM-Med3D networks
(models/sam_med3d, prompts). torch is imported inside them only.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDSEG_SHARED_DIR", REPO.parent / "shared"))


@pytest.fixture(scope="session", autouse=True)
def _compiled_models_in_tmp(tmp_path_factory):
    """Networks compiled by the OpenVINO runtime go to a per-run folder, not ~/.cache
    (the CLI subprocesses inherit the variable)."""
    old = os.environ.get("MEDSEG_COMPILED_DIR")
    os.environ["MEDSEG_COMPILED_DIR"] = str(tmp_path_factory.mktemp("compiled"))
    yield
    if old is None:
        os.environ.pop("MEDSEG_COMPILED_DIR", None)
    else:
        os.environ["MEDSEG_COMPILED_DIR"] = old


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (data and fixtures), or skip."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"shared data folder not found at {SHARED} (set MEDSEG_SHARED_DIR)")
    return SHARED


@pytest.fixture(scope="session")
def shared_data(shared_dir: Path) -> Path:
    """``../shared/data``: the real CT (totalseg_example/) and DICOM (dcmqi_ct3slice/)."""
    return shared_dir / "data"


@pytest.fixture(scope="session")
def shared_fixtures(shared_dir: Path) -> Path:
    """``../shared/fixtures``: checkpoint manifests and reference outputs."""
    path = shared_dir / "fixtures"
    if not path.is_dir():
        pytest.skip(f"fixtures folder not found at {path}")
    return path


@pytest.fixture(scope="session")
def one_thread():
    """One torch thread: on a busy shared CPU OpenMP spin-waiting makes more threads slower.

    Both engines of a parity test run in this process, so comparisons are unaffected.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_torch_thread():
    """One torch thread for one test (tiny networks on a shared CPU: no spin contention)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- nnU-Net: tiny random-weight model folders (4-16 features, 3 stages) and small volumes,
# so that nnunetv2's ``nnUNetPredictor`` (the parity reference) runs in seconds on a CPU.
NNUNET_TINY = dict(patch_size=(16, 32, 32), base_features=4, max_features=16, n_stages=3)


@pytest.fixture(scope="session")
def model_factory(tmp_path_factory):
    """Build (and cache) small model folders by keyword arguments."""
    from napari_medseg.testing.nnunet import make_random_model_folder

    cache = {}

    def make(**kwargs):
        key = tuple(sorted((k, repr(v)) for k, v in kwargs.items()))
        if key not in cache:
            args = dict(NNUNET_TINY)
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


# --- the liver cascade: three small phantom cases in the Decathlon layout
@pytest.fixture(scope="session")
def msd_dataset(tmp_path_factory):
    """Three small phantom cases in the Decathlon layout (imagesTr/, labelsTr/)."""
    from napari_medseg.io import write_volume
    from napari_medseg.testing.liver import liver_labels, small_phantom

    root = tmp_path_factory.mktemp("msd")
    for seed in (11, 12, 13):
        ph = small_phantom(seed)
        write_volume(ph.ct, root / "imagesTr" / f"liver_{seed}.nii.gz")
        write_volume(ph.ct.with_array(liver_labels(ph)), root / "labelsTr" / f"liver_{seed}.nii.gz")
    return root


# --- SAM-Med3D: the fixture manifest, deterministic and tiny networks
@pytest.fixture(scope="session")
def sam_shapes(shared_fixtures) -> dict:
    """Key -> shape of the released SAM-Med3D state dict (shared fixture)."""
    import json

    return json.loads((shared_fixtures / "sam_med3d_state_dict.json").read_text())


@pytest.fixture(scope="session")
def sam_reference(shared_fixtures) -> dict:
    with np.load(shared_fixtures / "sam_med3d_reference.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def deterministic_net(sam_shapes):
    """Full-size SAM-Med3D with the fixture's deterministic weights."""
    from napari_medseg.models.sam_med3d import build_sam_med3d
    from napari_medseg.testing.sam_med3d import deterministic_state_dict

    net = build_sam_med3d()
    net.load_state_dict(deterministic_state_dict(sam_shapes["state_dict_shapes"]), strict=True)
    return net


@pytest.fixture
def tiny_net():
    """A small SAM-Med3D of the same architecture (fast encoder) with seeded weights."""
    import torch

    from napari_medseg.models.sam_med3d import build_sam_med3d

    torch.manual_seed(0)
    return build_sam_med3d(embed_dim=48, depth=2, num_heads=2, global_attn_indexes=(1,), prompt_dim=48)


@pytest.fixture(scope="module")
def ct3(shared_data):
    """The dcmqi 3-slice CT series: ``(folder, image Volume, liver label Volume on its grid)``."""
    from napari_medseg.io import read_labels, read_volume

    folder = shared_data / "dcmqi_ct3slice"
    ct = read_volume(folder)
    ref, _ = read_labels(folder / "liver_seg.nrrd", reference=ct)
    return folder, ct, ref


@pytest.fixture(scope="module")
def mr_phantom():
    """The small abdominal phantom the MR tests contrast (``phantom.mr_contrast``)."""
    from napari_medseg.phantom import make_phantom

    return make_phantom(seed=0, shape=(48, 128, 128), spacing_zyx=(4.0, 1.6, 1.6), n_lesions=2)


@pytest.fixture
def n4_fits(monkeypatch):
    """The shapes of the N4 fits that really run (a cache hit runs none), with an empty
    cache at its default bound before and after the test."""
    from napari_medseg.inference import bias_field

    bias_field.clear_cache()
    calls = []
    real = bias_field._fit_and_divide

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(bias_field, "_fit_and_divide", counting)
    yield calls
    bias_field.clear_cache()
    bias_field.set_cache_limit(bias_field.DEFAULT_CACHE_BYTES)
