"""3DSAM-adapter session end to end on the volume grid; bad checkpoints refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.errors import CheckpointMismatchError
from napari_medseg.io.volume import Volume
from napari_medseg.models.sam3d_adapter import AdapterConfig, Sam3DAdapter
from napari_medseg.prompts.sam3d_adapter_session import Sam3DAdapterSession


TINY = AdapterConfig(img_size=64, patch_size=8, patch_depth=4, embed_dim=24, num_heads=2, out_chans=16,
                     window_size=14, cubic_window_size=2, num_slice=8, prompt_mlp_dim=32, prompt_heads=2,
                     pos_feats=8, head_channels=8, crop_size=16)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = Sam3DAdapter(TINY).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_session_end_to_end_on_volume_grid(tiny_model):
    rng = np.random.default_rng(0)
    arr = rng.normal(0, 20, size=(14, 30, 26)).astype(np.float32)
    arr[4:10, 10:20, 8:18] += 150
    vol = Volume(arr, spacing=(1.2, 0.9, 2.0))  # x, y, z
    s = Sam3DAdapterSession(network=tiny_model, device="cpu")
    s.set_volume(vol)
    up = s.add_point((7, 15, 13))
    assert up.mask.shape == vol.shape and up.mask.dtype == bool
    prob_before = s._cache
    up2 = s.add_point((6, 14, 12))  # inside the crop: no re-encoding
    assert s._cache is prob_before
    assert up2.mask.shape == vol.shape
    empty = Sam3DAdapterSession(network=tiny_model, device="cpu")
    empty.set_volume(vol)
    assert not empty.add_point((7, 15, 13), positive=False).mask.any()
    assert "positive" in empty.message


def test_compiled_encoder_gives_the_torch_result(tiny_model, monkeypatch, tmp_path):
    """The encoder's blocks through OpenVINO: same cache (to 1e-4 of its scale), same mask;
    the next crop of the same size reuses the compiled model."""
    pytest.importorskip("openvino")
    from napari_medseg.testing import assert_close_to_scale

    monkeypatch.setenv("MEDSEG_COMPILED_DIR", str(tmp_path))
    rng = np.random.default_rng(1)
    arr = rng.normal(0, 20, size=(14, 30, 26)).astype(np.float32)
    arr[4:10, 10:20, 8:18] += 150
    vol = Volume(arr, spacing=(1.2, 0.9, 2.0))
    results = {}
    for runtime in ("torch", "openvino"):
        s = Sam3DAdapterSession(network=tiny_model, device="cpu")
        s.runtime = runtime
        s.set_volume(vol)
        up = s.add_point((7, 15, 13))
        results[runtime] = (s._cache, up.mask.copy(), s)
    (ref, ref_mask, _), (got, got_mask, session) = results["torch"], results["openvino"]
    assert session.runtime_report.used == "openvino" and session.runtime_report.compiled == 1
    assert_close_to_scale(got["deepest"], ref["deepest"], name="deepest feature")
    assert_close_to_scale(got["partial"], ref["partial"], name="cached head input")
    assert (got_mask == ref_mask).mean() >= 0.999
    session.add_point((2, 3, 3))  # another crop: compiled model reused
    assert session.runtime_report.compiled == 1


# --- bad input and faults


def _adapter():
    from napari_medseg.prompts.sam3d_adapter_session import Sam3DAdapterSession

    return Sam3DAdapterSession


def test_adapter_bad_checkpoint(tmp_path):
    path = tmp_path / "best.pth.tar"
    torch.save({"encoder_dict": {}, "epoch": 3}, path)
    session = _adapter()(weights=path, device="cpu")
    with pytest.raises(CheckpointMismatchError, match="feature_dict"):
        session.set_volume(Volume(np.zeros((8, 8, 8), np.int16)))
