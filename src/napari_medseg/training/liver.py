"""Training loop of the hybrid liver / lesion cascade.

Both stages are trained in the same run: each epoch runs ``steps_per_epoch`` optimisation
steps for stage 1 (whole liver, coarse grid) and then for stage 2 (lesions in the liver box,
fine grid), with MONAI's ``DiceCELoss`` (soft Dice + cross-entropy), AdamW, cosine learning
rate decay and mixed precision on CUDA only. After each epoch both stages are validated on the
held-out cases (stage 1: liver Dice on the coarse grid; stage 2: lesion Dice inside the
ground-truth liver box, i.e. each stage on its own input) and ``last.pt`` / ``best.pt``
(highest mean of the two Dice values) are written atomically in the format
:func:`napari_medseg.models.hybrid_liver.checkpoint.load_cascade` reads.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import InvalidInputError
from ..progress import CancelLike, ProgressCallback, check_cancel, report
from . import data as tdata


@dataclass
class TrainConfig:
    """Options of ``medseg train liver-lesion`` (defaults: a small CPU-friendly model)."""

    epochs: int = 10
    steps_per_epoch: int = 50
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    features: int = 16
    transformer_layers: int = 2
    heads: int = 4
    context: int = 1
    patch_size: tuple = (96, 96)
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # CUDA only; ignored elsewhere
    threads: Optional[int] = None  # torch CPU threads (None: torch's default)
    preprocessing: dict = field(default_factory=dict)  # overrides of DEFAULT_PREPROCESSING

    def architecture(self) -> dict:
        return {"context": self.context, "features": self.features,
                "transformer_layers": self.transformer_layers, "heads": self.heads, "out_channels": 2}


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two binary masks (1.0 when both are empty)."""
    pred = np.asarray(pred, bool)
    truth = np.asarray(truth, bool)
    denom = pred.sum() + truth.sum()
    if denom == 0:
        return 1.0
    return float(2.0 * np.logical_and(pred, truth).sum() / denom)


class Trainer:
    """Holds both stage networks, optimisers and samplers; :meth:`train_step` is one update."""

    def __init__(self, train_cases, config: TrainConfig, preprocessing: dict, device) -> None:
        import torch
        from monai.losses import DiceCELoss

        from ..models.hybrid_liver.network import build_model

        self.config = config
        self.preprocessing = preprocessing
        self.device = device
        torch.manual_seed(config.seed)
        self.nets = {1: build_model(config.architecture()).to(device),
                     2: build_model(config.architecture()).to(device)}
        total = max(1, config.epochs * config.steps_per_epoch)
        self.optim = {}
        self.sched = {}
        for stage, net in self.nets.items():
            opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
            self.optim[stage] = opt
            self.sched[stage] = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=config.lr, total_steps=total, pct_start=0.1, anneal_strategy="cos")
        self.samplers = {
            1: tdata.PatchSampler(train_cases, 1, context=config.context, patch_size=config.patch_size,
                                  foreground_slice_fraction=0.7, pos_neg=(1, 1), seed=config.seed),
            2: tdata.PatchSampler(train_cases, 2, context=config.context, patch_size=config.patch_size,
                                  foreground_slice_fraction=0.7, pos_neg=(3, 1), seed=config.seed + 1),
        }
        self.loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=False,
                                  smooth_nr=1e-5, smooth_dr=1e-5)
        self.use_amp = bool(config.amp) and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)

    def train_step(self, stage: int, batch=None) -> float:
        """One optimisation step of ``stage`` on ``batch`` (default: a fresh sampled batch)."""
        import torch

        net = self.nets[stage]
        net.train()
        x, y = batch if batch is not None else self.samplers[stage].batch(self.config.batch_size)
        x, y = x.to(self.device), y.to(self.device)
        opt = self.optim[stage]
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp):
            loss = self.loss_fn(net(x), y)
        if not torch.isfinite(loss):
            raise InvalidInputError(
                f"training diverged (stage {stage} loss {loss.item()}); lower --lr or check the data"
            )
        self.scaler.scale(loss).backward()
        self.scaler.step(opt)
        self.scaler.update()
        if self.sched[stage].last_epoch + 1 < self.sched[stage].total_steps:
            self.sched[stage].step()
        return float(loss.item())

    def validate(self, cases) -> dict:
        """Liver Dice (stage 1, coarse grid) and lesion Dice (stage 2, inside the true liver).

        The lesion Dice is pooled over all validation voxels (one empty case does not count
        as a perfect 1.0 in the mean).
        """
        from ..inference.liver_cascade import predict_probability

        liver, inter, denom = [], 0.0, 0.0
        for case in cases:
            self.nets[1].eval()
            p1 = predict_probability(self.nets[1], case.stage1_image, device=self.device) >= 0.5
            liver.append(dice(p1, case.stage1_label))
            if case.stage2_image is not None:
                self.nets[2].eval()
                p2 = predict_probability(self.nets[2], case.stage2_image, device=self.device) >= 0.5
                if case.stage2_liver is not None:  # as at inference: lesions only inside the liver
                    p2 &= case.stage2_liver
                t2 = case.stage2_label.astype(bool)
                inter += float(np.logical_and(p2, t2).sum())
                denom += float(p2.sum() + t2.sum())
        lesion = 2 * inter / denom if denom else 1.0
        return {"liver_dice": float(np.mean(liver)) if liver else float("nan"), "lesion_dice": float(lesion)}

    def checkpoint(self, extra: dict) -> dict:
        from ..models.hybrid_liver.checkpoint import make_checkpoint

        return make_checkpoint(self.nets[1], self.nets[2], preprocessing=self.preprocessing, extra=extra)


