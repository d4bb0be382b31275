"""Fixtures of the cohort runner tests (``tests/batch``) and of ``medseg batch`` (``tests/cli/test_batch.py``): small cohorts, a random-weight nnU-Net model, and
one Ray cluster (2 CPUs) for the whole session that every ``--engine ray`` run joins."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ._helpers import write_phantom_cohort


@pytest.fixture(scope="session")
def phantom_files(tmp_path_factory) -> list:
    """Four phantoms of different sizes (written once; tests copy them)."""
    return write_phantom_cohort(tmp_path_factory.mktemp("phantoms"))


@pytest.fixture
def cohort(tmp_path, phantom_files) -> Path:
    """A fresh cohort folder holding copies of the four phantoms."""
    folder = tmp_path / "cohort"
    folder.mkdir()
    for p in phantom_files:
        shutil.copy2(p, folder / Path(p).name)
    return folder


@pytest.fixture
def real_cohort(tmp_path, phantom_files, shared_data) -> Path:
    """Two phantoms plus two copies of the real CT (skips without ../shared/data)."""
    folder = tmp_path / "real_cohort"
    folder.mkdir()
    for p in phantom_files[:2]:
        shutil.copy2(p, folder / Path(p).name)
    ct = shared_data / "totalseg_example" / "example_ct_sm.nii.gz"
    for name in ("realA.nii.gz", "realB.nii.gz"):
        shutil.copy2(ct, folder / name)
    return folder


@pytest.fixture(scope="session")
def nnunet_model(tmp_path_factory) -> Path:
    """A tiny random-weight nnU-Net v2 model folder (3 mm, 4 classes)."""
    pytest.importorskip("torch")
    from napari_medseg.testing.nnunet import make_random_model_folder

    return make_random_model_folder(tmp_path_factory.mktemp("nnunet"), patch_size=(16, 32, 32),
                                    base_features=4, max_features=16, n_stages=3,
                                    spacing=(3.0, 3.0, 3.0))


@pytest.fixture(scope="session")
def ray_address():
    """Address of a local 2-CPU Ray cluster started once for the session (the CLI joins it
    with ``--address``); stopped by the process that started it."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    code = ("import ray, sys\n"
            "ctx = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)\n"
            "print(ctx.address_info['gcs_address'], flush=True)\n"
            "sys.stdin.read()\n"
            "ray.shutdown()\n")
    # Ray >= 2.5x generates an auth token per local cluster; a loopback test cluster does
    # without, so that the CLI subprocesses (which inherit this variable) can join it.
    old_mode = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    address = proc.stdout.readline().strip()
    if not address:
        proc.kill()
        pytest.fail("could not start a local Ray cluster for the tests")
    yield address
    proc.stdin.close()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
    if old_mode is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = old_mode
