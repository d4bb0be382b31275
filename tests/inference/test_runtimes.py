"""The runtime choice (inference/runtimes/__init__.py): auto, forced, GPU devices, absent OpenVINO, bad names."""

from __future__ import annotations

import sys

import pytest

from napari_medseg.errors import InvalidInputError
from napari_medseg.inference.runtimes import RUNTIMES, check_runtime, resolve_runtime

pytest.importorskip("openvino")


def test_auto_takes_openvino_on_the_cpu_and_torch_on_gpus(monkeypatch):
    from napari_medseg.inference import runtimes

    assert resolve_runtime("auto", "cpu").used == "torch"  # until every matrix row passes parity
    monkeypatch.setattr(runtimes, "AUTO_PICKS_OPENVINO", True)
    assert resolve_runtime("auto", "cpu").used == "openvino"
    assert resolve_runtime(" OpenVINO ", "cpu").used == "openvino"
    assert resolve_runtime("torch", "cpu").used == "torch"
    cuda = resolve_runtime("auto", "cuda:0")
    assert cuda.used == "torch" and cuda.reason == ""  # auto on a GPU: nothing to report
    forced = resolve_runtime("openvino", "cuda")
    assert forced.used == "torch" and "CPU only" in forced.reason
    assert resolve_runtime("openvino", "mps").used == "torch"
    assert set(RUNTIMES) == {"auto", "openvino", "torch"}


def test_openvino_absent_falls_back_with_the_install_command(monkeypatch):
    from napari_medseg.inference import runtimes

    monkeypatch.setattr(runtimes, "AUTO_PICKS_OPENVINO", True)
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    forced = resolve_runtime("openvino", "cpu")
    assert forced.used == "torch"
    assert "napari-medseg[openvino]" in forced.reason
    auto = resolve_runtime("auto", "cpu")
    assert auto.used == "torch" and "not installed" in auto.reason


# --- bad input and faults
@pytest.mark.parametrize("bad", ["onnx", "cuda", "open vino"])
def test_unknown_runtime_is_refused_with_the_choices(bad):
    with pytest.raises(InvalidInputError, match="auto, openvino, torch"):
        check_runtime(bad)
    with pytest.raises(InvalidInputError, match="unknown runtime"):
        resolve_runtime(bad, "cpu")
