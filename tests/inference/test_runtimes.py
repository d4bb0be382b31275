"""The runtime choice (inference/runtimes/__init__.py): auto per network family and its
conversion rule, forced choices, GPU devices, absent OpenVINO, bad names."""

from __future__ import annotations

import logging
import sys

import pytest

from napari_medseg.errors import InvalidInputError
from napari_medseg.inference.runtimes import (AUTO_MIN_PASSES, RUNTIMES, RuntimeReport,
                                              check_runtime, compile_module, conversion_pays,
                                              describe_runtime, resolve_runtime)

pytest.importorskip("openvino")
torch = pytest.importorskip("torch")


def test_auto_takes_openvino_for_nnunet_on_the_cpu_and_torch_elsewhere():
    assert resolve_runtime("auto", "cpu", family="nnunet").used == "openvino"
    # families whose parity gates have not passed everywhere keep PyTorch under auto
    other = resolve_runtime("auto", "cpu")
    assert other.used == "torch" and other.reason == ""
    assert resolve_runtime("auto", "cpu", family="sam_med3d").used == "torch"
    assert resolve_runtime(" OpenVINO ", "cpu").used == "openvino"  # forced: any family
    assert resolve_runtime("torch", "cpu", family="nnunet").used == "torch"
    cuda = resolve_runtime("auto", "cuda:0", family="nnunet")
    assert cuda.used == "torch" and cuda.reason == ""  # auto on a GPU: nothing to report
    forced = resolve_runtime("openvino", "cuda")
    assert forced.used == "torch" and "CPU only" in forced.reason
    assert resolve_runtime("openvino", "mps").used == "torch"
    assert set(RUNTIMES) == {"auto", "openvino", "torch"}


def test_openvino_absent_falls_back_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    forced = resolve_runtime("openvino", "cpu")
    assert forced.used == "torch"
    assert "napari-medseg[openvino]" in forced.reason
    auto = resolve_runtime("auto", "cpu", family="nnunet")
    assert auto.used == "torch" and "not installed" in auto.reason


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 4, 3, padding=1)
        self.norm = torch.nn.InstanceNorm3d(4, affine=True)

    def forward(self, x):
        return torch.relu(self.norm(self.conv(x)))


def test_auto_converts_only_when_the_run_repays_it_or_the_model_is_cached(monkeypatch, tmp_path,
                                                                          caplog):
    monkeypatch.setenv("MEDSEG_COMPILED_DIR", str(tmp_path))
    torch.manual_seed(0)
    net, shape = _Net().eval(), (1, 1, 8, 8, 8)

    # not cached, too few passes: auto stays PyTorch, says why (info, not a warning)
    few = resolve_runtime("auto", "cpu", family="nnunet")
    with caplog.at_level(logging.INFO, logger="napari_medseg.inference.runtimes"):
        assert not conversion_pays(few, net, shape, passes=AUTO_MIN_PASSES - 1)
    assert few.used == "torch" and f"this run: {AUTO_MIN_PASSES - 1}" in few.reason
    assert "--runtime openvino" in few.reason
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "Not OpenVINO: auto converts" in describe_runtime(few)
    assert list(tmp_path.iterdir()) == []  # nothing was converted

    # forced openvino converts whatever the run's size
    forced = resolve_runtime("openvino", "cpu")
    assert conversion_pays(forced, net, shape, passes=1)
    assert compile_module(net, shape, report=forced) is not None and forced.compiled == 1

    # the model is cached now: auto reads it back even for a one-window run
    cached = resolve_runtime("auto", "cpu", family="nnunet")
    assert conversion_pays(cached, net, shape, passes=1) and cached.used == "openvino"
    fn = compile_module(net, shape, report=cached)
    assert fn is not None and cached.cache_hits == 1 and cached.compiled == 0

    # other weights are another model: not cached, decided on the window count again
    with torch.no_grad():
        net.conv.weight.add_(1.0)
    changed = resolve_runtime("auto", "cpu", family="nnunet")
    assert not conversion_pays(changed, net, shape, passes=1) and changed.used == "torch"
    enough = resolve_runtime("auto", "cpu", family="nnunet")
    assert conversion_pays(enough, net, shape, passes=AUTO_MIN_PASSES)
    # a report already on torch (a fallback, a GPU) never converts
    assert not conversion_pays(RuntimeReport(requested="auto", used="torch"), net, shape,
                               passes=10 * AUTO_MIN_PASSES)


# --- bad input and faults
@pytest.mark.parametrize("bad", ["onnx", "cuda", "open vino"])
def test_unknown_runtime_is_refused_with_the_choices(bad):
    with pytest.raises(InvalidInputError, match="auto, openvino, torch"):
        check_runtime(bad)
    with pytest.raises(InvalidInputError, match="unknown runtime"):
        resolve_runtime(bad, "cpu")
