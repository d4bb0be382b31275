"""3DSAM-adapter: strict loading of the published checkpoint layout, the cached per-click
path against the plain reference path, and a session end to end (small config)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_medseg.errors import CheckpointMismatchError
from napari_medseg.models.sam3d_adapter import (
    AdapterConfig,
    Sam3DAdapter,
    adapter_from_checkpoint_dict,
    checkpoint_dict,
    load_sam3d_adapter,
)
from napari_medseg.testing import assert_close_to_scale


TINY = AdapterConfig(img_size=64, patch_size=8, patch_depth=4, embed_dim=24, num_heads=2, out_chans=16,
                     window_size=14, cubic_window_size=2, num_slice=8, prompt_mlp_dim=32, prompt_heads=2,
                     pos_feats=8, head_channels=8, crop_size=16)


@pytest.fixture(scope="module")
def manifest(shared_fixtures):
    return json.loads((shared_fixtures / "3dsam_adapter_state_dict.json").read_text())


def _random(shapes: dict, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in shapes.items():
        n = int(np.prod(shape)) if shape else 1
        # big tensors stay zero (lazily allocated); small ones are random, to check values
        out[k] = torch.randn(shape, generator=g) if n < 300_000 else torch.zeros(shape)
    return out


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = Sam3DAdapter(TINY).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_architecture_matches_published_layout(manifest):
    with torch.device("meta"):
        model = Sam3DAdapter()
    shapes = lambda m: {k: list(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(model.image_encoder) == manifest["encoder_dict"]
    assert all(shapes(pe) == manifest["feature_dict_item"] for pe in model.prompt_encoders)
    assert manifest["feature_dict_len"] == len(model.prompt_encoders) == 4
    assert shapes(model.head) == manifest["decoder_dict"]


def test_random_full_size_checkpoint_loads_strictly(manifest):
    ckpt = {
        "encoder_dict": _random(manifest["encoder_dict"], 1),
        "feature_dict": [_random(manifest["feature_dict_item"], 10 + i) for i in range(4)],
        "decoder_dict": _random(manifest["decoder_dict"], 2),
        "epoch": 10, "encoder_opt": {}, "feature_opt": [{}] * 4, "decoder_opt": {},
    }
    model = adapter_from_checkpoint_dict(ckpt, "best.pth.tar")
    key = "transformer.layers.1.global_query"
    assert torch.equal(model.prompt_encoders[3].state_dict()[key], ckpt["feature_dict"][3][key])
    assert torch.equal(model.head.state_dict()["cls.3.weight"], ckpt["decoder_dict"]["cls.3.weight"])
    assert torch.equal(model.image_encoder.state_dict()["blocks.4.attn.rel_pos_d"],
                       ckpt["encoder_dict"]["blocks.4.attn.rel_pos_d"])
    # wrong files: a missing part, a wrong feature list, a mis-shaped tensor
    with pytest.raises(CheckpointMismatchError, match="decoder_dict"):
        adapter_from_checkpoint_dict({k: v for k, v in ckpt.items() if k != "decoder_dict"}, "x.pth")
    with pytest.raises(CheckpointMismatchError, match="list of 4"):
        adapter_from_checkpoint_dict({**ckpt, "feature_dict": ckpt["feature_dict"][:2]}, "x.pth")
    bad = dict(ckpt["decoder_dict"], **{"cls.0.weight": torch.zeros(128, 512, 3, 3, 3)})
    with pytest.raises(CheckpointMismatchError, match="cls.0.weight"):
        adapter_from_checkpoint_dict({**ckpt, "decoder_dict": bad}, "x.pth")


def test_file_round_trip_in_published_structure(tmp_path, tiny_model):
    path = tmp_path / "best.pth.tar"
    torch.save(checkpoint_dict(tiny_model, epoch=3), path)
    loaded = load_sam3d_adapter(path, config=TINY)
    ref = tiny_model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in loaded.state_dict().items())


def test_cached_decoding_equals_reference_forward(tiny_model):
    crop = torch.rand(16, 16, 16, generator=torch.Generator().manual_seed(3))
    pts = torch.tensor([[[8.0, 5.0, 9.0], [6.0, 7.0, 7.0]]])
    cached = tiny_model.decode(tiny_model.encode(crop), pts)
    plain = tiny_model.reference_forward(crop, pts)
    assert cached.shape == (16, 16, 16)
    assert_close_to_scale(cached, plain, name="cached decoding")
    other = tiny_model.decode(tiny_model.encode(crop), torch.tensor([[[2.0, 2.0, 2.0]]]))
    assert float((other - cached).abs().max()) > 1e-6  # the prompt matters


def test_full_size_forward_shapes_on_meta_device():
    """The published configuration runs end to end (shapes only: the 'meta' device
    propagates shapes without computing; the real full-size forward is in the GPU check)."""
    with torch.device("meta"):
        model = Sam3DAdapter().eval()
    cache = model.encode(torch.empty(128, 128, 128, device="meta"))
    assert tuple(cache["deepest"].shape) == (1, 256, 32, 32, 32)
    assert tuple(cache["partial"].shape) == (1, 128, 64, 64, 64)
    prob = model.decode(cache, torch.tensor([[[64.0, 60.0, 70.0]]], device="meta"))
    assert tuple(prob.shape) == (128, 128, 128)
