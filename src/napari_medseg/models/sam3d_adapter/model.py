"""3DSAM-adapter: network, checkpoint loader and crop-level inference.

Checkpoint format (``{kits,pancreas,lits,colon}/best.pth.tar`` / ``last.pth.tar``): a
torch pickle of a dict with ``encoder_dict`` (image encoder, 300 tensors),
``feature_dict`` (a list of 4 prompt-encoder state dicts; inference uses index 3 on
the deepest feature map) and ``decoder_dict`` (the multi-level head, 10 tensors),
besides optimizer states and epoch numbers. Loaded with
:func:`napari_medseg.models.safe_load.load_checkpoint` (``weights_only``) and strict
key/shape checks of every part.

Crop-level recipe (``test.py`` of the reference): a 128^3 crop at 1 mm, intensities
clipped to the dataset's window and scaled to [0, 1], is upsampled 4x to 512^3; its
512 axial slices go through the encoder (as three identical channels); the prompt
encoder refines the deepest feature map with the clicked points; the head combines the
four levels with the crop resized to 64^3 and returns 2-class logits on the 128^3 grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import torch
import torch.nn.functional as F
from torch import nn

from .encoder import AdapterImageEncoder
from .head import MultiLevelHead
from .prompt_encoder import AdapterPromptEncoder

#: crop edge (voxels at 1 mm) of the published recipe
CROP_SIZE = 128
#: CT windows (HU) the four published models were trained with (ScaleIntensityRange to [0, 1])
INTENSITY_RANGES = {
    "kits": (-54.0, 247.0),
    "lits": (-48.0, 163.0),
    "pancreas": (-39.0, 204.0),
    "colon": (-57.0, 175.0),
}


@dataclass(frozen=True)
class AdapterConfig:
    """Architecture sizes; the defaults are the published model's."""

    img_size: int = 1024
    patch_size: int = 16
    patch_depth: int = 32
    embed_dim: int = 768
    num_heads: int = 12
    out_chans: int = 256
    window_size: int = 14
    cubic_window_size: int = 8
    num_slice: int = 16
    prompt_mlp_dim: int = 2048
    prompt_heads: int = 8
    pos_feats: int = 128
    head_channels: int = 128
    num_classes: int = 2
    crop_size: int = CROP_SIZE


class Sam3DAdapter(nn.Module):
    """Encoder, four prompt encoders (only the last is used) and the multi-level head."""

    def __init__(self, config: AdapterConfig = AdapterConfig()) -> None:
        super().__init__()
        c = config
        self.config = c
        self.image_encoder = AdapterImageEncoder(
            img_size=c.img_size, patch_size=c.patch_size, patch_depth=c.patch_depth, in_chans=3,
            embed_dim=c.embed_dim, depth=12, num_heads=c.num_heads, out_chans=c.out_chans,
            window_size=c.window_size, cubic_window_size=c.cubic_window_size,
            global_attn_indexes=(2, 5, 8, 11), num_slice=c.num_slice,
        )
        self.prompt_encoders = nn.ModuleList(
            AdapterPromptEncoder(c.out_chans, c.pos_feats, 2, c.prompt_heads, c.prompt_mlp_dim) for _ in range(4)
        )
        self.head = MultiLevelHead(c.out_chans, c.head_channels, c.num_classes)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def encode(self, crop: torch.Tensor, run_blocks=None) -> dict:
        """Prompt-independent work for one crop (D, H, W) scaled to [0, 1].

        Returns a cache: the four feature maps, the resized image and the part of the
        head's first convolution that does not depend on the prompt (that convolution
        is linear in its input channels, so it is split into a cached and a per-click
        part; this makes a click several times cheaper).

        ``run_blocks(module, tokens)``: runs the transformer blocks
        (``image_encoder.forward_tokens``, the expensive part), e.g. compiled for the
        CPU; default: ``module(tokens)``.
        """
        cfg = self.config
        n = crop.shape[0]
        enc = self.image_encoder
        up = F.interpolate(crop[None, None].float(), scale_factor=enc.slice_size / n, mode="trilinear")[0, 0]
        tokens = enc.embed_volume(up)
        feats = run_blocks(_ForwardTokens(enc), tokens) if run_blocks else enc.forward_tokens(tokens)
        del up
        mid = n // 2
        image = F.interpolate(crop.permute(1, 2, 0)[None, None].float(), scale_factor=mid / n, mode="trilinear")
        grid = feats[0].shape[-1]
        scale1 = mid / grid
        heads = (self.head.mlahead.head2, self.head.mlahead.head3, self.head.mlahead.head4)
        fixed = [F.interpolate(h(f), scale_factor=scale1, mode="trilinear", align_corners=True) for h, f in zip(heads, feats[:3])]
        hc = cfg.head_channels
        conv0 = self.head.cls[0]
        w = conv0.weight
        partial = F.conv3d(torch.cat(fixed, dim=1), w[:, : 3 * hc], padding=1) + F.conv3d(image, w[:, 4 * hc :], padding=1)
        return {"deepest": feats[3], "partial": partial, "scale1": scale1, "scale2": n / mid, "crop_size": n}

    @torch.no_grad()
    def decode(self, cache: dict, points_dwh: torch.Tensor, prompt_index: int = 3) -> torch.Tensor:
        """Foreground probability (D, H, W) on the crop grid for points (1, N, 3) given in
        crop voxels ordered (d, w, h) as in the reference."""
        n = cache["crop_size"]
        refined = self.prompt_encoders[prompt_index](cache["deepest"], points_dwh, [n, n, n])
        hc = self.config.head_channels
        h5 = F.interpolate(self.head.mlahead.head5(refined), scale_factor=cache["scale1"], mode="trilinear", align_corners=True)
        x = cache["partial"] + F.conv3d(h5, self.head.cls[0].weight[:, 3 * hc : 4 * hc], padding=1)
        for layer in list(self.head.cls)[1:]:
            x = layer(x)
        x = F.interpolate(x, scale_factor=cache["scale2"], mode="trilinear", align_corners=True)
        x = x.permute(0, 1, 4, 2, 3)  # (h, w, d) -> (d, h, w)
        return torch.softmax(x, dim=1)[0, 1]

    @torch.no_grad()
    def reference_forward(self, crop: torch.Tensor, points_dwh: torch.Tensor) -> torch.Tensor:
        """The reference's ``model_predict`` written plainly (no caching): for tests."""
        n = crop.shape[0]
        enc = self.image_encoder
        out = F.interpolate(crop[None, None].float(), scale_factor=enc.slice_size / n, mode="trilinear")
        slices = out[0].repeat(3, 1, 1, 1).transpose(0, 1)
        deepest, others = enc(slices)
        feats = others + [self.prompt_encoders[3](deepest, points_dwh.clone(), [n, n, n])]
        mid = n // 2
        image = F.interpolate(crop.permute(1, 2, 0)[None, None].float(), scale_factor=mid / n, mode="trilinear")
        x = self.head(feats, image, mid / feats[0].shape[-1], n / mid)
        return torch.softmax(x.permute(0, 1, 4, 2, 3), dim=1)[0, 1]


