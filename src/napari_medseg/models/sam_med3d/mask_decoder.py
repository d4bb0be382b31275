"""SAM-Med3D mask decoder: predicts 32^3 mask logits and an IoU estimate."""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP, LayerNorm3d
from .transformer import TwoWayTransformer3D


class MaskDecoder3D(nn.Module):
    """Tokens (IoU + 4 mask tokens + prompts) attend to the image; hypernetworks
    turn the mask tokens into per-voxel weights over the upscaled embedding."""

    def __init__(
        self,
        transformer_dim: int = 384,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer = TwoWayTransformer3D(depth=2, embedding_dim=transformer_dim, num_heads=8, mlp_dim=2048)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose3d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm3d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose3d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return ``(low_res_logits B x M x 32^3, iou B x M)``; M = 1, or 3 with multimask."""
        sel = slice(1, None) if multimask_output else slice(0, 1)
        masks, iou = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, mask_tokens=sel
        )
        return masks, iou[:, sel]

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        mask_tokens: slice = slice(None),
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """All IoU estimates, and the masks of the ``mask_tokens`` selected."""
        bs = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(bs, -1, -1), sparse_prompt_embeddings], dim=1)
        src = image_embeddings
        if src.shape[0] != bs:
            src = torch.repeat_interleave(src, bs, dim=0)
        src = src + dense_prompt_embeddings
        pos = image_pe if image_pe.shape[0] == bs else torch.repeat_interleave(image_pe, bs, dim=0)
        b, c, d, h, w = src.shape
        hs, src = self.transformer(src, pos, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]
        mlps = list(enumerate(self.output_hypernetworks_mlps))[mask_tokens]
        hyper_in = torch.stack([mlp(mask_tokens_out[:, i, :]) for i, mlp in mlps], dim=1)
        masks = self._upscale_and_project(src, (d, h, w), hyper_in)
        return masks, self.iou_prediction_head(iou_token_out)

    def _upscale_and_project(self, tokens: torch.Tensor, grid: Tuple[int, int, int], hyper_in: torch.Tensor) -> torch.Tensor:
        """``output_upscaling`` followed by the hypernetwork product, channels-last.

        Same operations as the reference (two 2x2x2 stride-2 transposed convolutions,
        LayerNorm3d, GELU), written as matrix products on token rows so that the 32^3
        feature map is never permuted to channels-first: the voxel order is restored
        only on the final 1-channel masks. ``tokens``: (B, d*h*w, C) image tokens.
        """
        conv1, norm, _, conv2, _ = self.output_upscaling
        b = tokens.shape[0]
        d, h, w = grid
        c1, c2 = conv1.out_channels, conv2.out_channels
        # transposed conv 1: (B, dhw, C) @ (C, c1*8) -> (B, d, h, w, c1, 2, 2, 2)
        bias1 = conv1.bias.repeat_interleave(8)  # one bias per (channel, sub-voxel) column
        y = torch.addmm(bias1, tokens.reshape(-1, tokens.shape[-1]), conv1.weight.reshape(conv1.in_channels, -1))
        y = y.reshape(b, d, h, w, c1, 2, 2, 2)
        y = y.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, 2 * d, 2 * h, 2 * w, c1)
        y = F.gelu(F.layer_norm(y, (c1,), norm.weight, norm.bias, norm.eps))
        # transposed conv 2 and GELU, still per coarse voxel: (B, 8dhw, c2, 8)
        bias2 = conv2.bias.repeat_interleave(8)
        z = torch.addmm(bias2, y.reshape(-1, c1), conv2.weight.reshape(c1, -1))
        z = F.gelu(z.reshape(b, -1, c2, 8))
        m = torch.einsum("bnck,bmc->bmnk", z, hyper_in)  # (B, M, 8dhw, 8)
        n_masks = hyper_in.shape[1]
        m = m.reshape(b, n_masks, 2 * d, 2 * h, 2 * w, 2, 2, 2).permute(0, 1, 2, 5, 3, 6, 4, 7)
        return m.reshape(b, n_masks, 4 * d, 4 * h, 4 * w)
