"""The network of the hybrid liver family: a 2.5D CNN-Transformer U-Net.

Design (why, in ``docs/liver.md``): a **2.5D** network sees ``2 * context + 1`` adjacent axial
slices as input channels and predicts the centre slice. Compared with a 3D network this costs
~10x less memory and compute per voxel, trains on a CPU in minutes at small width, copes with
any slice thickness (slices are resampled to a fixed z spacing first) and still sees
through-plane context. The layout follows the published hybrids (SWTR-Unet, TransUNet):

* convolutional encoder: MONAI ``UnetResBlock`` residual blocks, stride-2 down-sampling;
* transformer: MONAI ``TransformerBlock`` layers on the deepest feature map, one token per
  pixel, with **2D sine-cosine positional embeddings computed for the actual feature-map
  size** (no learned table), so any input size works;
* U-Net decoder: MONAI ``UnetrUpBlock`` (transposed conv + skip concat + residual block) back to
  full resolution, ``UnetOutBlock`` logits.

The checkpoint format is in :mod:`.checkpoint`, the preprocessing both training and
inference apply in :mod:`.preprocessing`. Torch is imported when this module is imported
(MONAI when a network is built); import it lazily.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from ...errors import CheckpointMismatchError

#: Architecture defaults (the ``config`` dict of a checkpoint overrides them).
DEFAULT_CONFIG = {
    "context": 1,  # slices either side of the centre slice -> in_channels = 2 * context + 1
    "out_channels": 2,  # background + foreground (liver for stage 1, lesion for stage 2)
    "features": 16,  # width of the first level; doubled per level
    "levels": 4,  # resolution levels (down-sampling factor 2 ** (levels - 1))
    "transformer_layers": 2,
    "heads": 4,
    "mlp_ratio": 2.0,
    "dropout": 0.0,
    # batch norm: at inference it uses running statistics, so predicting whole slices after
    # training on patches sees the same normalisation (instance norm would not: its statistics
    # change with the field of view, which cost ~0.4 liver Dice in our synthetic benchmark)
    "norm": "batch",
}

def full_config(config: Optional[dict] = None) -> dict:
    """Defaults updated with ``config`` (unknown keys are an error)."""
    cfg = dict(DEFAULT_CONFIG)
    for key, value in (config or {}).items():
        if key not in DEFAULT_CONFIG:
            raise CheckpointMismatchError(
                f"unknown hybrid-liver architecture option {key!r}; known: {sorted(DEFAULT_CONFIG)}"
            )
        cfg[key] = value
    return cfg


def sincos_2d(height: int, width: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """Fixed 2D sine-cosine positional embedding, shape ``(height * width, dim)``.

    Half of the channels encode the row, half the column (as in MAE / ViT-sincos), so the
    embedding exists for any feature-map size and is identical at training and inference.
    """
    if dim % 4:
        raise ValueError(f"embedding size must be a multiple of 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter))
    ys = torch.arange(height, device=device, dtype=torch.float32)
    xs = torch.arange(width, device=device, dtype=torch.float32)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    oy = gy.reshape(-1, 1) * omega[None, :]
    ox = gx.reshape(-1, 1) * omega[None, :]
    emb = torch.cat([oy.sin(), oy.cos(), ox.sin(), ox.cos()], dim=1)
    return emb.to(dtype) if dtype is not None else emb


class HybridLiverNet(nn.Module):
    """2.5D hybrid CNN-Transformer U-Net.

    Parameters
    ----------
    context : int
        Adjacent slices on each side; the input has ``2 * context + 1`` channels.
    out_channels : int
        Number of classes (logits).
    features : int
        Channels of the first level (then 2x per level).
    levels : int
        Number of resolution levels; inputs are padded to a multiple of ``2 ** (levels - 1)``.
    transformer_layers, heads, mlp_ratio, dropout
        Transformer on the deepest level (``features * 2 ** (levels - 1)`` channels).
    """

    def __init__(self, **config: Any) -> None:
        super().__init__()
        from monai.networks.blocks import TransformerBlock, UnetOutBlock, UnetResBlock, UnetrUpBlock

        cfg = full_config(config)
        self.config = cfg
        in_ch = 2 * int(cfg["context"]) + 1
        widths = [int(cfg["features"]) * 2 ** i for i in range(int(cfg["levels"]))]
        self.divisor = 2 ** (len(widths) - 1)
        norm = ("instance", {"affine": True}) if cfg["norm"] == "instance" else cfg["norm"]
        self.encoder = nn.ModuleList()
        prev = in_ch
        for i, w in enumerate(widths):
            self.encoder.append(UnetResBlock(2, prev, w, kernel_size=3, stride=1 if i == 0 else 2, norm_name=norm))
            prev = w
        hidden = widths[-1]
        heads = int(cfg["heads"])
        if hidden % heads or hidden % 4:
            raise CheckpointMismatchError(
                f"deepest width {hidden} must be divisible by heads={heads} and by 4"
            )
        self.transformer = nn.ModuleList(
            TransformerBlock(hidden, int(hidden * float(cfg["mlp_ratio"])), heads,
                             dropout_rate=float(cfg["dropout"]), qkv_bias=True)
            for _ in range(int(cfg["transformer_layers"]))
        )
        self.token_norm = nn.LayerNorm(hidden)
        self.decoder = nn.ModuleList()
        for i in range(len(widths) - 1, 0, -1):
            self.decoder.append(UnetrUpBlock(2, widths[i], widths[i - 1], kernel_size=3,
                                             upsample_kernel_size=2, norm_name=norm, res_block=True))
        self.head = UnetOutBlock(2, widths[0], int(cfg["out_channels"]))

    @property
    def in_channels(self) -> int:
        return 2 * int(self.config["context"]) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, out_channels, H, W)`` for input ``(B, 2 * context + 1, H, W)``.

        ``H`` and ``W`` need not be multiples of the down-sampling factor: the input is
        padded (replicate) and the output cropped back.
        """
        h, w = x.shape[-2:]
        ph = (-h) % self.divisor
        pw = (-w) % self.divisor
        if ph or pw:
            x = nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        b, c, fh, fw = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, fh * fw, C)
        tokens = tokens + sincos_2d(fh, fw, c, device=x.device, dtype=tokens.dtype)[None]
        for layer in self.transformer:
            tokens = layer(tokens)
        tokens = self.token_norm(tokens)
        x = x + tokens.transpose(1, 2).reshape(b, c, fh, fw)  # residual around the transformer
        for block, skip in zip(self.decoder, reversed(skips[:-1])):
            x = block(x, skip)
        out = self.head(x)
        return out[..., :h, :w]


def build_model(config: Optional[dict] = None) -> HybridLiverNet:
    """A new (randomly initialised) network for ``config``."""
    return HybridLiverNet(**(config or {}))


def count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))

