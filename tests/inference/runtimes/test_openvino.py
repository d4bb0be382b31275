"""OpenVINO conversion (inference/runtimes/openvino.py): parity with torch, disk cache, threads, faults."""

from __future__ import annotations

import pytest

from napari_medseg.inference.runtimes import RuntimeReport, compile_module
from napari_medseg.testing import assert_close_to_scale

torch = pytest.importorskip("torch")
ov = pytest.importorskip("openvino")


@pytest.fixture
def unet(model_factory):
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor

    return NnUNetPredictor.from_folder(model_factory(n_classes=3, seed=4), device="cpu").network


def _features(net):
    from napari_medseg.inference.runtimes.openvino import MethodModule

    return MethodModule(net, "forward_features")


def test_compiled_unet_matches_torch_and_second_compile_reads_the_cache(unet, monkeypatch, tmp_path):
    monkeypatch.setenv("MEDSEG_COMPILED_DIR", str(tmp_path))
    shape = (1, 1, 16, 32, 32)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    report = RuntimeReport(requested="openvino", used="openvino")
    fn = compile_module(_features(unet), shape, report=report, what="test U-Net")
    assert fn is not None and report.compiled == 1 and report.cache_hits == 0
    assert report.convert_s > 0
    with torch.inference_mode():
        ref = unet.forward_features(x)
    out = fn(x)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert_close_to_scale(out, ref, name="OpenVINO forward_features")
    # the output is a copy: the next call does not overwrite it
    kept = out.clone()
    fn(torch.zeros(shape))
    assert torch.equal(out, kept)
    assert len(list(tmp_path.glob("openvino-*.xml"))) == 1

    # second run: read from disk, never converted again
    def no_convert(*a, **k):
        raise AssertionError("converted again despite the cache")

    monkeypatch.setattr(ov, "convert_model", no_convert)
    again = RuntimeReport(requested="auto", used="openvino")
    fn2 = compile_module(_features(unet), shape, report=again, what="test U-Net")
    assert fn2 is not None and again.cache_hits == 1 and again.compiled == 0
    assert torch.equal(fn2(x), fn(x))
    # another patch size is another model (converting it is refused here -> fallback)
    other = RuntimeReport(requested="auto", used="openvino")
    assert compile_module(_features(unet), (1, 1, 32, 32, 32), report=other) is None
    assert other.used == "torch" and "converted again" in other.reason


def test_threads_follow_torch(unet, monkeypatch, tmp_path):
    monkeypatch.setenv("MEDSEG_COMPILED_DIR", str(tmp_path))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        fn = compile_module(_features(unet), (1, 1, 16, 32, 32),
                            report=RuntimeReport(used="openvino"))
        assert int(fn.compiled.get_property("INFERENCE_NUM_THREADS")) == 1
        assert str(fn.compiled.get_property("INFERENCE_PRECISION_HINT")) in ("f32", "<Type: 'float32'>")
    finally:
        torch.set_num_threads(threads)


# --- bad input and faults
def test_conversion_failure_falls_back_with_the_reason(unet, monkeypatch, tmp_path):
    monkeypatch.setenv("MEDSEG_COMPILED_DIR", str(tmp_path))

    def broken(*a, **k):
        raise RuntimeError("unsupported operation aten::fancy_op\nmore detail")

    monkeypatch.setattr(ov, "convert_model", broken)
    report = RuntimeReport(requested="openvino", used="openvino")
    assert compile_module(_features(unet), (1, 1, 16, 32, 32), report=report, what="U-Net") is None
    assert report.used == "torch"
    assert "could not compile the U-Net" in report.reason and "aten::fancy_op" in report.reason
    assert not list(tmp_path.glob("*.xml"))  # nothing half-written in the cache


def test_corrupt_cache_entry_is_converted_again(unet, monkeypatch, tmp_path):
    monkeypatch.setenv("MEDSEG_COMPILED_DIR", str(tmp_path))
    shape = (1, 1, 16, 32, 32)
    compile_module(_features(unet), shape, report=RuntimeReport(used="openvino"))
    (xml,) = tmp_path.glob("openvino-*.xml")
    xml.write_text("<not an IR")
    report = RuntimeReport(used="openvino")
    fn = compile_module(_features(unet), shape, report=report)
    assert fn is not None and report.compiled == 1 and report.used == "openvino"


def test_wrong_input_shape_is_refused(unet, monkeypatch, tmp_path):
    monkeypatch.setenv("MEDSEG_COMPILED_DIR", str(tmp_path))
    fn = compile_module(_features(unet), (1, 1, 16, 32, 32), report=RuntimeReport(used="openvino"))
    with pytest.raises(ValueError, match="compiled for input"):
        fn(torch.zeros(1, 1, 16, 32, 16))
