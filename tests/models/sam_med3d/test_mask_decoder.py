"""The mask decoder's upscaling and hypernetwork product (matrix products in block
order) against the published modules: ``output_upscaling`` (transposed convolutions,
LayerNorm3d, GELU) on the channels-first grid, then each mask's dot product."""

from __future__ import annotations

import pytest
import torch

from napari_medseg.models.sam_med3d.mask_decoder import MaskDecoder3D
from napari_medseg.testing import assert_close_to_scale


@pytest.mark.parametrize("batch, n_masks", [(1, 1), (2, 3)])
def test_upscale_and_project_equals_the_modules(batch, n_masks):
    torch.manual_seed(0)
    dec = MaskDecoder3D().eval()
    with torch.no_grad():
        for p in dec.output_upscaling.parameters():
            p.normal_(0.0, 0.2)
    tokens = torch.randn(batch, 512, 384)
    hyper = torch.randn(batch, n_masks, 48)
    with torch.no_grad():
        grid = tokens.transpose(1, 2).reshape(batch, 384, 8, 8, 8)
        up = dec.output_upscaling(grid)  # (B, 48, 32, 32, 32)
        want = (hyper @ up.reshape(batch, 48, -1)).reshape(batch, n_masks, 32, 32, 32)
        got = dec._upscale_and_project(tokens, (8, 8, 8), hyper)
    assert_close_to_scale(got, want, rel=1e-5, name="low-res logits")


def test_changed_weights_are_used():
    """The reordered weights are cached: an in-place change must reach the output."""
    torch.manual_seed(1)
    dec = MaskDecoder3D().eval()
    tokens, hyper = torch.randn(1, 512, 384), torch.randn(1, 1, 48)
    with torch.no_grad():
        dec._upscale_and_project(tokens, (8, 8, 8), hyper)
        dec.output_upscaling[0].weight.mul_(-1.0)
        up = dec.output_upscaling(tokens.transpose(1, 2).reshape(1, 384, 8, 8, 8))
        want = (hyper @ up.reshape(1, 48, -1)).reshape(1, 1, 32, 32, 32)
        assert_close_to_scale(dec._upscale_and_project(tokens, (8, 8, 8), hyper), want, rel=1e-5)
