"""SAM-Med3D image encoder: a 3D ViT (ViTDet-style) with windowed and global attention.

A 128^3 crop is cut into 16^3 patches (an 8^3 token grid); twelve transformer blocks
follow, four of them (2, 5, 8, 11) with global attention, the others with 14^3
window attention and relative position terms; a convolutional neck maps the 768
channels to the 384-channel image embedding (``1 x 384 x 8 x 8 x 8``).

Window attention: the token grid (8^3) is smaller than the window (14^3), so the
reference pads the normalised tokens with zeros to one 14^3 window and attends over
all 2744 positions. The padded keys are *not* masked, so they change the result. We
reproduce that exactly but cheaply: a zero token projects to the qkv bias, so every
padded key is the key bias and every padded value the value bias; their 2232 logits
differ only by the relative-position terms, which are sums of three factors, so the
total softmax weight of the padded keys is a closed-form log-sum-exp. The attention
then runs over the 512 real keys plus one "padded" key carrying that log-weight
(:meth:`Attention3D.attend`), 5x fewer products than the padded window and no
``2744``-wide bias tensors. :meth:`Attention3D.attend_reference` keeps the published
computation (used by the tests to check the fast form).
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm3d, MLPBlock, patch_conv3d


def relative_position_table(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Relative position embeddings ``(q_size, k_size, C)`` for one axis.

    ``rel_pos`` holds ``2 * max(q, k) - 1`` rows (linearly resized when it does not).
    """
    max_rel_dist = int(2 * max(q_size, k_size) - 1)
    if rel_pos.shape[0] != max_rel_dist:
        resized = F.interpolate(
            rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1), size=max_rel_dist, mode="linear"
        )
        rel_pos = resized.reshape(-1, max_rel_dist).permute(1, 0)
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    relative = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos[relative.long()]


def _padded_log_mass(term_a: torch.Tensor, term_b: torch.Tensor, term_c: torch.Tensor,
                     size: Tuple[int, int, int]) -> torch.Tensor:
    """``log sum exp(A[w'] + B[d', w'] + C[h', w'])`` over the padded keys of a window.

    ``term_a`` is ``(..., D, H, W, S)`` (key ``w'``), ``term_b`` and ``term_c``
    ``(..., D, H, S, S)`` (keys ``d'`` resp. ``h'``, then ``w'``) as in
    :meth:`Attention3D.attend`; a key ``(d', h', w')`` of the ``S^3`` window is padded
    unless ``d' < D``, ``h' < H`` and ``w' < W``. Returns ``(..., D, H, W, 1)``.

    Per column ``w'`` the sum over ``(d', h')`` factorises into sums of ``exp(B)`` over
    ``d'`` and of ``exp(C)`` over ``h'`` (each split at the grid edge into real and
    padded rows); every padded pair is counted by a sum of positive products (no
    subtraction, so no cancellation), and the maxima are taken out before ``exp``.
    """
    d, h, w = size
    s = term_b.shape[-1]
    max_b = term_b.amax(dim=-2, keepdim=True)
    max_c = term_c.amax(dim=-2, keepdim=True)
    exp_b, exp_c = (term_b - max_b).exp(), (term_c - max_c).exp()
    b_real, b_pad = exp_b[..., :d, :].sum(-2), exp_b[..., d:, :].sum(-2)
    c_real, c_pad = exp_c[..., :h, :].sum(-2), exp_c[..., h:, :].sum(-2)
    # padded (d', h') pairs: those with d' or h' padded, and in the columns w' >= W
    # (themselves padded) also the pairs with both real
    padded_column = (torch.arange(s, device=term_b.device) >= w).to(term_b.dtype)
    pairs = b_pad * (c_real + c_pad) + b_real * c_pad + padded_column * (b_real * c_real)
    log_pairs = pairs.log() + (max_b + max_c).squeeze(-2)  # (..., D, H, S); log 0 = -inf: none
    return torch.logsumexp(term_a + log_pairs[..., None, :], dim=-1, keepdim=True)


