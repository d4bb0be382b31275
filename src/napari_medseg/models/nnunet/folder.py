"""The layout of an nnU-Net v2 trained-model folder, in one place.

A dataset folder ``DatasetXXX_Name/`` holds trained-model folders named
``{trainer}__{plans}__{configuration}``; each holds ``dataset.json``, ``plans.json`` and
``fold_N/checkpoint_final.pth`` (or ``fold_all``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Union

from ...errors import WeightsNotFoundError

__all__ = ["find_model_folder", "available_folds", "configuration_from_name", "is_model_folder",
           "trained_model_folder", "folder_problem", "CHECKPOINT", "DEFAULT_MODEL_FOLDER"]

#: checkpoint file inside each ``fold_N`` folder
CHECKPOINT = "checkpoint_final.pth"
#: the trained model nnU-Net trains by default, preferred when a dataset holds several
DEFAULT_MODEL_FOLDER = "nnUNetTrainer__nnUNetPlans__3d_fullres"

_FOLDER_RE = re.compile(r"^(?P<trainer>[^_].*?)__(?P<plans>.+?)__(?P<configuration>[^_].*)$")


def find_model_folder(dataset_dir: Union[str, Path], trainer: str = "nnUNetTrainer",
                      plans: str = "nnUNetPlans", configuration: str = "3d_fullres") -> Path:
    """Resolve ``{trainer}__{plans}__{configuration}`` inside an nnU-Net dataset folder.

    ``dataset_dir`` may also be the trained-model folder itself (it holds
    ``plans.json``), which is returned unchanged.

    Raises
    ------
    WeightsNotFoundError
        Naming the folder looked for and the trained models that do exist.
    """
    dataset_dir = Path(dataset_dir)
    if (dataset_dir / "plans.json").is_file() and (dataset_dir / "dataset.json").is_file():
        return dataset_dir
    if not dataset_dir.is_dir():
        raise WeightsNotFoundError(f"nnU-Net dataset folder not found: {dataset_dir}")
    wanted = dataset_dir / f"{trainer}__{plans}__{configuration}"
    if wanted.is_dir():
        return wanted
    present = sorted(p.name for p in dataset_dir.iterdir() if p.is_dir() and _FOLDER_RE.match(p.name))
    hint = f"; it holds {', '.join(present)}" if present else "; it holds no trained-model folders"
    raise WeightsNotFoundError(
        f"no trained model '{wanted.name}' in {dataset_dir}{hint}. Pass the matching trainer, "
        "plans and configuration, or the trained-model folder itself."
    )


def available_folds(folder: Path, checkpoint: str = CHECKPOINT) -> list:
    """Folds with a checkpoint, as nnU-Net auto-detects them (numbers; ``"all"`` only if alone)."""
    numeric, has_all = [], False
    for sub in Path(folder).glob("fold_*"):
        if not (sub / checkpoint).is_file():
            continue
        tag = sub.name[len("fold_"):]
        if tag == "all":
            has_all = True
        elif tag.isdigit():
            numeric.append(int(tag))
    folds: list = sorted(numeric)
    if not folds and has_all:
        folds = ["all"]
    return folds


def configuration_from_name(folder: Union[str, Path]) -> Optional[str]:
    """The configuration named by a ``{trainer}__{plans}__{configuration}`` folder, else None."""
    match = _FOLDER_RE.match(Path(folder).name)
    return match.group("configuration") if match else None


def _holds_plans(path: Path) -> bool:
    return (path / "plans.json").is_file()


def is_model_folder(path: Union[str, Path]) -> bool:
    """Whether ``path`` is a trained-model folder or a dataset folder holding one."""
    path = Path(path)
    return path.is_dir() and (_holds_plans(path) or any(path.glob("*__*__*/plans.json")))


def trained_model_folder(path: Union[str, Path]) -> Path:
    """The trained-model folder inside ``path`` (``path`` itself if it holds plans.json).

    A dataset folder with one trained model gives that one; with several,
    :data:`DEFAULT_MODEL_FOLDER` when present.

    Raises
    ------
    InvalidInputError
        When several trained models are present and none is the default (names them).
    """
    from ...errors import InvalidInputError

    path = Path(path)
    if _holds_plans(path):
        return path
    candidates = sorted(p.parent for p in path.glob("*__*__*/plans.json"))
    if len(candidates) == 1:
        return candidates[0]
    preferred = [c for c in candidates if c.name == DEFAULT_MODEL_FOLDER]
    if preferred:
        return preferred[0]
    raise InvalidInputError(
        f"{path} holds several trained models ({', '.join(c.name for c in candidates)}); "
        "pass the one to use")


def folder_problem(folder: Union[str, Path], folds=None, checkpoint: str = CHECKPOINT) -> Optional[str]:
    """Why ``folder`` is not a usable trained-model folder (None when it is).

    Parameters
    ----------
    folder : str or Path
        ``{trainer}__{plans}__{configuration}`` folder.
    folds : sequence, optional
        Folds that must have a checkpoint (default: at least one fold).
    checkpoint : str
        File name inside each ``fold_N`` folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        parent = folder.parent
        have = sorted(p.name for p in parent.glob("*__*__*") if p.is_dir()) if parent.is_dir() else []
        extra = f" (it has: {', '.join(have)})" if have else ""
        return f"{folder} is missing{extra}"
    for required in ("dataset.json", "plans.json"):
        if not (folder / required).is_file():
            return f"{folder / required} is missing"
    if folds is None:
        if not available_folds(folder, checkpoint):
            return f"no fold_*/{checkpoint} in {folder}"
        return None
    for fold in folds:
        ckpt = folder / f"fold_{fold}" / checkpoint
        if not ckpt.is_file():
            return f"{ckpt} is missing"
    return None
