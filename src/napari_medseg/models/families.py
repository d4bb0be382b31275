"""Model families: one object per kind of model, registered in one place.

A :class:`~napari_medseg.models.registry.ModelCard` says *which* model (its files, classes,
licence); its family says *how that kind of model is handled*: what a complete weights
folder holds, which path a user may point at, what :func:`~.weights.resolve_weights`
returns, what to tell a user whose weights are missing, what ``medseg weights import``
copies, and what the automatic-segmentation engine may do with it (weights, device, HU
input). The weights manager (:mod:`.weights`), the registry and
:mod:`napari_medseg.inference.segment` ask the family instead of comparing ``card.kind``
strings; adding a kind of model is one subclass and one line in :data:`FAMILIES`.

Families:

- ``hu-tissue``: weights-free HU thresholds (:class:`HuTissueFamily`);
- ``totalseg``: TotalSegmentator nnU-Net v2 tasks, one or several ``DatasetNNN_*`` folders
  (:class:`TotalSegFamily`);
- ``nnunet``: any nnU-Net v2 trained-model folder (:class:`NnUNetFamily`);
- ``hybrid-liver``: the locally trained liver cascade, a folder (:class:`HybridLiverFamily`);
- ``deepbet``: T1w brain extraction whose networks ship in the deepbet package
  (:class:`DeepBetFamily`);
- ``sam-med3d``, ``3dsam-adapter``: one checkpoint file (:class:`CheckpointFamily`);
- ``nninteractive``: a folder of several published files (:class:`NnInteractiveFamily`).

Nothing here imports torch or touches the network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ..errors import InvalidInputError
from .nnunet.folder import folder_problem

if TYPE_CHECKING:  # pragma: no cover
    from .registry import ModelCard, RemoteFile


def totalseg_weights_dir() -> Path:
    """Where TotalSegmentator keeps its nnU-Net weights (same rules as TotalSegmentator)."""
    env = os.environ.get("TOTALSEG_WEIGHTS_PATH")
    if env:
        return Path(env).expanduser()
    home = os.environ.get("TOTALSEG_HOME_DIR")
    base = Path(home).expanduser() if home else Path.home() / ".totalsegmentator"
    return base / "nnunet" / "results"


def _download_size_text(card: "ModelCard") -> str:
    size = sum(f.size_mb or 0 for f in card.remote_files)
    return f", about {size:.0f} MB" if size else ""


class ModelFamily:
    """How one kind of model is installed, found and run (the defaults: a checkpoint file).

    Attributes
    ----------
    kind : str
        The ``ModelCard.kind`` this family handles.
    needs_weights : bool
        False for weights-free models.
    automatic : bool
        :func:`napari_medseg.inference.segment.segment` can run it (else: promptable or
        liver-only).
    cpu_only : str
        Non-empty for models that never use a GPU: why, for the message refusing ``--device``.
    hu_input : bool
        The model reads Hounsfield units (its input is checked with ``check_ct_values``).
    no_download_source : str
        What ``medseg weights list`` says where the model has no download address.
    no_weights_reason : str
        Why ``--weights`` is refused, for a weights-free family.
    no_probabilities : str
        Non-empty for automatic models without class probabilities (no confidence map): why.
    """

    kind: str = ""
    needs_weights: bool = True
    no_weights_reason: str = "it has no weights to load"
    automatic: bool = False
    cpu_only: str = ""
    hu_input: bool = False
    no_download_source: str = "manual download"
    no_probabilities: str = ""

    # ------------------------------------------------------------------ layout
    def extra_roots(self, card: "ModelCard") -> list:
        """Folders searched after the cache (e.g. TotalSegmentator's own)."""
        return []

    def missing_in_root(self, card: "ModelCard", root: Path) -> list:
        """What ``root`` lacks for ``card`` (empty list: complete)."""
        if card.checkpoint and not (Path(root) / card.checkpoint).is_file():
            return [f"{Path(root) / card.checkpoint} is missing"]
        return []

    def result_path(self, card: "ModelCard", root: Path) -> Path:
        """What :func:`~.weights.resolve_weights` returns for a complete ``root``."""
        return Path(root)

    def locate(self, card: "ModelCard", path: Path) -> Optional[tuple]:
        """``(root, missing)`` for a user-given existing ``path`` this family recognises
        beyond the install root itself (None: treat ``path`` as the install root)."""
        return None

    def explicit_root(self, card: "ModelCard", path: Path) -> tuple:
        """Interpret a user-given path; return ``(root, missing)``."""
        path = Path(path).expanduser()
        if not path.exists():
            return path, [f"{path} does not exist"]
        found = self.locate(card, path)
        if found is not None:
            return found
        return path, self.missing_in_root(card, path)

    def content_paths(self, card: "ModelCard", found: Path) -> list:
        """The files/folders whose size is the installed size."""
        return [Path(found)]

    def artefact_present(self, card: "ModelCard", root: Path, remote: "RemoteFile") -> bool:
        """True when a download of ``remote`` into ``root`` can be skipped."""
        return (Path(root) / remote.target).exists()

    def import_items(self, card: "ModelCard", src_root: Path, root: Path) -> list:
        """``(source, destination)`` pairs ``medseg weights import`` places from a folder."""
        return [(src_root / p.name, root / p.name) for p in src_root.iterdir()
                if not p.name.startswith(".")]

    def expected_layout(self, card: "ModelCard") -> str:
        """Appended to a refused import: what the folder should have held."""
        if card.checkpoint:
            return f". Expected the checkpoint file {Path(card.checkpoint).name} or a folder holding it"
        return ""

    # ------------------------------------------------------------------ messages
    def gui_hint(self, card: "ModelCard", where: Path) -> str:
        """What to do about missing weights, in the widgets' words (``where``: install root)."""
        if card.downloadable:
            return (f"Click Download weights (needs internet{_download_size_text(card)}), or "
                    "choose the folder that holds them under Weights.")
        return (f"Download it by hand ({card.notes}), then choose it under Weights, or put it at "
                f"{where / (card.checkpoint or '')}.")

    def cli_hint(self, card: "ModelCard", where: Path) -> str:
        """What to do about missing weights, in the command line's words."""
        if card.downloadable:
            return (f"Run `medseg weights download {card.name}` (needs "
                    f"internet{_download_size_text(card)}){self.cli_extra_hint(card, where)}, "
                    f"or pass the folder with --weights DIR.")
        return (f"Download it by hand (see `medseg weights list`: {card.notes}) and run "
                f"`medseg weights import {card.name} PATH`, or put it at "
                f"{where / (card.checkpoint or '')}.")

    def cli_extra_hint(self, card: "ModelCard", where: Path) -> str:
        """Text added after the download command (other ways to install)."""
        return ""


class HuTissueFamily(ModelFamily):
    """Weights-free CT tissue model (thresholds and morphology on Hounsfield units)."""

    kind = "hu-tissue"
    needs_weights = False
    automatic = True
    cpu_only = "NumPy/SciPy, no network"
    hu_input = True
    no_weights_reason = "it thresholds Hounsfield units"
    no_probabilities = "it thresholds HU values and has no class probabilities"


class NnUNetFamily(ModelFamily):
    """Any nnU-Net v2 trained-model folder."""

    kind = "nnunet"
    automatic = True


class TotalSegFamily(NnUNetFamily):
    """TotalSegmentator tasks: one ``DatasetNNN_*`` folder per part model."""

    kind = "totalseg"

    def dataset_folders(self, card: "ModelCard") -> list:
        """Dataset folder names the card needs (one per part)."""
        if card.parts:
            return [p.folder for p in card.parts]
        return [f.target for f in card.files if f.archive]

    def dataset_missing(self, dataset_dir: Path, card: "ModelCard") -> Optional[str]:
        """Why ``dataset_dir`` is not a usable nnU-Net dataset folder for ``card`` (None if it is)."""
        return folder_problem(Path(dataset_dir) / card.model_folder_name, card.folds)

    def extra_roots(self, card: "ModelCard") -> list:
        return [totalseg_weights_dir()]

    def missing_in_root(self, card: "ModelCard", root: Path) -> list:
        missing = []
        for folder in self.dataset_folders(card):
            why = self.dataset_missing(Path(root) / folder, card)
            if why:
                missing.append(why)
        return missing

    def locate(self, card: "ModelCard", path: Path) -> Optional[tuple]:
        # a single-dataset card also accepts the dataset folder or the trained-model folder
        if len(self.dataset_folders(card)) == 1:
            if path.name == card.model_folder_name:
                path = path.parent
            if (path / card.model_folder_name).is_dir():
                why = self.dataset_missing(path, card)
                return path.parent, ([why] if why else [])
        return None

    def content_paths(self, card: "ModelCard", found: Path) -> list:
        return [Path(found) / f for f in self.dataset_folders(card)]

    def artefact_present(self, card: "ModelCard", root: Path, remote: "RemoteFile") -> bool:
        if remote.archive:
            return self.dataset_missing(Path(root) / remote.target, card) is None
        return super().artefact_present(card, root, remote)

    def import_items(self, card: "ModelCard", src_root: Path, root: Path) -> list:
        return [(src_root / f, root / f) for f in self.dataset_folders(card)]

    def expected_layout(self, card: "ModelCard") -> str:
        return (f". Expected a folder containing {', '.join(self.dataset_folders(card))}, each "
                f"with {card.model_folder_name}/(dataset.json, plans.json, "
                "fold_N/checkpoint_final.pth)")

    def cli_extra_hint(self, card: "ModelCard", where: Path) -> str:
        return (f", or put the folder(s) {', '.join(self.dataset_folders(card))} into {where} "
                "(TotalSegmentator users: set TOTALSEG_WEIGHTS_PATH to your weights folder)")


class DeepBetFamily(ModelFamily):
    """deepbet brain extraction: TorchScript networks inside the installed ``deepbet`` package.

    No download and no weights folder: the networks are part of the package (the ``[mri]``
    extra) and are loaded only from there (:mod:`.deepbet`).
    """

    kind = "deepbet"
    needs_weights = False
    automatic = True
    no_weights_reason = "its networks ship inside the installed deepbet package"
    no_probabilities = "it returns a brain mask without its probabilities"
    no_download_source = "inside the deepbet package (pip install \"napari-medseg[mri]\")"

    def missing_in_root(self, card: "ModelCard", root: Path) -> list:
        from .deepbet import INSTALL_HINT, available

        return [] if available() else [INSTALL_HINT]


class HybridLiverFamily(ModelFamily):
    """The liver cascade trained with ``medseg train liver-lesion``: a folder of checkpoints."""

    kind = "hybrid-liver"
    no_download_source = "trained locally"

    def missing_in_root(self, card: "ModelCard", root: Path) -> list:
        root = Path(root)
        if not root.is_dir() or not any(p for p in root.iterdir() if not p.name.startswith(".")):
            return [f"{root} is missing or empty"]
        return []

    def gui_hint(self, card: "ModelCard", where: Path) -> str:
        # the Liver & lesions widget's own control is its Checkpoint field
        return ("Train it (`medseg train liver-lesion` in a terminal), then choose the checkpoint "
                "(.pt) under Checkpoint.")

    def cli_hint(self, card: "ModelCard", where: Path) -> str:
        return ("Train it with `medseg train liver-lesion`, or import a trained folder with "
                f"`medseg weights import {card.name} PATH`.")


class CheckpointFamily(ModelFamily):
    """Promptable backends whose weights are one checkpoint file (SAM-Med3D, 3DSAM-adapter)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def result_path(self, card: "ModelCard", root: Path) -> Path:
        return Path(root) / card.checkpoint

    def locate(self, card: "ModelCard", path: Path) -> Optional[tuple]:
        if path.is_file():
            return path, []
        # a folder holding the checkpoint (either at its relative place or by file name)
        for candidate in (path / card.checkpoint, path / Path(card.checkpoint).name):
            if candidate.is_file():
                return candidate, []
        return None


class NnInteractiveFamily(ModelFamily):
    """nnInteractive: a folder of the published files (plans, dataset, checkpoint)."""

    kind = "nninteractive"

    def missing_in_root(self, card: "ModelCard", root: Path) -> list:
        return [f"{Path(root) / f.target} is missing" for f in card.files
                if not (Path(root) / f.target).is_file()]


#: Every family, by ``ModelCard.kind``.
FAMILIES: dict = {
    family.kind: family
    for family in (
        HuTissueFamily(),
        TotalSegFamily(),
        NnUNetFamily(),
        HybridLiverFamily(),
        DeepBetFamily(),
        CheckpointFamily("sam-med3d"),
        CheckpointFamily("3dsam-adapter"),
        NnInteractiveFamily(),
    )
}


def family_of(card_or_kind) -> ModelFamily:
    """The family of a card (or of a kind string).

    Raises
    ------
    InvalidInputError
        A kind no family handles.
    """
    kind = card_or_kind if isinstance(card_or_kind, str) else card_or_kind.kind
    try:
        return FAMILIES[kind]
    except KeyError:
        raise InvalidInputError(
            f"unknown model family {kind!r}; known: {', '.join(FAMILIES)}") from None
