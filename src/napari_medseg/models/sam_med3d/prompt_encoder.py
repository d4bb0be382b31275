"""SAM-Med3D prompt encoder: points (+/-) and a low-resolution mask prompt.

Points are voxel indices of the 128^3 crop, in the crop tensor's axis order. They are
encoded with random Fourier features (``sin, cos, sin`` of a fixed 3 x 128 Gaussian
projection, giving 384 channels) plus a learned positive/negative embedding; a
"not a point" token is appended, as in SAM, when no box is given. The mask prompt
(the previous click's 32^3 logits) is downscaled by two strided convolutions to the
8^3 embedding grid; on the per-click path they run as three small matrix products on
rows of 2x2x2 blocks (:func:`_downscale_mask`), channels-last, so that the result is
the decoder's token layout without a copy.

Two details of the reference are reproduced on purpose, because the released weights
were trained with them: the point coordinates are shifted by half a voxel but the
padding point is not; and the dense positional encoding of the image grid lists its
first two axes in swapped order relative to the point encoding.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm3d, derived


class PositionEmbeddingRandom3D(nn.Module):
    """Random-Fourier-feature positional encoding for 3D coordinates."""

    def __init__(self, num_pos_feats: int = 128, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((3, num_pos_feats)))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        # coords in [0, 1]: map to [-1, 1], project, and take sin/cos.
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords), torch.sin(coords)], dim=-1)

    def dense(self, size: Tuple[int, int, int]) -> torch.Tensor:
        """Encoding of every cell of a ``size`` grid, ``C x size``."""
        s0, s1, s2 = size
        device = self.positional_encoding_gaussian_matrix.device
        grid = torch.ones((s0, s1, s2), device=device, dtype=torch.float32)
        along0 = (grid.cumsum(dim=0) - 0.5) / s1
        along1 = (grid.cumsum(dim=1) - 0.5) / s0
        along2 = (grid.cumsum(dim=2) - 0.5) / s2
        # Axis order (1, 0, 2) as in the reference implementation (see module docstring).
        pe = self._encode(torch.stack([along1, along0, along2], dim=-1))
        return pe.permute(3, 0, 1, 2)

    def points(self, coords: torch.Tensor, image_size: Tuple[int, int, int]) -> torch.Tensor:
        """Encoding of points ``B x N x 3`` given in voxels of an ``image_size`` crop."""
        scale = torch.tensor(image_size, dtype=coords.dtype, device=coords.device)
        return self._encode((coords / scale).to(torch.float32))


class PromptEncoder3D(nn.Module):
    """Encodes point and mask prompts into sparse and dense embeddings."""

    def __init__(
        self,
        embed_dim: int = 384,
        image_embedding_size: Tuple[int, int, int] = (8, 8, 8),
        input_image_size: Tuple[int, int, int] = (128, 128, 128),
        mask_in_chans: int = 16,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.pe_layer = PositionEmbeddingRandom3D(embed_dim // 3)
        # index 0: negative point, index 1: positive point
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(2))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv3d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm3d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv3d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm3d(mask_in_chans),
            nn.GELU(),
            nn.Conv3d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    @property
    def mask_input_size(self) -> Tuple[int, int, int]:
        """Size of the mask prompt (4x the embedding grid: 32^3)."""
        return tuple(4 * s for s in self.image_embedding_size)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid, ``1 x C x 8 x 8 x 8``.

        A constant of the weights: computed once and reused (the decoder keys its own
        per-network constants on this tensor), recomputed when the buffer changes.
        """
        return derived(self, "dense_pe", lambda g: self.pe_layer.dense(self.image_embedding_size).unsqueeze(0),
                       self.pe_layer.positional_encoding_gaussian_matrix)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool = True) -> torch.Tensor:
        """Sparse embeddings ``B x (N + pad) x C`` of points with labels 1 (in) / 0 (out)."""
        coords = coords.to(torch.float32) + 0.5  # centre of the voxel
        labels = labels.to(coords.device)
        if pad:
            coords = torch.cat([coords, torch.zeros((coords.shape[0], 1, 3), device=coords.device)], dim=1)
            labels = torch.cat([labels, -torch.ones((labels.shape[0], 1), device=labels.device, dtype=labels.dtype)], dim=1)
        emb = self.pe_layer.points(coords, self.input_image_size)
        is_pad = (labels == -1)[..., None]
        emb = torch.where(is_pad, self.not_a_point_embed.weight.expand_as(emb), emb)
        emb = emb + (labels == 0)[..., None] * self.point_embeddings[0].weight
        emb = emb + (labels == 1)[..., None] * self.point_embeddings[1].weight
        return emb

    def forward(
        self,
        points: Optional[Tuple[torch.Tensor, torch.Tensor]],
        masks: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return ``(sparse B x N x C, dense B x C x 8 x 8 x 8)`` embeddings.

        ``points`` is ``(coords B x N x 3, labels B x N)``; ``masks`` the previous
        low-resolution logits ``B x 1 x 32^3`` or None.
        """
        device = self.point_embeddings[0].weight.device
        if points is not None:
            bs = points[0].shape[0]
        elif masks is not None:
            bs = masks.shape[0]
        else:
            bs = 1
        if points is not None:
            sparse = self.embed_points(points[0], points[1], pad=True)
        else:
            sparse = torch.empty((bs, 0, self.embed_dim), device=device)
        if masks is not None:
            dense = _downscale_mask(self.mask_downscaling, masks)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1, 1).expand(bs, -1, *self.image_embedding_size)
        return sparse, dense


def _block_rows(w: torch.Tensor) -> torch.Tensor:
    """A ``(C_out, C_in, 2, 2, 2)`` kernel as the ``(8 * C_in, C_out)`` matrix whose rows
    follow a 2x2x2 block's voxels (z, y, x) with the channels fastest."""
    return w.permute(2, 3, 4, 1, 0).reshape(-1, w.shape[0]).contiguous()


def _downscale_mask(seq: nn.Sequential, masks: torch.Tensor) -> torch.Tensor:
    """``seq(masks)`` for the mask prompt: two 2x2x2 stride-2 convolutions (each with
    LayerNorm3d and GELU) and a 1x1 convolution, as matrix products.

    The 32^3 mask is reordered once (32k values) so that every row holds one 2x2x2
    block of the first convolution, ordered by (8^3 output voxel, position in its
    second-level block); eight consecutive rows of the first product are then exactly
    one input block of the second convolution, and the last product's rows are the
    8^3 grid's tokens. Same sums as the convolutions, and layer norms over each row's
    channels (``LayerNorm3d``'s formula; equal to float32 rounding). Returns
    ``B x C x 8^3``, a channels-last view of ``B x 512 x C`` tokens.
    """
    conv1, norm1, _, conv2, norm2, _, conv3 = seq
    b, _, d, h, w = masks.shape
    g = (d // 4, h // 4, w // 4)
    c1, c2, c3 = conv1.out_channels, conv2.out_channels, conv3.out_channels
    # z = 4 * Z + 2 * a + i (Z: output voxel, a: second-level offset, i: first-level)
    x = masks.reshape(b, g[0], 2, 2, g[1], 2, 2, g[2], 2, 2)
    x = x.permute(0, 1, 4, 7, 2, 5, 8, 3, 6, 9).reshape(-1, 8)
    y = torch.addmm(conv1.bias, x, derived(conv1, "rows", _block_rows, conv1.weight))
    y = F.gelu(F.layer_norm(y, (c1,), norm1.weight, norm1.bias, norm1.eps))
    y = torch.addmm(conv2.bias, y.view(-1, 8 * c1), derived(conv2, "rows", _block_rows, conv2.weight))
    y = F.gelu(F.layer_norm(y, (c2,), norm2.weight, norm2.bias, norm2.eps))
    y = torch.addmm(conv3.bias, y, conv3.weight.view(c3, c2).t())
    return y.view(b, *g, c3).permute(0, 4, 1, 2, 3)
