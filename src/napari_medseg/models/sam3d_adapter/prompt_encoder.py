"""3DSAM-adapter prompt encoder: point features refine the image feature map.

The point's feature is sampled from the image feature map (trilinear ``grid_sample``)
together with its random-Fourier positional encoding; per layer, ten learned global
queries and the point tokens self-attend, and the image tokens then attend to the
global queries (two layers). The output is the refined 256-channel feature map. The
checkpoint also holds a token->image attention per layer that the published forward
never uses; it is kept so the state dict loads strictly.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..sam_med3d.common import MLPBlock
from ..sam_med3d.transformer import TokenAttention

N_GLOBAL = 10


class GlobalQueryBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_dim: int, downsample: int = 2) -> None:
        super().__init__()
        self.self_attn = TokenAttention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = TokenAttention(dim, num_heads, downsample)  # unused (see module doc)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim, nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = TokenAttention(dim, num_heads, downsample)
        self.global_query = nn.Parameter(0.1 * torch.randn(1, N_GLOBAL, dim))

    def forward(self, image: torch.Tensor, points: torch.Tensor):
        q = torch.cat([self.global_query.expand(points.shape[0], -1, -1), points], dim=1)
        q = self.norm2(q + self.norm1(self.self_attn(q, q, q)))
        points, queries = q[:, N_GLOBAL:], q[:, :N_GLOBAL]
        queries = self.norm3(queries + self.mlp(queries))
        image = self.norm4(image + self.cross_attn_image_to_token(image, queries, queries))
        return image, points


class GlobalQueryTransformer(nn.Module):
    def __init__(self, depth: int = 2, dim: int = 256, num_heads: int = 8, mlp_dim: int = 2048) -> None:
        super().__init__()
        self.layers = nn.ModuleList(GlobalQueryBlock(dim, num_heads, mlp_dim) for _ in range(depth))


class AdapterPromptEncoder(nn.Module):
    """Point prompt -> refined feature map (1, C, h, w, d)."""

    def __init__(self, dim: int = 256, num_pos_feats: int = 128, depth: int = 2, num_heads: int = 8, mlp_dim: int = 2048) -> None:
        super().__init__()
        self.transformer = GlobalQueryTransformer(depth, dim, num_heads, mlp_dim)
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn((3, num_pos_feats)))

    def _pe(self, coords: torch.Tensor) -> torch.Tensor:
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords * 3 / 2
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def dense_pe(self, size: Sequence[int], device) -> torch.Tensor:
        h, w, d = size
        grid = torch.ones((h, w, d), device=device, dtype=torch.float32)
        along0 = (grid.cumsum(dim=0) - 0.5) / h
        along1 = (grid.cumsum(dim=1) - 0.5) / w
        along2 = (grid.cumsum(dim=2) - 0.5) / d
        # axis order (1, 0, 2), as in the reference
        return self._pe(torch.stack([along1, along0, along2], dim=-1)).permute(3, 0, 1, 2).unsqueeze(0)

    def forward(self, features: torch.Tensor, points: torch.Tensor, crop_size: Sequence[int]) -> torch.Tensor:
        """``features`` (1, C, h, w, d); ``points`` (1, N, 3) in crop voxels, ordered
        (d, w, h) like the reference's ``[x - d_min, y - w_min, z - h_min]``."""
        size = list(features.shape[2:])
        image_pe = self.dense_pe(size, features.device)
        p = points.clone().to(torch.float32)
        p[:, :, 0] = (p[:, :, 0] + 0.5) * 2 / crop_size[2] - 1
        p[:, :, 1] = (p[:, :, 1] + 0.5) * 2 / crop_size[1] - 1
        p[:, :, 2] = (p[:, :, 2] + 0.5) * 2 / crop_size[0] - 1
        grid = p.reshape(1, 1, 1, -1, 3)
        point_emb = F.grid_sample(features, grid, align_corners=False).squeeze(2).squeeze(2).permute(0, 2, 1)
        _ = F.grid_sample(image_pe, grid, align_corners=False)  # point PE: unused by the published forward
        image = features.flatten(2).permute(0, 2, 1)
        for layer in self.transformer.layers:
            image, point_emb = layer(image, point_emb)
        return image.transpose(1, 2).reshape([1, -1] + size)
