"""The prompt encoder's mask path (three matrix products on 2x2x2 block rows) against
the plain modules, and the cached dense positional encoding."""

from __future__ import annotations

import pytest
import torch

from napari_medseg.models.sam_med3d.prompt_encoder import PromptEncoder3D, _downscale_mask
from napari_medseg.testing import assert_close_to_scale


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    enc = PromptEncoder3D().eval()
    with torch.no_grad():
        for p in enc.mask_downscaling.parameters():
            p.normal_(0.0, 0.5)  # non-trivial layer-norm weights and biases
    return enc


@pytest.mark.parametrize("batch", [1, 2])
def test_mask_downscaling_equals_the_convolutions(encoder, batch):
    masks = torch.randn(batch, 1, 32, 32, 32) * 4
    with torch.no_grad():
        want = encoder.mask_downscaling(masks)  # Conv3d, LayerNorm3d, GELU as published
        got = _downscale_mask(encoder.mask_downscaling, masks)
    assert got.shape == want.shape == (batch, 384, 8, 8, 8)
    assert_close_to_scale(got, want, rel=1e-5, name="dense prompt embedding")


def test_a_binary_mask_prompt_too(encoder):
    masks = (torch.rand(1, 1, 32, 32, 32) > 0.7).float()
    with torch.no_grad():
        assert_close_to_scale(_downscale_mask(encoder.mask_downscaling, masks),
                              encoder.mask_downscaling(masks), rel=1e-5)


def test_dense_pe_is_reused_and_follows_the_buffer(encoder):
    first = encoder.get_dense_pe()
    assert encoder.get_dense_pe() is first
    assert_close_to_scale(first, encoder.pe_layer.dense(encoder.image_embedding_size)[None], rel=1e-6)
    with torch.no_grad():
        encoder.pe_layer.positional_encoding_gaussian_matrix.mul_(2.0)  # e.g. load_state_dict
    again = encoder.get_dense_pe()
    assert again is not first
    assert_close_to_scale(again, encoder.pe_layer.dense(encoder.image_embedding_size)[None], rel=1e-6)