class Attention3D(nn.Module):
    """Multi-head self-attention over a 3D token grid with decomposed relative positions."""

    def __init__(self, dim: int, num_heads: int, input_size: Tuple[int, int, int], qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_d = nn.Parameter(torch.zeros(2 * input_size[0] - 1, self.head_dim))
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[1] - 1, self.head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[2] - 1, self.head_dim))

    def extra_repr(self) -> str:
        # part of the compiled-model cache key (the module's repr): a model converted
        # from the padded-window computation is not reused for this graph
        return f"heads={self.num_heads}, head_dim={self.head_dim}, padding=closed-form key"

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        # (B, D, H, W, C) -> (B * heads, D, H, W, head_dim)
        b, d, h, w, _ = t.shape
        t = t.reshape(b, d, h, w, self.num_heads, self.head_dim).permute(0, 4, 1, 2, 3, 5)
        return t.reshape(b * self.num_heads, d, h, w, self.head_dim)

    def _merge_heads(self, t: torch.Tensor, b: int, size: Tuple[int, int, int]) -> torch.Tensor:
        # (B * heads, D*H*W, head_dim) -> (B, D, H, W, C)
        d, h, w = size
        t = t.view(b, self.num_heads, d, h, w, self.head_dim).permute(0, 2, 3, 4, 1, 5)
        return t.reshape(b, d, h, w, self.num_heads * self.head_dim)

    def _head_bias(self, part: int, dtype: torch.dtype) -> Optional[torch.Tensor]:
        """The q (0), k (1) or v (2) bias per head ``(heads, head_dim)``: what a zero
        (padding) token projects to; ``None`` without qkv bias (it projects to zero)."""
        if self.qkv.bias is None:
            return None
        c = self.num_heads * self.head_dim
        return self.qkv.bias[part * c : (part + 1) * c].to(dtype).view(self.num_heads, self.head_dim)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: Optional[int] = None) -> torch.Tensor:
        """Attention of the real tokens, equal to :meth:`attend_reference` up to float rounding.

        Parameters
        ----------
        q, k, v : torch.Tensor
            ``(B, D, H, W, C)`` projections of the real tokens.
        window : int, optional
            ``None``: global attention on the (cubic) grid. Otherwise the edge of the
            zero-padded window (``>= D, H, W``) the reference attends in: the padded
            tokens are the qkv biases (see the module docstring).

        Returns
        -------
        torch.Tensor
            ``(B, D, H, W, C)`` before the output projection.

        Notes
        -----
        With ``S`` the window edge, the reference's logit of a query at ``(a, b, c)``
        and a key at ``(d', h', w')`` is ``scale * q.k + A[w'] + B[d', w'] + C[h', w']``
        where ``A = q[a,b,c].Rd[a]``, ``B[d', w'] = q[a,b,d'].Rh[b, w']`` and
        ``C[h', w'] = q[a,b,h'].Rw[h', w']`` (the published broadcast, see
        :meth:`attend_reference`). Every padded key has the same ``q.k`` (the key
        bias), so the padded keys' softmax mass is ``exp(scale * q.k_bias) *
        sum exp(A + B + C)`` over the padded positions; that set is the disjoint union
        of ``{w' >= W}``, ``{w' < W, d' >= D}`` and ``{w' < W, d' < D, h' >= H}``, and on
        each part the sum factorises into log-sum-exps along ``d'`` and ``h'``, so it is
        exact and free of cancellation. One extra key (the key bias, value the value
        bias) with that log-mass added to its logit stands for all padded keys.
        """
        b, d, h, w, _ = q.shape
        s = window if window is not None else d
        if window is None and not (d == h == w):
            raise ValueError("SAM-Med3D global attention works on cubic token grids only")
        if window is not None and max(d, h, w) > window:
            raise ValueError(f"token grid {(d, h, w)} does not fit in a {window}^3 window")
        n, nh, hd = d * h * w, self.num_heads, self.head_dim
        # (B, heads, D, H, W, hd); batch and heads stay two axes (OpenVINO's attention
        # fusion mis-reads a merged B*heads axis)
        qh, kh, vh = (t.reshape(b, d, h, w, nh, hd).permute(0, 4, 1, 2, 3, 5) for t in (q, k, v))
        rd = relative_position_table(s, s, self.rel_pos_d).to(q.dtype)
        rh = relative_position_table(s, s, self.rel_pos_h).to(q.dtype)
        rw = relative_position_table(s, s, self.rel_pos_w).to(q.dtype)
        zero = torch.zeros(nh, hd, dtype=q.dtype, device=q.device)
        # the query rows q[a, b, 0..S-1] the B and C terms read: real queries, then padding
        rows = qh
        if s > w:
            pad = self._head_bias(0, q.dtype)
            pad = (zero if pad is None else pad).view(1, nh, 1, 1, 1, hd).expand(b, -1, d, h, s - w, -1)
            rows = torch.cat([qh, pad], dim=4)
        term_a = torch.einsum("bndhwc,dkc->bndhwk", qh, rd[:d]).contiguous()  # (., d, h, w, S): key w'
        term_b = torch.einsum("bndhjc,hkc->bndhjk", rows, rh[:h]).contiguous()  # (., d, h, S: d', S: w')
        term_c = torch.einsum("bndhjc,jkc->bndhjk", rows, rw).contiguous()  # (., d, h, S: h', S: w')
        # bias of the real keys (d' < D, h' < H, w' < W), as (B, heads, n, n)
        bias = term_b[..., None, :d, None, :w] + term_c[..., None, None, :h, :w]
        bias = (bias + term_a[..., None, None, :w]).reshape(b, nh, n, n)
        queries, keys, values = (t.reshape(b, nh, n, hd) for t in (qh, kh, vh))
        if s > d or s > h or s > w:
            log_mass = _padded_log_mass(term_a, term_b, term_c, (d, h, w)).reshape(b, nh, n, 1)
            bias = torch.cat([bias, log_mass], dim=-1)
            pads = [self._head_bias(i, q.dtype) for i in (1, 2)]
            pad_k, pad_v = ((zero if t is None else t).view(1, nh, 1, hd).expand(b, -1, -1, -1) for t in pads)
            keys, values = torch.cat([keys, pad_k], dim=2), torch.cat([values, pad_v], dim=2)
        out = F.scaled_dot_product_attention(queries, keys, values, attn_mask=bias, scale=self.scale)
        return out.transpose(1, 2).reshape(b, d, h, w, nh * hd)

    def attend_reference(
        self,
        q_full: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        q_extent: Optional[Tuple[int, int, int]] = None,
    ) -> torch.Tensor:
        """The published attention on a cubic grid, with its relative-position terms.

        ``q_full``, ``k``, ``v`` are (B, S, S, S, C) on the same grid; only queries in
        the corner ``q_extent`` (default: all) are computed. Returns (B, *q_extent, C)
        before the output projection. :meth:`attend` computes the same faster.

        The relative-position terms follow the published SAM-Med3D code *exactly*,
        including how it broadcasts them onto the (query, key) attention map: for a
        query at (d, h, w) and a key at (d', h', w') it adds
        ``q[d,h,w].Rd[d,w'] + q[d,h,d'].Rh[h,w'] + q[d,h,h'].Rw[h',w']``
        (not the decomposed ``Rd[d,d'] + Rh[h,h'] + Rw[w,w']`` of 2D SAM). The released
        weights were trained with this form, so parity requires it; it also needs the
        queries of the whole grid (padded ones included), hence ``q_full``.
        """
        b, s = q_full.shape[0], q_full.shape[1]
        if not (q_full.shape[1] == q_full.shape[2] == q_full.shape[3] == k.shape[1] == k.shape[2] == k.shape[3]):
            raise ValueError("SAM-Med3D attention works on cubic token grids only")
        d, h, w = q_extent or (s, s, s)
        nh, hd = self.num_heads, self.head_dim
        # (B*heads, S, S, S, hd)
        qf = self._heads(q_full)
        kh_ = self._heads(k).reshape(b * nh, s**3, hd)
        vh_ = self._heads(v).reshape(b * nh, s**3, hd)
        q = qf[:, :d, :h, :w].reshape(b * nh, d * h * w, hd)
        attn = (q * self.scale) @ kh_.transpose(-2, -1)
        rd = relative_position_table(s, s, self.rel_pos_d)
        rh = relative_position_table(s, s, self.rel_pos_h)
        rw = relative_position_table(s, s, self.rel_pos_w)
        rel_d = torch.einsum("bdhwc,dkc->bdhwk", qf[:, :d, :h, :w], rd[:d])  # (., d, h, w, S)
        rel_h = torch.einsum("bdhwc,hkc->bdhwk", qf[:, :d, :h], rh[:h])  # (., d, h, S, S)
        rel_w = torch.einsum("bdhwc,wkc->bdhwk", qf[:, :d, :h], rw)  # (., d, h, S, S)
        attn = (
            attn.view(-1, d, h, w, s, s, s)
            + rel_d[:, :, :, :, None, None, :]
            + rel_h[:, :, :, None, :, None, :]
            + rel_w[:, :, :, None, None, :, :]
        ).view(-1, d * h * w, s * s * s)
        attn = attn.softmax(dim=-1)
        out = attn @ vh_  # (B*heads, d*h*w, hd)
        return self._merge_heads(out, b, (d, h, w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Global attention over the whole grid ``x`` (B, D, H, W, C)."""
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.proj(self.attend(q, k, v))

    def forward_padded_window(self, x: torch.Tensor, window: int) -> torch.Tensor:
        """Attention inside one zero-padded ``window``^3 holding the whole grid ``x``.

        Equal (up to float rounding) to padding ``x`` with zero tokens, attending over
        the window and cropping the result (:meth:`forward_reference`), at a fraction
        of the cost (see :meth:`attend`).
        """
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.proj(self.attend(q, k, v, window=window))

    def forward_reference(self, x: torch.Tensor, window: Optional[int] = None) -> torch.Tensor:
        """The published computation: ``x`` zero-padded to ``window``^3 (``None``: not
        padded), attention over the whole window, the real tokens' outputs."""
        b, d, h, w, c = x.shape
        if window is None:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            return self.proj(self.attend_reference(q, k, v))
        padded = x.new_zeros((b, window, window, window, c))
        padded[:, :d, :h, :w] = x
        q, k, v = self.qkv(padded).chunk(3, dim=-1)
        return self.proj(self.attend_reference(q, k, v, q_extent=(d, h, w)))


def _window_partition(x: torch.Tensor, window: int) -> Tuple[torch.Tensor, Tuple[int, int, int]]:
    b, d, h, w, c = x.shape
    pads = [(window - s % window) % window for s in (d, h, w)]
    if any(pads):
        x = F.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
    dp, hp, wp = d + pads[0], h + pads[1], w + pads[2]
    x = x.view(b, dp // window, window, hp // window, window, wp // window, window, c)
    windows = x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, window, window, window, c)
    return windows, (dp, hp, wp)


def _window_unpartition(
    windows: torch.Tensor, window: int, padded: Tuple[int, int, int], size: Tuple[int, int, int]
) -> torch.Tensor:
    dp, hp, wp = padded
    n_windows = (dp // window) * (hp // window) * (wp // window)
    b = windows.shape[0] // n_windows
    x = windows.view(b, dp // window, hp // window, wp // window, window, window, window, -1)
    x = x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, dp, hp, wp, -1)
    d, h, w = size
    return x[:, :d, :h, :w].contiguous()


class Block3D(nn.Module):
    """Transformer block: (windowed or global) attention and an MLP, pre-norm, residual."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        window_size: int,
        grid_size: Tuple[int, int, int],
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        attn_size = grid_size if window_size == 0 else (window_size,) * 3
        self.attn = Attention3D(dim, num_heads, attn_size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), nn.GELU)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        ws = self.window_size
        if ws == 0:
            x = self.attn(x)
        elif all(s <= ws for s in x.shape[1:4]):
            x = self.attn.forward_padded_window(x, ws)
        else:
            size = tuple(x.shape[1:4])
            windows, padded = _window_partition(x, ws)
            windows = self.attn(windows)
            x = _window_unpartition(windows, ws, padded, size)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed3D(nn.Module):
    """Non-overlapping 3D patches -> tokens (B, D', H', W', C)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # one matrix product (no im2col of the generic 3D convolution), channels last
        return patch_conv3d(x, self.proj).permute(0, 2, 3, 4, 1)


class ImageEncoderViT3D(nn.Module):
    """The SAM-Med3D ViT-B image encoder (input ``B x 1 x 128^3`` -> ``B x 384 x 8^3``)."""

    def __init__(
        self,
        img_size: int = 128,
        patch_size: int = 16,
        in_chans: int = 1,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 384,
        window_size: int = 14,
        global_attn_indexes: Sequence[int] = (2, 5, 8, 11),
    ) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed3D(patch_size, in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block3D(
                embed_dim,
                num_heads,
                mlp_ratio,
                window_size=0 if i in global_attn_indexes else window_size,
                grid_size=(grid, grid, grid),
            )
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv3d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm3d(out_chans),
            nn.Conv3d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm3d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.forward_neck(x)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The published computation, for checks and benchmarks: the generic patch
        convolution, every windowed block on its zero-padded 14^3 window with the full
        relative-position maps (:meth:`Attention3D.forward_reference`), the neck on
        channels-first tensors. Same result as :meth:`forward` up to float rounding."""
        x = self.patch_embed.proj(x).permute(0, 2, 3, 4, 1) + self.pos_embed
        for block in self.blocks:
            ws = block.window_size
            if ws and not all(s <= ws for s in x.shape[1:4]):
                x = block(x)  # several windows: partitioned, no padded-window shortcut
                continue
            x = x + block.attn.forward_reference(block.norm1(x), ws or None)
            x = x + block.mlp(block.norm2(x))
        return self.neck(x.permute(0, 4, 1, 2, 3))

    def forward_neck(self, x: torch.Tensor) -> torch.Tensor:
        """The neck on channels-last tokens ``(B, D, H, W, C)`` -> ``(B, out_chans, D, H, W)``.

        Same maths as ``self.neck(x.permute(0, 4, 1, 2, 3))``: the 1x1x1 convolution is a
        matrix product on the token rows and the first channel norm a ``layer_norm`` over
        them, so no channels-first copy is made before the 3x3x3 convolution (which reads
        the channels-last layout as it is).
        """
        conv1, norm1, conv3, norm2 = self.neck
        x = F.linear(x, conv1.weight.flatten(1))
        x = F.layer_norm(x, (x.shape[-1],), norm1.weight, norm1.bias, norm1.eps)
        x = norm2(conv3(x.permute(0, 4, 1, 2, 3)))
        return x.contiguous()
