"""The mask decoder's cross attentions with the projections on the token side
(``TokenAttention.tokens_to_image`` / ``image_to_tokens``) against the plain attention
(``TokenAttention.forward``, the published formula), on random inputs and weights with
non-zero biases, relative to the output's scale; the full decoder's parity with the
shared fixture is in ``test_model``."""

from __future__ import annotations

import pytest
import torch

from napari_medseg.models.sam_med3d.transformer import TokenAttention
from napari_medseg.testing import assert_close_to_scale, scaled_error


def _attention(seed: int = 0, dim: int = 384, heads: int = 8, downsample: int = 2) -> TokenAttention:
    torch.manual_seed(seed)
    attn = TokenAttention(dim, heads, downsample).eval()
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_(0.0, 0.1)  # biases too: the token-side forms treat them apart
    return attn


@pytest.mark.parametrize("batch, n_tokens", [(1, 7), (2, 6), (1, 1)])
def test_tokens_to_image_equals_plain_attention(batch, n_tokens):
    attn = _attention()
    image = torch.randn(batch, 512, 384)
    keys = image + torch.randn(1, 512, 384)  # the image tokens with their positional encoding
    tokens = torch.randn(batch, n_tokens, 384)
    with torch.no_grad():
        want = attn(tokens, keys, image)
        got = attn.tokens_to_image(tokens, keys, image)
    assert_close_to_scale(got, want, rel=1e-5, name="tokens_to_image")


@pytest.mark.parametrize("batch, n_tokens", [(1, 7), (2, 6), (1, 1)])
def test_image_to_tokens_equals_plain_attention(batch, n_tokens):
    attn = _attention(1)
    queries = torch.randn(batch, 512, 384)
    tokens = torch.randn(batch, n_tokens, 384)
    with torch.no_grad():
        want = attn(queries, tokens + 0.5, tokens)
        got = attn.image_to_tokens(queries, tokens + 0.5, tokens)
    assert_close_to_scale(got, want, rel=1e-5, name="image_to_tokens")


def test_the_query_bias_is_not_dropped_for_image_queries():
    """``b_q . k`` differs between keys (unlike ``q . b_k`` in tokens_to_image): leaving it
    out must be visible, so the comparison above can fail."""
    attn = _attention(2)
    queries, tokens = torch.randn(1, 512, 384), torch.randn(1, 7, 384)
    with torch.no_grad():
        want = attn(queries, tokens, tokens)
        attn.q_proj.bias.zero_()
        err, scale = scaled_error(attn.image_to_tokens(queries, tokens, tokens), want)
    assert err > 1e-3 * scale
