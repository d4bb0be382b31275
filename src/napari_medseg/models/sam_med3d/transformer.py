"""Two-way transformer of the SAM-Med3D mask decoder (tokens <-> image embedding).

Per click, the costly part is the 512 image tokens: the reference projects them to
keys, values (token-to-image attention) and queries (image-to-token attention) with
192-channel linear maps, and maps the image-to-token result back with ``out_proj``
(about 300 M multiply-adds per block). There are only a handful of tokens (the IoU
and mask tokens and the clicks), so the cross attentions are evaluated with the
projections moved to the token side (:meth:`TokenAttention.tokens_to_image`,
:meth:`TokenAttention.image_to_tokens`): the image tokens meet products of ``heads x
tokens`` rows only (rank 56 for 7 tokens instead of 192), about a quarter of the
work. Same function, products reassociated: equal to float32 rounding.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLPBlock


class TokenAttention(nn.Module):
    """Attention whose q/k/v projections may shrink the channels (``downsample_rate``)."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError("num_heads must divide the internal dimension")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def _per_head(self, linear: nn.Linear) -> torch.Tensor:
        """``linear``'s weight as ``heads x head_dim x embedding_dim``."""
        return linear.weight.view(self.num_heads, -1, linear.weight.shape[1])

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q = self._heads(self.q_proj(q))
        k = self._heads(self.k_proj(k))
        v = self._heads(self.v_proj(v))
        attn = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        out = attn.softmax(dim=-1) @ v
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))

    def tokens_to_image(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``forward(q, k, v)`` for a few queries against many keys and values, which are
        never projected.

        Per head ``h``: ``q_h . (W_k,h k + b_k,h) = (q_h W_k,h) . k + q_h . b_k,h``, and the
        last term, the same for every key, cancels in the softmax; the softmax rows sum
        to one, so ``softmax(.) (v W_v,h^T + b_v,h) = (softmax(.) v) W_v,h^T + b_v,h``.
        All heads' queries are one attention over the unprojected ``k`` and ``v``.
        """
        b, nq, _ = q.shape
        heads, dim = self.num_heads, self.internal_dim // self.num_heads
        qk = torch.matmul(self._heads(self.q_proj(q)), self._per_head(self.k_proj))  # (B, H, nq, C)
        mixed = F.scaled_dot_product_attention(
            qk.reshape(b, 1, heads * nq, -1), k[:, None], v[:, None], scale=1.0 / math.sqrt(dim))
        out = torch.matmul(mixed.view(b, heads, nq, -1), self._per_head(self.v_proj).transpose(1, 2))
        out = out + self.v_proj.bias.view(heads, 1, dim)
        return self.out_proj(out.transpose(1, 2).reshape(b, nq, self.internal_dim))

    def image_to_tokens(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``forward(q, k, v)`` for many queries against a few keys and values, without
        projecting the queries or mapping each query's heads through ``out_proj``.

        Per head ``h``: ``(W_q,h q + b_q,h) . k_h = q . (W_q,h^T k_h) + b_q,h . k_h``, and
        ``out_proj`` of the heads' mixtures of ``v_h`` is the same mixture of
        ``W_o,h v_h``: two products of the queries with ``heads x n_keys`` rows.
        """
        b, nq, c = q.shape
        heads, dim = self.num_heads, self.internal_dim // self.num_heads
        kh = self._heads(self.k_proj(k))  # (B, H, nk, dim)
        nk = kh.shape[2]
        kq = torch.matmul(kh, self._per_head(self.q_proj)).reshape(b, heads * nk, c)
        const = torch.matmul(kh, self.q_proj.bias.view(heads, dim, 1)).view(b, 1, heads * nk)
        scale = 1.0 / math.sqrt(dim)
        scores = torch.baddbmm(const, q, kq.transpose(1, 2), beta=scale, alpha=scale)
        attn = scores.view(b, nq, heads, nk).softmax(dim=-1).view(b, nq, heads * nk)
        wo = self.out_proj.weight.view(c, heads, dim).permute(1, 2, 0)  # (H, dim, C)
        vo = torch.matmul(self._heads(self.v_proj(v)), wo).reshape(b, heads * nk, c)
        return torch.baddbmm(self.out_proj.bias, attn, vo)


class TwoWayAttentionBlock3D(nn.Module):
    """Self-attention of tokens, token->image, MLP, image->token cross-attention."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, downsample: int, skip_first_layer_pe: bool) -> None:
        super().__init__()
        self.self_attn = TokenAttention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = TokenAttention(dim, num_heads, downsample)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim, nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = TokenAttention(dim, num_heads, downsample)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        keys_pe = keys + key_pe  # the token-to-image keys and the image-to-token queries
        q = queries + query_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image.tokens_to_image(q, keys_pe, keys))

        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token.image_to_tokens(keys_pe, q, queries))
        return queries, keys


class TwoWayTransformer3D(nn.Module):
    """Depth-2 two-way transformer with a final token->image attention."""

    def __init__(self, depth: int = 2, embedding_dim: int = 384, num_heads: int = 8, mlp_dim: int = 2048, downsample: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock3D(embedding_dim, num_heads, mlp_dim, downsample, skip_first_layer_pe=(i == 0))
            for i in range(depth)
        )
        self.final_attn_token_to_image = TokenAttention(embedding_dim, num_heads, downsample)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return the processed tokens and the processed image tokens (B x N_img x C)."""
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        q = queries + point_embedding
        attn = self.final_attn_token_to_image.tokens_to_image(q, keys + key_pe, keys)
        queries = self.norm_final_attn(queries + attn)
        return queries, keys
