"""A hybrid CNN-Transformer U-Net for the liver / liver-lesion cascade (2.5D).

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

The checkpoint format is documented in :data:`CHECKPOINT_FORMAT` and :func:`save_checkpoint`.
Torch and MONAI are imported when this module is imported; import it lazily.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from ..errors import CheckpointMismatchError

#: ``format`` value of a hybrid-liver checkpoint.
CHECKPOINT_FORMAT = "napari-medseg/hybrid-liver"
#: Current checkpoint version (bump when the layout changes).
CHECKPOINT_VERSION = 1

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

#: Default preprocessing (stored in the checkpoint; inference reads it from there).
DEFAULT_PREPROCESSING = {
    "hu_window": [-200.0, 300.0],  # clipped and scaled to [0, 1]
    "stage1_spacing_xyz": [2.5, 2.5, 2.5],  # coarse grid for the liver
    "stage2_spacing_xyz": [1.0, 1.0, 2.5],  # fine grid for lesions (inside the liver box)
    "stage2_margin_mm": 10.0,  # margin around the liver's bounding box
    "min_lesion_mm3": 20.0,  # lesion components smaller than this are dropped (specks)
    "orientation": "array axes, flipped to positive direction diagonal",
}

LABELS = {0: "background", 1: "liver", 2: "liver_lesion"}


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


def make_checkpoint(stage1: HybridLiverNet, stage2: HybridLiverNet, *, preprocessing: Optional[dict] = None,
                    extra: Optional[dict] = None) -> dict:
    """The checkpoint dict of a trained cascade (plain tensors and Python values only).

    Keys: ``format``, ``version``, ``config`` ({'stage1': kwargs, 'stage2': kwargs}),
    ``stage1_state_dict``, ``stage2_state_dict``, ``preprocessing`` (HU window, spacings,
    margin), ``labels`` ({0: background, 1: liver, 2: liver_lesion}) and optional ``training``
    (epochs, validation Dice, ...). Saved with :func:`torch.save`; loadable with
    ``torch.load(weights_only=True)``.
    """
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": {"stage1": dict(stage1.config), "stage2": dict(stage2.config)},
        "stage1_state_dict": {k: v.detach().cpu() for k, v in stage1.state_dict().items()},
        "stage2_state_dict": {k: v.detach().cpu() for k, v in stage2.state_dict().items()},
        "preprocessing": dict(preprocessing or DEFAULT_PREPROCESSING),
        "labels": {int(k): v for k, v in LABELS.items()},
    }
    if extra:
        ckpt["training"] = dict(extra)
    return ckpt


def save_checkpoint(ckpt: dict, path) -> Path:
    """Write ``ckpt`` with :func:`torch.save`, atomically (temp file + rename)."""
    from ..io.atomic import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        torch.save(ckpt, tmp)
    return path


def validate_checkpoint(ckpt: Any, source: str = "checkpoint") -> dict:
    """Check the keys of a hybrid-liver checkpoint dict; raise :class:`CheckpointMismatchError`."""
    if not isinstance(ckpt, dict):
        raise CheckpointMismatchError(f"{source} is not a hybrid-liver checkpoint (not a dict)")
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatchError(
            f"{source} is not a hybrid-liver checkpoint: format {ckpt.get('format')!r}, "
            f"expected {CHECKPOINT_FORMAT!r} (train one with `medseg train liver-lesion`)"
        )
    version = ckpt.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointMismatchError(
            f"{source} has hybrid-liver checkpoint version {version!r}; this napari-medseg reads "
            f"up to version {CHECKPOINT_VERSION} (upgrade napari-medseg)"
        )
    missing = [k for k in ("config", "stage1_state_dict", "stage2_state_dict", "preprocessing")
               if k not in ckpt]
    if missing:
        raise CheckpointMismatchError(f"{source} lacks {', '.join(missing)}")
    return ckpt


def load_cascade(path, *, device="cpu") -> tuple:
    """Load a hybrid-liver checkpoint file -> ``(stage1, stage2, checkpoint_dict)`` in eval mode.

    Uses :func:`napari_medseg.models.safe_load.load_checkpoint` (``weights_only=True``) and
    strict state-dict loading (a mismatch lists missing / unexpected / mis-shaped keys).
    """
    from .safe_load import load_checkpoint

    ckpt = validate_checkpoint(load_checkpoint(path, map_location="cpu"), source=str(path))
    stage1, stage2 = models_from_checkpoint(ckpt, source=str(path))
    return stage1.to(device).eval(), stage2.to(device).eval(), ckpt


def models_from_checkpoint(ckpt: dict, source: str = "checkpoint") -> tuple:
    """Build both stage networks from a validated checkpoint dict (strict loading)."""
    from .safe_load import load_state_dict_strict

    config = ckpt["config"]
    out = []
    for stage in ("stage1", "stage2"):
        cfg = config.get(stage, config) if isinstance(config, dict) else None
        if not isinstance(cfg, dict):
            raise CheckpointMismatchError(f"{source}: config for {stage} is missing or not a dict")
        cfg = dict(cfg)
        cfg.setdefault("norm", "instance")  # checkpoints written before 'norm' existed used instance norm
        net = build_model(cfg)
        load_state_dict_strict(net, ckpt[f"{stage}_state_dict"], what=f"hybrid-liver {stage} ({source})")
        out.append(net)
    return tuple(out)


def count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _receptive_note() -> str:  # pragma: no cover - documentation helper
    return f"down-sampling {2 ** (DEFAULT_CONFIG['levels'] - 1)}x; tokens per 96x96 patch: {math.ceil(96 / 8) ** 2}"