def split_cases(pairs: list, val_fraction: float, seed: int) -> tuple:
    """Deterministic train/validation split (at least one of each when there are >= 2 cases)."""
    if len(pairs) < 2 or val_fraction <= 0:
        return list(pairs), []
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pairs))
    n_val = min(len(pairs) - 1, max(1, int(round(val_fraction * len(pairs)))))
    val = [pairs[i] for i in sorted(order[:n_val])]
    train = [pairs[i] for i in sorted(order[n_val:])]
    return train, val


def train_liver_lesion(data_dir, out_dir, config: Optional[TrainConfig] = None, *,
                       progress: Optional[ProgressCallback] = None,
                       log: Callable[[str], None] = print,
                       cancel: Optional[CancelLike] = None) -> dict:
    """Train the cascade on an MSD/LiTS-layout dataset; write ``best.pt`` and ``last.pt``.

    Parameters
    ----------
    data_dir : path
        Folder with ``imagesTr/`` and ``labelsTr/`` (labels 0 background, 1 liver, 2 lesion).
    out_dir : path
        Where checkpoints and ``history.json`` go (created).
    config : TrainConfig
    progress : callable, optional
        ``(fraction, text)``; the CLI passes a tqdm bar.
    log : callable
        Receives one line per epoch (loss, validation Dice).
    cancel : optional
        Stops between steps (raises :class:`~napari_medseg.errors.Cancelled`; the last
        completed epoch's checkpoint is kept).

    Returns
    -------
    dict
        ``best``, ``last`` (paths), ``history`` (per-epoch dicts), ``train_cases``, ``val_cases``.
    """
    import json

    import torch

    from ..inference.device import choose_device
    from ..io.atomic import atomic_write
    from ..models.hybrid_liver.checkpoint import save_checkpoint
    from ..models.hybrid_liver.preprocessing import DEFAULT_PREPROCESSING

    config = config or TrainConfig()
    if config.epochs < 1 or config.steps_per_epoch < 1 or config.batch_size < 1:
        raise InvalidInputError("epochs, steps per epoch and batch size must be at least 1")
    device = choose_device(config.device)
    if config.threads:
        # on a busy machine one thread per process avoids OpenMP spin-waiting (10x faster here)
        torch.set_num_threads(int(config.threads))
    preprocessing = dict(DEFAULT_PREPROCESSING)
    preprocessing.update(config.preprocessing or {})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    pairs = tdata.find_cases(data_dir)
    train_pairs, val_pairs = split_cases(pairs, config.val_fraction, config.seed)
    log(f"{len(pairs)} case(s): {len(train_pairs)} training, {len(val_pairs)} validation; device {device}")

    def load(pair_list, start, stop):
        cases = []
        for i, (img_path, lab_path) in enumerate(pair_list):
            check_cancel(cancel)
            image, labels = tdata.read_case(img_path, lab_path)
            cases.append(tdata.prepare_case(tdata._stem(Path(img_path)), image, labels, preprocessing))
            report(progress, start + (stop - start) * (i + 1) / max(1, len(pair_list)), "loading cases")
        return cases

    train_cases = load(train_pairs, 0.0, 0.04)
    val_cases = load(val_pairs, 0.04, 0.05)
    trainer = Trainer(train_cases, config, preprocessing, device)
    history = []
    best_score = -1.0
    best_path, last_path = out_dir / "best.pt", out_dir / "last.pt"
    total_steps = config.epochs * config.steps_per_epoch * 2
    done = 0
    t0 = time.time()
    for epoch in range(1, config.epochs + 1):
        losses = {1: [], 2: []}
        for stage in (1, 2):
            for _ in range(config.steps_per_epoch):
                check_cancel(cancel)
                losses[stage].append(trainer.train_step(stage))
                done += 1
                report(progress, 0.05 + 0.95 * done / total_steps,
                       f"epoch {epoch}/{config.epochs} stage {stage} loss {losses[stage][-1]:.3f}")
        entry = {"epoch": epoch, "stage1_loss": float(np.mean(losses[1])),
                 "stage2_loss": float(np.mean(losses[2])), "seconds": round(time.time() - t0, 1)}
        if val_cases:
            entry.update(trainer.validate(val_cases))
            score = 0.5 * (entry["liver_dice"] + entry["lesion_dice"])
        else:
            score = -entry["stage1_loss"] - entry["stage2_loss"]
        history.append(entry)
        extra = {"epoch": epoch, "config": _jsonable(asdict(config)), "history": history,
                 "train_cases": [c.name for c in train_cases], "val_cases": [c.name for c in val_cases]}
        save_checkpoint(trainer.checkpoint(extra), last_path)
        if score > best_score:
            best_score = score
            save_checkpoint(trainer.checkpoint(extra), best_path)
        msg = (f"epoch {epoch}/{config.epochs}: loss liver {entry['stage1_loss']:.4f} "
               f"lesion {entry['stage2_loss']:.4f}")
        if val_cases:
            msg += f" | val Dice liver {entry['liver_dice']:.3f} lesion {entry['lesion_dice']:.3f}"
        log(msg + f" ({entry['seconds']:.0f} s)")
    with atomic_write(out_dir / "history.json") as tmp:
        Path(tmp).write_text(json.dumps(history, indent=2) + "\n", encoding="utf-8")
    return {"best": best_path, "last": last_path, "history": history,
            "train_cases": [c.name for c in train_cases], "val_cases": [c.name for c in val_cases]}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
