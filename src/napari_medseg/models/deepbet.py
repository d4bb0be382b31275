"""deepbet brain extraction: where its networks are and whether they are intact.

deepbet (Fisch L. et al., MIT licence) ships two trained TorchScript networks inside its
PyPI wheel (``data/models/bbox_model.pt`` finds the head, ``data/models/model.pt``
segments the brain in that box). They are loaded only from the installed package: never
from a user path, a download or the weights cache, because a TorchScript archive is code.
Before loading, each file's sha256 is checked against the ``RECORD`` that pip wrote when
it installed the wheel, so a modified archive is refused by name.

Nothing here imports torch; the network run is
:func:`napari_medseg.inference.segment.segment` (model ``"deepbet"``).
"""

from __future__ import annotations

import base64
import hashlib
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
