"""Device choice and the memory check."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from napari_medseg.errors import InsufficientMemoryError, InvalidInputError  # noqa: E402


def test_choose_device_auto_and_forced(monkeypatch):
    from napari_medseg.inference.device import autocast_enabled, choose_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert choose_device("auto").type == "cpu"
    assert choose_device("CPU").type == "cpu"
    with pytest.raises(InvalidInputError, match="no CUDA GPU"):
        choose_device("cuda")
    with pytest.raises(InvalidInputError, match="MPS is not available"):
        choose_device("mps")
    with pytest.raises(InvalidInputError, match="unknown device 'tpu'"):
        choose_device("tpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert choose_device("auto").type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device("auto").type == "cuda"
    assert autocast_enabled(torch.device("cuda")) and not autocast_enabled(torch.device("cpu"))


def test_check_memory_message(monkeypatch):
    from napari_medseg.inference.memory import available_memory, check_memory

    assert available_memory() is None or available_memory() > 0
    with pytest.raises(InsufficientMemoryError, match=r"needs about 8\.0 GiB of memory, 2\.0 GiB available"):
        check_memory(8 * 2**30, "the job", available=2 * 2**30)
    check_memory(1 * 2**30, "the job", available=2 * 2**30)
    monkeypatch.setenv("MEDSEG_AVAILABLE_MEMORY", str(2**20))
    assert available_memory() == 2**20


def test_predict_refuses_before_starting_when_memory_is_short(model_factory, monkeypatch):
    import numpy as np

    from napari_medseg.io.volume import Volume
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor

    model = NnUNetPredictor.from_folder(model_factory(n_classes=3), device="cpu")
    monkeypatch.setenv("MEDSEG_AVAILABLE_MEMORY", str(2**20))
    calls = []
    with pytest.raises(InsufficientMemoryError, match="nnU-Net prediction .* needs about"):
        model.predict(Volume(np.zeros((40, 64, 64), np.int16), spacing=(0.8, 0.8, 1.0)),
                      progress=lambda f, t: calls.append(t))
    assert calls == []  # refused before any work


def test_out_of_memory_in_a_window_becomes_a_clear_error(model_factory, synthetic_ct, monkeypatch):
    """A window that cannot fit (simulated CUDA OOM) ends in InsufficientMemoryError, after
    first retrying with one mirrored variant per pass."""
    from napari_medseg.inference import sliding_window as sw
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor

    model = NnUNetPredictor.from_folder(model_factory(n_classes=3), device="cpu")
    batches = []

    def oom(network, x, combos, mirror_batch):
        batches.append(mirror_batch)
        raise torch.cuda.OutOfMemoryError("simulated")

    monkeypatch.setattr(sw, "_predict_window", oom)
    with pytest.raises(InsufficientMemoryError, match="does not fit in the memory of cpu.*device='cpu'"):
        model.predict(synthetic_ct)
    assert batches[0] > 1 and batches[-1] == 1
