"""The shared torch session base (prompts/_torch_session.py): network calls through the CPU runtime."""

from __future__ import annotations

import pytest

from napari_medseg.testing import assert_close_to_scale

torch = pytest.importorskip("torch")


@pytest.mark.slow
def test_sam_med3d_encoder_compiled_matches_reference_and_is_not_recompiled(
        deterministic_net, sam_reference, monkeypatch, tmp_path):
    """The full-size SAM-Med3D encoder through OpenVINO: within 1e-4 of the reference's scale
    on the shared fixture; the second crop reuses the compiled model, a new session reads
    the disk cache instead of converting again."""
    ov = pytest.importorskip("openvino")
    from napari_medseg.prompts.sam_med3d_session import SamMed3DSession
    from napari_medseg.testing.sam_med3d import fixture_input

    monkeypatch.setenv("MEDSEG_COMPILED_DIR", str(tmp_path))
    session = SamMed3DSession(network=deterministic_net, device="cpu")
    session.runtime = "openvino"
    x = fixture_input()
    encoder = session._model().image_encoder
    emb = session._run_network(encoder, x, "SAM-Med3D image encoder")
    report = session.runtime_report
    assert report.used == "openvino" and report.compiled == 1, report
    assert_close_to_scale(emb, sam_reference["image_embedding"], name="OpenVINO image embedding")
    # another crop: same compiled model, nothing converted or loaded
    session._run_network(encoder, torch.flip(x, (2,)), "SAM-Med3D image encoder")
    assert report.compiled == 1 and report.cache_hits == 0

    monkeypatch.setattr(ov, "convert_model", lambda *a, **k: pytest.fail("converted again"))
    fresh = SamMed3DSession(network=deterministic_net, device="cpu")
    fresh.runtime = "openvino"
    emb2 = fresh._run_network(encoder, x, "SAM-Med3D image encoder")
    assert fresh.runtime_report.cache_hits == 1 and fresh.runtime_report.compiled == 0
    assert torch.equal(emb2, emb)


# --- bad input and faults
def test_runtime_failure_runs_torch_for_the_rest_of_the_session(tiny_net, monkeypatch, tmp_path):
    """A compiled model that fails while running (e.g. an unsupported op only seen at run
    time): torch gives the result, the reason is kept, later calls do not retry."""
    pytest.importorskip("openvino")
    from napari_medseg.inference.runtimes import openvino as ov_rt
    from napari_medseg.prompts.sam_med3d_session import SamMed3DSession

    monkeypatch.setenv("MEDSEG_COMPILED_DIR", str(tmp_path))

    def broken(self, x):
        raise RuntimeError("kernel not implemented")

    monkeypatch.setattr(ov_rt.CompiledNetwork, "__call__", broken)
    session = SamMed3DSession(network=tiny_net, device="cpu")
    session.runtime = "openvino"
    enc = session._model().image_encoder
    x = torch.randn(1, 1, 128, 128, 128, generator=torch.Generator().manual_seed(0))
    out = session._run_network(enc, x, "encoder")
    with torch.no_grad():
        assert torch.equal(out, enc(x))
    assert session.runtime_report.used == "torch"
    assert "kernel not implemented" in session.runtime_report.reason
    session._run_network(enc, x, "encoder")
    assert session.runtime_report.compiled == 1  # not compiled again after the failure


def test_torch_runtime_never_compiles(tiny_net, monkeypatch):
    from napari_medseg.inference.runtimes import openvino as ov_rt
    from napari_medseg.prompts.factory import make_session

    monkeypatch.setattr(ov_rt, "compile_torch_module", lambda *a, **k: pytest.fail("compiled"))
    from napari_medseg.errors import InvalidInputError
    from napari_medseg.prompts.sam_med3d_session import SamMed3DSession

    with pytest.raises(InvalidInputError, match="unknown runtime"):
        make_session("sam-med3d", runtime="onnx")
    session = SamMed3DSession(network=tiny_net, device="cpu")
    session.runtime = "torch"
    enc = session._model().image_encoder
    x = torch.randn(1, 1, 128, 128, 128)
    session._run_network(enc, x, "encoder")
    assert session.runtime_report.used == "torch" and session.runtime_report.reason == ""
