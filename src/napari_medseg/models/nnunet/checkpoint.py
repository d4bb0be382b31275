"""The contents of an nnU-Net fold checkpoint (``fold_N/checkpoint_final.pth``).

nnU-Net's trainer saves ``network_weights`` (the state dict), ``optimizer_state``,
``grad_scaler_state``, ``logging``, ``_best_ema``, ``current_epoch``,
``init_args`` (plans, configuration, fold, dataset_json, device),
``trainer_name`` and ``inference_allowed_mirroring_axes``. We read it with
:func:`napari_medseg.models.safe_load.load_checkpoint` (restricted unpickler) and
keep only what inference needs. ``trainer_name`` is recorded for information and
never imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ...errors import CheckpointMismatchError
from ..safe_load import load_checkpoint

__all__ = ["FoldCheckpoint", "read_fold_checkpoint"]

_PREFIXES = ("module.", "_orig_mod.")


@dataclass
class FoldCheckpoint:
    path: Path
    state_dict: dict
    trainer_name: Optional[str] = None
    configuration: Optional[str] = None
    mirror_axes: Optional[tuple] = None
    extras: dict = field(default_factory=dict)


def _strip_prefixes(sd: dict) -> dict:
    out = {}
    for key, value in sd.items():
        for prefix in _PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def read_fold_checkpoint(path: Path) -> FoldCheckpoint:
    """Load one fold's checkpoint safely and pull out the weights and inference settings."""
    ckpt = load_checkpoint(path, map_location="cpu")
    weights = ckpt.get("network_weights", ckpt.get("state_dict"))
    if weights is None:
        if ckpt and all(hasattr(v, "shape") for v in ckpt.values()):
            weights = ckpt  # a bare state dict
        else:
            raise CheckpointMismatchError(
                f"{path} has no 'network_weights' entry (keys: {sorted(ckpt)[:10]}); it is not an "
                "nnU-Net v2 checkpoint"
            )
    init_args = ckpt.get("init_args") or {}
    configuration = init_args.get("configuration") if isinstance(init_args, dict) else None
    axes = ckpt.get("inference_allowed_mirroring_axes")
    mirror_axes = tuple(int(a) for a in axes) if axes is not None else None
    return FoldCheckpoint(
        path=Path(path),
        state_dict=_strip_prefixes(dict(weights)),
        trainer_name=ckpt.get("trainer_name"),
        configuration=configuration,
        mirror_axes=mirror_axes,
        extras={k: ckpt[k] for k in ("current_epoch",) if k in ckpt},
    )
