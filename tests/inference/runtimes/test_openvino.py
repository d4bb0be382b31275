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


def test_instance_norms_convert_to_pooled_averages_at_torch_accuracy(monkeypatch, tmp_path):
    """OpenVINO's own MVN drifts with the feature map's size (float32 sums over the whole
    map); the pooled conversion stays at PyTorch's float32 error on a large map, the
    module tree is put back after conversion, and the maths equal InstanceNorm3d's."""
    from napari_medseg.inference.runtimes.openvino import PooledInstanceNorm, pooled_instance_norms

    monkeypatch.setenv("MEDSEG_COMPILED_DIR", str(tmp_path))
    gen = torch.Generator().manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 16, 3, padding=1),
                              torch.nn.InstanceNorm3d(16, affine=True, eps=1e-5),
                              torch.nn.LeakyReLU(0.01)).eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.randn(16, generator=gen))
        net[1].bias.copy_(torch.randn(16, generator=gen))
    shape = (1, 1, 96, 112, 128)
    x = torch.randn(shape, generator=gen) * 3 + 1
    with torch.no_grad():
        exact = net.double()(x.double())
        net.float()
        torch_err = float((net(x).double() - exact).abs().max())
        h = net[0].double()(x.double())
        pooled = PooledInstanceNorm(net[1]).double()
        assert float((pooled(h) - torch.nn.functional.instance_norm(
            h, weight=net[1].weight, bias=net[1].bias, eps=1e-5)).abs().max()) < 1e-10
        net.float()
    before = [type(m) for m in net.modules()]
    with pooled_instance_norms(net):
        assert isinstance(net[1].inner, torch.nn.InstanceNorm3d)
    assert [type(m) for m in net.modules()] == before

    report = RuntimeReport(requested="openvino", used="openvino")
    fn = compile_module(net, shape, report=report, what="conv + norm")
    ours = float((fn(x).double() - exact).abs().max())
    mvn = ov.Core().compile_model(ov.convert_model(net, example_input=x), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    mvn_err = float((torch.from_numpy(mvn({0: x.numpy()})[0]).double() - exact).abs().max())
    scale = float(exact.abs().max())
    assert ours <= max(10 * torch_err, 1e-6 * scale), (ours, torch_err)
    assert ours < mvn_err  # what the pooled conversion is for
