"""SAM-Med3D mask decoder: predicts 32^3 mask logits and an IoU estimate."""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP, LayerNorm3d, derived
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
        LayerNorm3d, GELU, then the per-voxel dot product with each mask's hypernetwork
        output), written as matrix products on rows in block order: the first product
        gives, per 8^3 token, its 8 sub-voxels' channels side by side, so its rows viewed
        8 times longer are the 16^3 voxels in (token, sub-voxel) order, and likewise for
        the second. Nothing is permuted until the final 1-channel masks (32^3 values per
        mask). ``tokens``: (B, d*h*w, C) image tokens.
        """
        conv1, norm, _, conv2, _ = self.output_upscaling
        b = tokens.shape[0]
        d, h, w = grid
        c1, c2 = conv1.out_channels, conv2.out_channels
        w1, b1 = derived(self, "upscale1", _block_columns, conv1.weight, conv1.bias)
        w2, b2 = derived(self, "upscale2", _block_columns, conv2.weight, conv2.bias)
        y = torch.addmm(b1, tokens.reshape(-1, tokens.shape[-1]), w1).view(-1, c1)
        y = F.gelu(F.layer_norm(y, (c1,), norm.weight, norm.bias, norm.eps))
        z = torch.addmm(b2, y, w2).view(b, -1, c2)  # rows: (token, sub-voxel 1, sub-voxel 2)
        z = torch.ops.aten.gelu_(z)  # in place: the largest array of the decoder (8 * 16^3 x c2)
        m = torch.bmm(z, hyper_in.transpose(1, 2))  # (B, 64 dhw, M)
        n_masks = hyper_in.shape[1]
        # z = 4 * token + 2 * sub-voxel 1 + sub-voxel 2, on each axis
        m = m.view(b, d, h, w, 2, 2, 2, 2, 2, 2, n_masks).permute(0, 10, 1, 4, 7, 2, 5, 8, 3, 6, 9)
        return m.reshape(b, n_masks, 4 * d, 4 * h, 4 * w)


def _block_columns(weight: torch.Tensor, bias: torch.Tensor) -> tuple:
    """A 2x2x2 stride-2 transposed convolution's ``(C_in, C_out, 2, 2, 2)`` kernel as a
    ``(C_in, 8 * C_out)`` matrix whose columns follow the output block's voxels (z, y,
    x) with the channels fastest, and its bias repeated to match."""
    cin, cout = weight.shape[:2]
    return weight.permute(0, 2, 3, 4, 1).reshape(cin, 8 * cout).contiguous(), bias.repeat(8)
