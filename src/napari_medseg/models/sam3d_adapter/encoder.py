"""3DSAM-adapter image encoder: SAM's ViT-B run on a stack of slices, made 3D.

From the public description and code of Gong et al. (2024): every axial slice of the
(4x upsampled) crop goes through SAM's 2D patch embedding; a depth-wise convolution
over groups of ``num_slice`` (16) slices turns the slice stack into 3D tokens (32^3
for a 128^3 crop); the absolute position is SAM's 2D embedding (average-pooled 2x)
plus a learned depth embedding; every transformer block starts with a spatial adapter
(linear -> depth-wise 3x3x3 conv -> linear, residual) and uses 8^3 cubic-window
attention (shifted by 4 on even blocks, Swin-style, with the published ``-100``
region mask) with decomposed relative positions scaled by a learned ``lr``; a 3D neck
after blocks 3, 6, 9 and 12 gives four 256-channel feature maps.

Token axis order is (h, w, d): the two in-plane axes of the slices, then the slice
axis, as in the reference.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..sam_med3d.common import LayerNorm3d, MLPBlock
from ..sam_med3d.image_encoder import relative_position_table


class SpatialAdapter(nn.Module):
    """Bottleneck adapter with a depth-wise 3D convolution, added to the block input."""

    def __init__(self, dim: int, mid_dim: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, mid_dim)
        self.conv = nn.Conv3d(mid_dim, mid_dim, kernel_size=3, padding=1, groups=mid_dim)
        self.linear2 = nn.Linear(mid_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.linear1(x))
        out = F.relu(self.conv(out.permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1))
        return x + F.relu(self.linear2(out))


class WindowAttention3D(nn.Module):
    """Multi-head attention inside cubic windows with scaled decomposed relative positions."""

    def __init__(self, dim: int, num_heads: int, rel_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * rel_size - 1, self.head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * rel_size - 1, self.head_dim))
        self.rel_pos_d = nn.Parameter(torch.zeros(2 * rel_size - 1, self.head_dim))
        self.lr = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x``: windows (nW*B, s, s, s, C); ``mask``: (nW, s^3, s^3) additive or None.

        Equal to :meth:`forward_reference` up to float rounding, without its
        ``windows x heads x s^3 x s^3`` relative-position maps: the decomposed terms
        ``lr * (q.Rh[h, h'] + q.Rw[w, w'] + q.Rd[d, d'])`` are a dot product of the
        query's three term vectors with one-hot codes of the key's coordinates, so they
        ride along as ``3 s`` extra channels of the queries and keys of one fused
        attention call.
        """
        b, h, w, d, _ = x.shape
        n, nh, hd = h * w * d, self.num_heads, self.head_dim
        qkv = self.qkv(x).reshape(b, n, 3, nh, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (b, heads, n, hd)
        r_q = q.reshape(b, nh, h, w, d, hd)
        rh = relative_position_table(h, h, self.rel_pos_h)
        rw = relative_position_table(w, w, self.rel_pos_w)
        rd = relative_position_table(d, d, self.rel_pos_d)
        terms = [torch.einsum("bnhwdc,hkc->bnhwdk", r_q, rh), torch.einsum("bnhwdc,wkc->bnhwdk", r_q, rw),
                 torch.einsum("bnhwdc,dkc->bnhwdk", r_q, rd)]
        q_ext = torch.cat([q * self.scale] + [(self.lr * t).reshape(b, nh, n, -1) for t in terms], dim=-1)
        # one-hot codes of every key's (h', w', d'), the same for all windows and heads
        grid = torch.stack(torch.meshgrid(*(torch.arange(m, device=x.device) for m in (h, w, d)), indexing="ij"))
        codes = torch.cat([F.one_hot(grid[i].reshape(-1), m) for i, m in enumerate((h, w, d))], dim=-1)
        k_ext = torch.cat([k, codes.to(k.dtype).expand(b, nh, n, h + w + d)], dim=-1)
        if mask is not None:
            n_windows = mask.shape[0]
            mask = mask[:, None].to(q.dtype)  # (nW, 1, n, n), broadcast over the heads
            if b != n_windows:  # several volumes: the windows' masks again for each
                mask = mask.repeat(b // n_windows, 1, 1, 1)
        # values padded to the queries' width: PyTorch's fused CPU kernel needs equal widths
        # (with unequal ones it falls back to materialising the attention maps)
        v_ext = torch.cat([v, v.new_zeros(b, nh, n, h + w + d)], dim=-1)
        out = F.scaled_dot_product_attention(q_ext, k_ext, v_ext, attn_mask=mask, scale=1.0)[..., :hd]
        out = out.reshape(b, nh, h, w, d, hd).permute(0, 2, 3, 4, 1, 5).reshape(b, h, w, d, -1)
        return self.proj(out)

    def forward_reference(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The published computation (explicit relative-position maps), for checks."""
        b, h, w, d, _ = x.shape
        n = h * w * d
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (b, heads, n, hd)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        r_q = q.reshape(b * self.num_heads, h, w, d, self.head_dim)
        rh = relative_position_table(h, h, self.rel_pos_h)
        rw = relative_position_table(w, w, self.rel_pos_w)
        rd = relative_position_table(d, d, self.rel_pos_d)
        rel_h = torch.einsum("bhwdc,hkc->bhwdk", r_q, rh)
        rel_w = torch.einsum("bhwdc,wkc->bhwdk", r_q, rw)
        rel_d = torch.einsum("bhwdc,dkc->bhwdk", r_q, rd)
        attn = (
            attn.reshape(b * self.num_heads, h, w, d, h, w, d)
            + self.lr * rel_h[:, :, :, :, :, None, None]
            + self.lr * rel_w[:, :, :, :, None, :, None]
            + self.lr * rel_d[:, :, :, :, None, None, :]
        ).reshape(b, self.num_heads, n, n)
        if mask is not None:
            n_windows = mask.shape[0]
            attn = attn.view(b // n_windows, n_windows, self.num_heads, n, n) + mask[None, :, None]
            attn = attn.view(b, self.num_heads, n, n)
        out = attn.softmax(dim=-1) @ v
        out = out.view(b, self.num_heads, h, w, d, self.head_dim).permute(0, 2, 3, 4, 1, 5).reshape(b, h, w, d, -1)
        return self.proj(out)


def _partition(x: torch.Tensor, s: int) -> torch.Tensor:
    b, h, w, d, c = x.shape
    x = x.view(b, h // s, s, w // s, s, d // s, s, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, s, s, s, c)


def _unpartition(windows: torch.Tensor, s: int, size: Tuple[int, int, int]) -> torch.Tensor:
    h, w, d = size
    b = windows.shape[0] // ((h // s) * (w // s) * (d // s))
    x = windows.view(b, h // s, w // s, d // s, s, s, s, -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, h, w, d, -1)


def shifted_window_mask(grid: int, window: int, shift: int) -> torch.Tensor:
    """Swin-style additive mask (-100 between tokens of different regions after the roll)."""
    img = torch.zeros((1, grid, grid, grid, 1))
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for a in cuts:
        for b in cuts:
            for c in cuts:
                img[:, a, b, c, :] = label
                label += 1
    windows = _partition(img, window).view(-1, window**3)
    diff = windows.unsqueeze(1) - windows.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class AdapterBlock(nn.Module):
    """Adapter + (shifted) cubic-window attention + MLP."""

    def __init__(self, dim: int, num_heads: int, window: int, rel_size: int, shift: int, grid: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = WindowAttention3D(dim, num_heads, rel_size)
        self.window = window
        self.shift = shift
        # persistent: the published checkpoints store it (6 x 64 x 512 x 512 floats)
        self.register_buffer("attn_mask", shifted_window_mask(grid, window, shift) if shift > 0 else None)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, 4 * dim, nn.GELU)
        self.adapter = SpatialAdapter(dim, dim // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.adapter(x)
        shortcut = x
        x = self.norm1(x)
        size = tuple(x.shape[1:4])
        s = self.shift
        if s > 0:
            x = torch.roll(x, shifts=(-s, -s, -s), dims=(1, 2, 3))
        x = _unpartition(self.attn(_partition(x, self.window), mask=self.attn_mask), self.window, size)
        if s > 0:
            x = torch.roll(x, shifts=(s, s, s), dims=(1, 2, 3))
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed2D(nn.Module):
    def __init__(self, patch: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)


class AdapterImageEncoder(nn.Module):
    """The 3DSAM-adapter encoder (defaults: the published ViT-B configuration)."""

    def __init__(
        self,
        img_size: int = 1024,
        patch_size: int = 16,
        patch_depth: int = 32,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        out_chans: int = 256,
        window_size: int = 14,
        cubic_window_size: int = 8,
        global_attn_indexes: Sequence[int] = (2, 5, 8, 11),
        num_slice: int = 16,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.num_slice = num_slice
        self.grid = img_size // patch_size // 2  # tokens per in-plane axis (pos_embed is pooled 2x)
        self.patch_embed = PatchEmbed2D(patch_size, in_chans, embed_dim)
        self.slice_embed = nn.Conv3d(embed_dim, embed_dim, kernel_size=(1, 1, num_slice), stride=(1, 1, num_slice), groups=embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, img_size // patch_size, img_size // patch_size, embed_dim))
        self.depth_embed = nn.Parameter(torch.ones(1, patch_depth, embed_dim))
        self.blocks = nn.ModuleList(
            AdapterBlock(
                embed_dim,
                num_heads,
                window=cubic_window_size,
                rel_size=(img_size // patch_size) if i in global_attn_indexes else window_size,
                shift=cubic_window_size // 2 if i % 2 == 0 else 0,
                grid=self.grid,
            )
            for i in range(depth)
        )
        self.neck_3d = nn.ModuleList(
            nn.Sequential(
                nn.Conv3d(embed_dim, out_chans, 1, bias=False),
                LayerNorm3d(out_chans),
                nn.Conv3d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
                LayerNorm3d(out_chans),
            )
            for _ in range(4)
        )

    @property
    def slice_size(self) -> int:
        """In-plane size of the slices the encoder expects (512 for the published model)."""
        return self.grid * self.patch_size

    @property
    def n_slices(self) -> int:
        return self.depth_embed.shape[1] * self.num_slice

    def embed_slices(self, slices: torch.Tensor) -> torch.Tensor:
        """Tokens (1, h, w, d, C) of ``slices`` (S, in_chans, H, W) - the reference path."""
        x = self.patch_embed.proj(slices).permute(0, 2, 3, 1)  # (S, h, w, C)
        x = self.slice_embed(x.permute(3, 1, 2, 0).unsqueeze(0))  # (1, C, h, w, d)
        return x.permute(0, 2, 3, 4, 1)

    def embed_volume(self, volume: torch.Tensor, chunk_tokens: int = 2) -> torch.Tensor:
        """Tokens of a single-channel (D, H, W) slice stack, without materialising the
        3-channel copy: the channels the reference feeds are identical repeats, so the
        patch convolution's weights are summed over them. Processes ``chunk_tokens``
        depth tokens (x ``num_slice`` slices) at a time to bound memory."""
        w = self.patch_embed.proj.weight.sum(dim=1, keepdim=True)
        b = self.patch_embed.proj.bias
        out = []
        step = chunk_tokens * self.num_slice
        for s0 in range(0, volume.shape[0], step):
            sl = volume[s0 : s0 + step].unsqueeze(1)  # (s, 1, H, W)
            x = F.conv2d(sl, w, b, stride=self.patch_size).permute(0, 2, 3, 1)
            x = self.slice_embed(x.permute(3, 1, 2, 0).unsqueeze(0))
            out.append(x)
        return torch.cat(out, dim=-1).permute(0, 2, 3, 4, 1)

    def forward_tokens(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The four 256-channel feature maps (after blocks 3, 6, 9, 12) of tokens ``x``."""
        pos = F.avg_pool2d(self.pos_embed.permute(0, 3, 1, 2), kernel_size=2).permute(0, 2, 3, 1).unsqueeze(3)
        x = x + pos + self.depth_embed[:, None, None]
        features = []
        for i, block in enumerate(self.blocks, start=1):
            x = block(x)
            if i % 3 == 0:
                features.append(self.neck_3d[i // 3 - 1](x.permute(0, 4, 1, 2, 3)))
        return features

    def forward(self, slices: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Reference interface: ``(deepest feature, [three earlier features])``."""
        features = self.forward_tokens(self.embed_slices(slices))
        return features[-1], features[:-1]
