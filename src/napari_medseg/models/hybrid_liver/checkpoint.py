"""The checkpoint of the hybrid liver family: format, writing, checking and loading.

One file holds both stage networks of the cascade (:func:`make_checkpoint`), the
preprocessing they were trained with and the class names, so inference reads exactly what
training used. Training (:mod:`napari_medseg.training.liver`) writes it; inference
(:mod:`napari_medseg.inference.liver_cascade`) loads it with :func:`load_cascade`
(``weights_only=True``, strict state dicts). Torch is imported inside the functions that
need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from ...errors import CheckpointMismatchError, WeightsNotFoundError
from . import CLASSES
from .preprocessing import DEFAULT_PREPROCESSING

if TYPE_CHECKING:  # pragma: no cover
    from .network import HybridLiverNet

#: ``format`` value of a hybrid-liver checkpoint.
CHECKPOINT_FORMAT = "napari-medseg/hybrid-liver"
#: Current checkpoint version (bump when the layout changes).
CHECKPOINT_VERSION = 1
#: Label values of the cascade's output, background included (stored in the checkpoint).
LABELS = {0: "background", **CLASSES}
#: Checkpoint names looked for when a folder is given (install folder, `medseg train` output).
CHECKPOINT_NAMES = ("model.pth", "best.pt", "last.pt")


def checkpoint_file(path) -> Path:
    """The checkpoint file for ``path``: the file itself, or the first of
    :data:`CHECKPOINT_NAMES` inside a folder.

    Raises
    ------
    WeightsNotFoundError
        A folder without any of those files.
    """
    path = Path(path)
    if path.is_dir():
        for name in CHECKPOINT_NAMES:
            if (path / name).is_file():
                return path / name
        raise WeightsNotFoundError(
            f"no hybrid-liver checkpoint ({', '.join(CHECKPOINT_NAMES)}) in {path}; train one with "
            "`medseg train liver-lesion --data DIR --out DIR --install` or pass the .pt file"
        )
    return path


def make_checkpoint(stage1: "HybridLiverNet", stage2: "HybridLiverNet", *, preprocessing: Optional[dict] = None,
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
    import torch

    from ...io.atomic import atomic_write

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
    from ..safe_load import load_checkpoint

    ckpt = validate_checkpoint(load_checkpoint(path, map_location="cpu"), source=str(path))
    stage1, stage2 = models_from_checkpoint(ckpt, source=str(path))
    return stage1.to(device).eval(), stage2.to(device).eval(), ckpt


def models_from_checkpoint(ckpt: dict, source: str = "checkpoint") -> tuple:
    """Build both stage networks from a validated checkpoint dict (strict loading)."""
    from ..safe_load import load_state_dict_strict

    from .network import build_model

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