# ---------------------------------------------------------------------- loading
def _part(checkpoint: dict, key: str, source: str) -> Any:
    from ...errors import CheckpointMismatchError

    if key not in checkpoint:
        raise CheckpointMismatchError(
            f"{source} is not a 3DSAM-adapter checkpoint: no '{key}' entry (top-level keys: "
            f"{sorted(map(str, checkpoint))[:8]}); expected 'encoder_dict', 'feature_dict', 'decoder_dict'"
        )
    return checkpoint[key]


def adapter_from_checkpoint_dict(
    checkpoint: dict, source: str = "checkpoint", config: AdapterConfig = AdapterConfig(),
    device: Union[str, torch.device] = "cpu",
) -> Sam3DAdapter:
    """Build the network around a loaded checkpoint dict, strictly.

    Raises
    ------
    CheckpointMismatchError
        A part is missing, ``feature_dict`` is not a list of 4, or keys/shapes differ.
    """
    from ...errors import CheckpointMismatchError
    from ..safe_load import assign_state_dict

    enc = _part(checkpoint, "encoder_dict", source)
    feats = _part(checkpoint, "feature_dict", source)
    dec = _part(checkpoint, "decoder_dict", source)
    if not isinstance(feats, (list, tuple)) or len(feats) != 4:
        raise CheckpointMismatchError(
            f"{source}: 'feature_dict' should be a list of 4 prompt-encoder state dicts, got "
            f"{type(feats).__name__} of length {len(feats) if hasattr(feats, '__len__') else '?'}"
        )
    with torch.device("meta"):
        model = Sam3DAdapter(config)
    parts = [(model.image_encoder, enc, "encoder_dict")]
    parts += [(pe, sd, f"feature_dict[{i}]") for i, (pe, sd) in enumerate(zip(model.prompt_encoders, feats))]
    parts += [(model.head, dec, "decoder_dict")]
    for module, state, name in parts:
        if not isinstance(state, dict):
            raise CheckpointMismatchError(f"{source}: '{name}' is not a state dict")
        assign_state_dict(
            module, state, what=f"3DSAM-adapter {name} of {source}",
            architecture="the 3DSAM-adapter architecture",
            advice="This is not a published 3DSAM-adapter checkpoint (best.pth.tar / "
                   "last.pth.tar of the kits, lits, pancreas or colon models).")
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(torch.device(device)).eval()


def load_sam3d_adapter(path: Union[str, Path], device: Union[str, torch.device] = "cpu",
                       config: AdapterConfig = AdapterConfig()) -> Sam3DAdapter:
    """Load a published 3DSAM-adapter checkpoint (safe unpickling, strict)."""
    from ..safe_load import read_checkpoint

    path = Path(path)
    return adapter_from_checkpoint_dict(read_checkpoint(path), str(path), config, device)


def checkpoint_dict(model: Sam3DAdapter, epoch: int = 0) -> dict:
    """The published checkpoint structure for ``model`` (used to write test files)."""
    return {
        "encoder_dict": model.image_encoder.state_dict(),
        "feature_dict": [pe.state_dict() for pe in model.prompt_encoders],
        "decoder_dict": model.head.state_dict(),
        "encoder_opt": {"state": {}, "param_groups": []},
        "feature_opt": [{"state": {}, "param_groups": []} for _ in range(4)],
        "decoder_opt": {"state": {}, "param_groups": []},
        "epoch": epoch,
        "best_val_loss": 0.5,
    }


class _ForwardTokens(nn.Module):
    """The encoder's transformer blocks as a module of one input (tokens), so a runtime
    can convert them on their own."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, tokens: torch.Tensor):
        return self.encoder.forward_tokens(tokens)
