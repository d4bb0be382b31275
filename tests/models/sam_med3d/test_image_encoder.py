"""The fast forms of the SAM-Med3D image encoder against the published computation.

The encoder's attention over a zero-padded 14^3 window is computed over the real keys
plus one closed-form "padding" key, global attention without the 2744-wide bias maps,
the patch embedding as one matrix product and the neck on channels-last tokens. Each
must equal the published form (kept as ``attend_reference`` / ``forward_reference`` /
the plain modules) to float rounding, relative to the output's scale, on random
inputs; the full-size network's parity with the shared fixture is in ``test_model``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from napari_medseg.models.sam_med3d.image_encoder import Attention3D, ImageEncoderViT3D
from napari_medseg.testing import assert_close_to_scale, scaled_error


def _attention(dim: int, heads: int, size: int, *, qkv_bias: bool = True, rel_std: float = 1.0, seed: int = 0):
    """An attention module with random weights, relative-position tables and qkv bias
    large enough that the padded keys and the relative terms matter."""
    torch.manual_seed(seed)
    attn = Attention3D(dim, heads, (size,) * 3, qkv_bias=qkv_bias).eval()
    with torch.no_grad():
        for p in (attn.rel_pos_d, attn.rel_pos_h, attn.rel_pos_w):
            p.normal_(0.0, rel_std)
        if qkv_bias:
            attn.qkv.bias.normal_(0.0, 1.0)
    return attn


@pytest.mark.parametrize(
    "window, grid, batch",
    [
        (14, (8, 8, 8), 1),  # the 128^3 crop's windowed blocks
        (14, (8, 8, 8), 2),
        (14, (5, 7, 6), 1),  # a grid that is not cubic, padded on every axis differently
        (9, (9, 9, 4), 1),  # padding along one axis only
        (9, (4, 9, 9), 1),
        (9, (9, 4, 9), 1),
        (6, (6, 6, 6), 1),  # grid == window: nothing padded
        (None, (8, 8, 8), 2),  # global attention
    ],
)
def test_fast_attention_equals_the_published_form(window, grid, batch):
    size = window or grid[0]
    attn = _attention(96, 3, size)
    x = torch.randn(batch, *grid, 96)
    with torch.no_grad():
        fast = attn.forward_padded_window(x, window) if window else attn(x)
        ref = attn.forward_reference(x, window)
    assert fast.shape == ref.shape == x.shape
    assert_close_to_scale(fast, ref, name=f"attention window={window} grid={grid}")


@pytest.mark.parametrize("rel_std", [0.0, 8.0])
def test_fast_attention_with_extreme_relative_terms(rel_std):
    """Zero tables (the padded keys' mass is a plain count) and large ones (the
    log-sum-exps span tens of units: any overflow or cancellation would show)."""
    attn = _attention(64, 2, 14, rel_std=rel_std, seed=3)
    x = 3.0 * torch.randn(1, 8, 8, 8, 64)
    with torch.no_grad():
        assert_close_to_scale(attn.forward_padded_window(x, 14), attn.forward_reference(x, 14))


def test_fast_attention_without_qkv_bias():
    """Padded tokens then project to zero: the padding key is a zero vector."""
    attn = _attention(64, 2, 14, qkv_bias=False, seed=5)
    x = torch.randn(1, 8, 8, 8, 64)
    with torch.no_grad():
        assert_close_to_scale(attn.forward_padded_window(x, 14), attn.forward_reference(x, 14))


def test_padded_keys_matter_so_the_check_has_teeth():
    """Attending over the real tokens only (dropping the padded keys) is far outside the
    tolerance: the closed-form padding key really carries their weight."""
    attn = _attention(96, 3, 14)
    x = torch.randn(1, 8, 8, 8, 96)
    with torch.no_grad():
        ref = attn.forward_reference(x, 14)
        q, k, v = attn.qkv(x).chunk(3, dim=-1)
        unpadded = F.scaled_dot_product_attention(
            *(t.reshape(1, 512, 3, 32).transpose(1, 2) for t in (q, k, v)))
        unpadded = attn.proj(unpadded.transpose(1, 2).reshape(1, 8, 8, 8, 96))
    err, scale = scaled_error(unpadded, ref)
    assert err > 1e-2 * scale


def test_attention_refuses_grids_it_cannot_handle():
    attn = _attention(32, 2, 8)
    with torch.no_grad():
        with pytest.raises(ValueError, match="cubic"):
            attn(torch.randn(1, 8, 8, 4, 32))
        with pytest.raises(ValueError, match="does not fit"):
            attn.forward_padded_window(torch.randn(1, 9, 8, 8, 32), 8)


@pytest.fixture(scope="module")
def small_encoder():
    torch.manual_seed(1)
    enc = ImageEncoderViT3D(embed_dim=48, depth=2, num_heads=2, out_chans=32, global_attn_indexes=(1,)).eval()
    with torch.no_grad():
        for p in enc.parameters():
            if p.dim() >= 1:
                p.add_(0.05 * torch.randn_like(p))
    return enc


def test_patch_embedding_equals_the_convolution(small_encoder):
    x = torch.randn(2, 1, 128, 128, 128)
    with torch.no_grad():
        fast = small_encoder.patch_embed(x)
        ref = small_encoder.patch_embed.proj(x).permute(0, 2, 3, 4, 1)
    assert fast.shape == (2, 8, 8, 8, 48)
    assert_close_to_scale(fast, ref, name="patch embedding")


def test_neck_equals_the_channels_first_modules(small_encoder):
    tokens = torch.randn(2, 8, 8, 8, 48)
    with torch.no_grad():
        fast = small_encoder.forward_neck(tokens)
        ref = small_encoder.neck(tokens.permute(0, 4, 1, 2, 3))
    assert fast.shape == (2, 32, 8, 8, 8) and fast.is_contiguous()
    assert_close_to_scale(fast, ref, name="neck")


def test_encoder_equals_the_published_computation(small_encoder):
    """The whole (small) encoder against the published computation."""
    x = torch.randn(1, 1, 128, 128, 128)
    with torch.no_grad():
        ref = small_encoder.forward_reference(x)
        fast = small_encoder(x)
    assert_close_to_scale(fast, ref, name="image embedding")


def test_openvino_compiles_the_fast_encoder(small_encoder, tmp_path, monkeypatch):
    """OpenVINO's attention fusion must accept the fast attention's graph (it rejected
    a merged batch*heads axis) and give the same embedding."""
    pytest.importorskip("openvino")
    from napari_medseg.inference.runtimes import compile_module, resolve_runtime

    monkeypatch.setenv("MEDSEG_COMPILED_DIR", str(tmp_path))
    report = resolve_runtime("openvino", "cpu")
    x = torch.randn(1, 1, 128, 128, 128)
    fn = compile_module(small_encoder, tuple(x.shape), report=report, what="test encoder")
    assert fn is not None, report.reason
    assert report.used == "openvino" and report.compiled == 1
    with torch.no_grad():
        assert_close_to_scale(fn(x), small_encoder(x), name="OpenVINO image embedding")
