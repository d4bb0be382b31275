"""Bad input to automatic segmentation: a specific error, a useful message, nothing changed."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.errors import (Cancelled, InsufficientMemoryError, InvalidInputError,
                                  WeightsNotFoundError)
from napari_medseg.inference.segment import segment
from napari_medseg.io.volume import Volume
from napari_medseg.progress import CancelToken


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_WEIGHTS_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "no-totalseg"))


def ct(shape=(12, 40, 40), value=40, dtype=np.int16) -> Volume:
    arr = np.full(shape, -1000, dtype)
    z, y, x = shape
    arr[:, y // 4: 3 * y // 4, x // 4: 3 * x // 4] = value
    return Volume(arr, spacing=(2.0, 2.0, 3.0), modality="CT")


def nan_ct() -> Volume:
    v = ct(dtype=np.float32)
    v.array[3, 5, 5] = np.nan
    return v


CASES = [
    # (id, volume factory, kwargs, error type, message regex)
    ("2D image", lambda: ct((1, 40, 40)), {}, InvalidInputError, r"2D image \(one slice\)"),
    ("NaN voxels", nan_ct, {}, InvalidInputError, r"1 NaN/Inf voxel"),
    ("bool image", lambda: Volume(np.ones((4, 8, 8), bool)), {}, InvalidInputError, "needs numbers"),
    ("unknown model", ct, {"model": "totalsegmentator"}, InvalidInputError, "unknown model"),
    ("model typo", ct, {"model": "total-fats"}, InvalidInputError, "did you mean 'total-fast'"),
    ("structure typo", ct, {"roi_subset": ["lugn"]}, InvalidInputError, "did you mean 'lung'"),
    ("empty roi", ct, {"roi_subset": []}, InvalidInputError, "roi_subset is empty"),
    ("total typo", ct, {"model": "total", "roi_subset": ["livr", "aorta"]}, InvalidInputError,
     "did you mean 'liver'"),
    ("promptable model", ct, {"model": "sam-med3d-turbo"}, InvalidInputError, "promptable"),
    ("missing weights", ct, {"model": "total-fast"}, WeightsNotFoundError,
     "medseg weights download total-fast"),
    ("missing folder", ct, {"model": "/no/such/model"}, InvalidInputError, "does not exist"),
    ("not a model folder", ct, {"model": "."}, InvalidInputError, "not an nnU-Net v2 model folder"),
    ("bad weights path", ct, {"model": "total-fast", "weights": "/no/such/dir"},
     WeightsNotFoundError, "does not exist"),
]


@pytest.mark.parametrize("case, make, kwargs, error, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_clear_error_and_changes_nothing(case, make, kwargs, error, message):
    volume = make()
    before = volume.array.copy()
    with pytest.raises(error, match=message):
        segment(volume, **kwargs)
    np.testing.assert_array_equal(volume.array, before)


def test_memory_refusal_before_starting(monkeypatch):
    monkeypatch.setenv("MEDSEG_AVAILABLE_MEMORY", str(10 * 2**20))  # 10 MiB
    volume = ct()
    steps = []
    with pytest.raises(InsufficientMemoryError, match=r"needs about .* GiB of memory"):
        segment(volume, progress=lambda f, t: steps.append(t))
    assert not any("body" in s for s in steps)  # refused before the first stage


def test_forced_missing_device_is_refused(monkeypatch, tmp_path):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    (tmp_path / "plans.json").write_text("{}")
    with pytest.raises(InvalidInputError, match="(?i)cuda"):
        segment(ct(), tmp_path, device="cuda")


def test_cancel_raises_and_leaves_input_unchanged():
    volume = ct((20, 64, 64))
    before = volume.array.copy()
    token = CancelToken()

    def progress(fraction, text):
        if fraction > 0.2:
            token.cancel()

    with pytest.raises(Cancelled):
        segment(volume, progress=progress, cancel=token)
    np.testing.assert_array_equal(volume.array, before)
    token.reset()
    labels, _ = segment(volume, cancel=token)  # a rerun works
    assert labels.any()
