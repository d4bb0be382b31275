"""Device choice and autocast."""

from __future__ import annotations

import pytest

from napari_medseg.errors import InvalidInputError


torch = pytest.importorskip("torch")


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
