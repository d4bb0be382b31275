"""The SAM-Med3D network, its builder and its checkpoint loader.

Checkpoint format (the released ``sam_med3d.pth`` / ``sam_med3d_turbo.pth``): a torch
pickle of a dict whose ``model_state_dict`` entry holds the weights (324 tensors,
100,509,616 parameters), next to training state such as ``epoch``, ``optimizer``,
``lr_scheduler`` and ``losses``. A bare state dict is accepted too. Loading goes through
:func:`napari_medseg.models.safe_load.load_checkpoint` (``weights_only``: no pickle
payload is ever executed) and a strict key/shape check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple, Union

import torch
from torch import nn

from .image_encoder import ImageEncoderViT3D
from .mask_decoder import MaskDecoder3D
from .prompt_encoder import PromptEncoder3D

#: edge of the cubic crop the network works on (voxels of 1.5 mm)
CROP_SIZE = 128
#: edge of the low-resolution logits grid (CROP_SIZE / 4)
LOW_RES_SIZE = 32
#: number of tensors / parameters of the released checkpoints
N_TENSORS = 324
N_PARAMS = 100_509_616


class SamMed3D(nn.Module):
    """SAM-Med3D: image encoder, prompt encoder and mask decoder.

    Typical use: ``emb = model.encode(crop)`` once per crop, then for every click
    ``logits, iou = model.decode(emb, coords, labels, previous_logits)``.
    """

    def __init__(self, image_encoder: ImageEncoderViT3D, prompt_encoder: PromptEncoder3D, mask_decoder: MaskDecoder3D) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        # Kept for fidelity with the reference module (not persistent, unused: the
        # crops are z-score normalised before the encoder).
        self.register_buffer("pixel_mean", torch.tensor([123.675]).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor([58.395]).view(-1, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @torch.no_grad()
    def encode(self, crop: torch.Tensor) -> torch.Tensor:
        """Image embedding ``B x 384 x 8^3`` of normalised crops ``B x 1 x 128^3``."""
        return self.image_encoder(crop)

    @torch.no_grad()
    def decode(
        self,
        image_embedding: torch.Tensor,
        coords: torch.Tensor,
        labels: torch.Tensor,
        mask_logits: Optional[torch.Tensor] = None,
        multimask_output: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Low-resolution logits ``B x 1 x 32^3`` and IoU estimate ``B x 1``.

        ``coords`` are crop voxel indices ``B x N x 3`` (crop tensor axis order),
        ``labels`` 1/0 ``B x N``; ``mask_logits`` the previous low-res logits (or
        None: zeros are used, as the reference recipe does at the first click).
        """
        if mask_logits is None:
            mask_logits = torch.zeros(
                (coords.shape[0], 1) + (LOW_RES_SIZE,) * 3, dtype=image_embedding.dtype, device=image_embedding.device
            )
        sparse, dense = self.prompt_encoder(points=(coords, labels), masks=mask_logits)
        return self.mask_decoder(
            image_embeddings=image_embedding,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )


def build_sam_med3d(
    *,
    embed_dim: int = 768,
    depth: int = 12,
    num_heads: int = 12,
    global_attn_indexes: Tuple[int, ...] = (2, 5, 8, 11),
    prompt_dim: int = 384,
) -> SamMed3D:
    """The SAM-Med3D (turbo) architecture with untrained weights (ViT-B, 128^3 crops).

    The defaults are the released model's; the keyword arguments only exist to build
    small variants of the same architecture for fast tests (the crop stays 128^3 and
    the low-resolution logits 32^3).
    """
    model = SamMed3D(
        image_encoder=ImageEncoderViT3D(
            img_size=CROP_SIZE,
            patch_size=16,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=4.0,
            out_chans=prompt_dim,
            window_size=14,
            global_attn_indexes=global_attn_indexes,
        ),
        prompt_encoder=PromptEncoder3D(
            embed_dim=prompt_dim,
            image_embedding_size=(CROP_SIZE // 16,) * 3,
            input_image_size=(CROP_SIZE,) * 3,
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder3D(
            transformer_dim=prompt_dim, num_multimask_outputs=3, iou_head_depth=3, iou_head_hidden_dim=256
        ),
    )
    return model.eval()


def extract_state_dict(checkpoint: object, source: str = "checkpoint") -> dict:
    """The model weights inside a loaded SAM-Med3D checkpoint.

    Accepts the published structure (``{"model_state_dict": {...}, "epoch": ...}``), a
    ``{"state_dict": ...}`` / ``{"model": ...}`` wrapper, or a bare state dict. Keys
    saved from a ``DataParallel`` model (``module.`` prefix) are unwrapped.
    """
    from ...errors import CheckpointMismatchError

    if not isinstance(checkpoint, dict):
        raise CheckpointMismatchError(
            f"{source} does not hold a SAM-Med3D checkpoint: expected a dict, got {type(checkpoint).__name__}"
        )
    state = checkpoint
    for key in ("model_state_dict", "state_dict", "model"):
        if key in checkpoint and isinstance(checkpoint[key], dict):
            state = checkpoint[key]
            break
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointMismatchError(
            f"{source} is not a SAM-Med3D checkpoint: no 'model_state_dict' of tensors "
            f"(top-level keys: {sorted(map(str, checkpoint))[:8]})"
        )
    if all(str(k).startswith("module.") for k in state):
        state = {str(k)[len("module.") :]: v for k, v in state.items()}
    return state


def sam_med3d_from_state_dict(
    state: dict, source: str = "checkpoint", device: Union[str, torch.device] = "cpu"
) -> SamMed3D:
    """Build SAM-Med3D around ``state`` (the weights), checking keys and shapes strictly.

    The network is built on the ``meta`` device and the checkpoint's tensors are assigned
    to it, so no time is spent initialising 100 M parameters that are overwritten anyway.

    Raises
    ------
    CheckpointMismatchError
        Missing, unexpected or mis-shaped keys (listed), with what to do.
    """
    from ..safe_load import assign_state_dict

    with torch.device("meta"):
        model = build_sam_med3d()
    assign_state_dict(
        model, state, what=f"SAM-Med3D checkpoint {source}", architecture="the SAM-Med3D architecture",
        advice=f"{source} is not a SAM-Med3D (turbo) checkpoint: expected the released "
               "sam_med3d_turbo.pth / sam_med3d.pth (324 tensors under 'model_state_dict'); "
               "re-download it with `medseg weights download sam-med3d-turbo`.")
    # the non-persistent buffers are not in the file: give them real values
    model.register_buffer("pixel_mean", torch.tensor([123.675]).view(-1, 1, 1), persistent=False)
    model.register_buffer("pixel_std", torch.tensor([58.395]).view(-1, 1, 1), persistent=False)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device=torch.device(device)).eval()


def load_sam_med3d(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> SamMed3D:
    """Build SAM-Med3D and load a released checkpoint strictly.

    Parameters
    ----------
    path
        ``sam_med3d_turbo.pth`` / ``sam_med3d.pth`` (dict with ``model_state_dict``)
        or a file holding a bare state dict.
    device
        Torch device for the model (float32).

    Raises
    ------
    CheckpointMismatchError
        The file's tensors do not match the architecture (missing, unexpected or
        mis-shaped keys are listed).
    UnsafeCheckpointError, ImageReadError
        From the safe loader: the file asks to run code or cannot be read.
    """
    from ..safe_load import read_checkpoint

    path = Path(path)
    checkpoint = read_checkpoint(path)
    state = extract_state_dict(checkpoint, source=str(path))
    return sam_med3d_from_state_dict(state, source=str(path), device=device)
