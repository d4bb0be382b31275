"""``medseg calibrate`` as users run it: reference labels drawn from the model's own softmax at
a known temperature give back that temperature; mistakes are one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_medseg.io import write_labels, write_volume
from napari_medseg.io.volume import Volume

from ._run import medseg

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    pytest.importorskip("torch")
    from napari_medseg.testing.nnunet import make_random_model_folder

    return make_random_model_folder(tmp_path_factory.mktemp("cal"), n_classes=3,
                                    patch_size=(16, 16, 16), spacing=(4.0, 4.0, 4.0),
                                    base_features=4, max_features=8, seed=1)


def _cases(folder, model, t_true, n=2):
    """Images and reference labels drawn voxel by voxel from softmax(scores / t_true)."""
    from napari_medseg.analysis.calibration import calibration_samples

    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    rng = np.random.default_rng(7)
    for k in range(n):
        vol = Volume(rng.normal(0, 300, (10, 20, 24)).astype(np.float32) + 1000.0,
                     spacing=(4.0, 3.0, 5.0), modality="CT")
        # every voxel (no zeros: nnU-Net's crop is the whole image), in C order
        z, _ = calibration_samples(vol, np.zeros(vol.shape, np.uint8), model, device="cpu",
                                   max_voxels=vol.array.size)
        p = np.exp((z - z.max(0)) / t_true)
        p /= p.sum(0)
        u = rng.random(p.shape[1])
        y = (u[None] > np.cumsum(p, 0)).sum(0).astype(np.uint8).reshape(vol.shape)
        write_volume(vol, folder / "images" / f"case{k}.nii.gz")
        write_labels(vol.with_array(y), folder / "labels" / f"case{k}.nii.gz")
    return folder


@pytest.mark.parametrize("t_true", [0.4, 2.5])
def test_fitted_temperature_is_the_one_the_labels_were_drawn_with(model_folder, tmp_path, t_true):
    cases = _cases(tmp_path / "cases", model_folder, t_true)
    out = tmp_path / "t.json"
    res = medseg("calibrate", cases, "--model", model_folder, "--device", "cpu", "-o", out)
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    assert doc["temperature"] == pytest.approx(t_true, rel=0.15)
    assert f"--temperature {doc['temperature']:.4g}"[:16] in res.stdout
    assert "medseg segment" in res.stdout and doc["cases"] == 2


def test_calibrate_mistakes_are_refused(model_folder, tmp_path):
    cases = _cases(tmp_path / "cases", model_folder, 1.0, n=1)
    from napari_medseg.io import read_volume

    vol = read_volume(cases / "images" / "case0.nii.gz")
    write_labels(vol.with_array(np.full(vol.shape, 7, np.uint8)), cases / "labels" / "case0.nii.gz")
    res = medseg("calibrate", cases, "--model", model_folder, "--device", "cpu", "-o", tmp_path / "t.json")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "[7]" in res.stderr and "0..2" in res.stderr and "case0" in res.stderr
    assert not (tmp_path / "t.json").exists()
    res = medseg("calibrate", tmp_path / "nothing", "--model", model_folder)
    assert res.returncode == 2 and "does not exist" in res.stderr
    (tmp_path / "empty").mkdir()
    res = medseg("calibrate", tmp_path / "empty", "--model", model_folder)
    assert res.returncode == 2 and "images/ and labels/" in res.stderr
    res = medseg("calibrate", cases, "--model", "hu-tissue")
    assert res.returncode == 2 and "model folder" in res.stderr
