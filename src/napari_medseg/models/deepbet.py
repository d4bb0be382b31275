"""deepbet brain extraction: where its networks are and whether they are intact.

deepbet (Fisch L. et al., MIT licence) ships two trained TorchScript networks inside its
PyPI wheel (``data/models/bbox_model.pt`` finds the head, ``data/models/model.pt``
segments the brain in that box). They are loaded only from the installed package: never
from a user path, a download or the weights cache, because a TorchScript archive is code.
Before loading, each file's sha256 is checked against the ``RECORD`` that pip wrote when
it installed the wheel, so a modified archive is refused by name.

Loading the two networks costs seconds, so :func:`brain_extractor` keeps them loaded for
the life of the process, one copy per device (CPU, GPU): the second brain extraction in
the widget or a batch reuses them. The archives' hashes are checked when they are loaded;
later calls re-check them only when a file's size or modification time changed (then the
networks are loaded again, or refused). Only :func:`brain_extractor` imports torch (through
deepbet); the network run is :func:`napari_medseg.inference.segment.segment` (model
``"deepbet"``).
"""

from __future__ import annotations

import base64
import hashlib
import threading
from pathlib import Path

from ..errors import InvalidInputError

#: The label deepbet writes.
CLASSES = {1: "brain"}

#: The archives, relative to the installed distribution's root (site-packages).
ARCHIVES = ("data/models/bbox_model.pt", "data/models/model.pt")

INSTALL_HINT = ('deepbet is not installed: install the MRI extra (`pip install '
                '"napari-medseg[mri]"`, or `pip install deepbet`); its networks ship inside '
                'the package and need no download')


def _distribution():
    import importlib.metadata as md

    try:
        return md.distribution("deepbet")
    except md.PackageNotFoundError:
        raise InvalidInputError(INSTALL_HINT) from None


def available() -> bool:
    """True when the deepbet package is installed."""
    try:
        _distribution()
    except InvalidInputError:
        return False
    return True


def archive_paths(verify: bool = True) -> dict:
    """``{"bbox": Path, "model": Path}`` of the installed TorchScript archives.

    Parameters
    ----------
    verify : bool
        Check each file's sha256 against the installed wheel's ``RECORD``.

    Raises
    ------
    InvalidInputError
        deepbet is not installed, an archive is missing, or its hash differs from the
        one its wheel recorded (the message says to reinstall the package).
    """
    dist = _distribution()
    records = {str(f).replace("\\", "/"): f for f in (dist.files or [])}
    out = {}
    for key, rel in zip(("bbox", "model"), ARCHIVES):
        entry = records.get(rel)
        if entry is None:
            raise InvalidInputError(f"the installed deepbet package does not list {rel}; "
                                    "reinstall it (`pip install --force-reinstall deepbet`)")
        path = Path(dist.locate_file(entry))
        if not path.is_file():
            raise InvalidInputError(f"deepbet's network {path} is missing; reinstall the "
                                    "package (`pip install --force-reinstall deepbet`)")
        if verify and entry.hash is not None:
            digest = hashlib.new(entry.hash.mode)
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            got = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
            if got != entry.hash.value:
                raise InvalidInputError(
                    f"deepbet's network {path} does not match the hash its wheel recorded: it "
                    "was modified after installation; it is not loaded. Reinstall deepbet "
                    "(`pip install --force-reinstall deepbet`)")
        out[key] = path
    return out


def version() -> str:
    """The installed deepbet version."""
    return _distribution().version


# no_gpu -> (archive signature, BrainExtraction, lock held while it runs)
_EXTRACTORS: dict = {}
_EXTRACTORS_LOCK = threading.Lock()


def _signature(paths: dict) -> tuple:
    """Path, size and modification time of each archive (what says "the same files")."""
    out = []
    for key in sorted(paths):
        st = Path(paths[key]).stat()
        out.append((key, str(paths[key]), st.st_size, st.st_mtime_ns))
    return tuple(out)


def _load(paths: dict, no_gpu: bool):
    """deepbet's ``BrainExtraction`` with both TorchScript networks loaded (the costly step)."""
    from deepbet import BrainExtraction

    return BrainExtraction(no_gpu=no_gpu, model_path=str(paths["model"]),
                           bbox_model_path=str(paths["bbox"]))


def brain_extractor(no_gpu: bool = True) -> tuple:
    """deepbet's ``BrainExtraction``, its networks loaded once per process and device.

    Parameters
    ----------
    no_gpu : bool
        Load the networks on the CPU (True) or on deepbet's choice of GPU when one exists.

    Returns
    -------
    (BrainExtraction, threading.Lock)
        The extractor and the lock to hold while calling its ``run`` (it keeps the last
        run's bounding box on itself, so two runs must not overlap).

    Raises
    ------
    InvalidInputError
        deepbet is not installed, or an archive is missing or modified
        (:func:`archive_paths`).
    """
    located = archive_paths(verify=False)
    signature = _signature(located)
    key = bool(no_gpu)
    with _EXTRACTORS_LOCK:
        hit = _EXTRACTORS.get(key)
        if hit is not None and hit[0] == signature:
            return hit[1], hit[2]
        _EXTRACTORS.pop(key, None)  # changed files: never run the old networks beside new ones
        paths = archive_paths(verify=True)
        bet = _load(paths, key)
        _EXTRACTORS[key] = (_signature(paths), bet, threading.Lock())
        return bet, _EXTRACTORS[key][2]


def loaded() -> bool:
    """True when :func:`brain_extractor` holds loaded networks (for any device)."""
    return bool(_EXTRACTORS)


def release() -> None:
    """Drop the loaded networks (their memory is freed when no run still uses them)."""
    with _EXTRACTORS_LOCK:
        _EXTRACTORS.clear()
