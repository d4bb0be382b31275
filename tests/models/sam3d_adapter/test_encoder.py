"""The 3DSAM-adapter's fused window attention against the published computation.

``WindowAttention3D.forward`` carries the decomposed relative-position terms as extra
query/key channels of one ``scaled_dot_product_attention`` call; it must equal
``forward_reference`` (explicit relative-position maps, the shifted-window ``-100``
mask added to them) to float rounding, relative to the output's scale.
"""

from __future__ import annotations

import pytest
import torch

from napari_medseg.models.sam3d_adapter.encoder import WindowAttention3D, shifted_window_mask
from napari_medseg.testing import assert_close_to_scale, scaled_error


def _attention(dim=96, heads=3, rel_size=14, lr=0.7, seed=0):
    torch.manual_seed(seed)
    attn = WindowAttention3D(dim, heads, rel_size).eval()
    with torch.no_grad():
        for p in (attn.rel_pos_h, attn.rel_pos_w, attn.rel_pos_d):
            p.normal_(0.0, 1.0)
        attn.lr.fill_(lr)
    return attn


@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("volumes", [1, 2])
def test_fused_window_attention_equals_the_published_form(shifted, volumes):
    attn = _attention()
    mask = shifted_window_mask(16, 8, 4) if shifted else None  # 8 windows of 8^3
    x = torch.randn(8 * volumes, 8, 8, 8, 96)
    with torch.no_grad():
        fast, ref = attn(x, mask), attn.forward_reference(x, mask)
    assert fast.shape == ref.shape == x.shape
    assert_close_to_scale(fast, ref, name=f"window attention shifted={shifted}")


def test_relative_terms_and_mask_matter_so_the_check_has_teeth():
    """Without the relative-position terms (lr = 0) or without the shift mask the
    output is far outside the tolerance of the reference."""
    attn = _attention(lr=2.0)
    mask = shifted_window_mask(16, 8, 4)
    x = torch.randn(8, 8, 8, 8, 96)
    with torch.no_grad():
        ref = attn.forward_reference(x, mask)
        no_mask = attn(x, None)
        attn.lr.fill_(0.0)
        no_rel = attn(x, mask)
    for other in (no_mask, no_rel):
        err, scale = scaled_error(other, ref)
        assert err > 1e-2 * scale
