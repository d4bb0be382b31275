"""Exception types raised by the napari-medseg core.

Every error a user can trigger derives from :class:`MedsegError`, carries a message
that says what was wrong and what to do, and is caught at the edges (CLI, widgets)
to become a message instead of a traceback.

What to do depends on where the user is: a command line takes ``--weights DIR``, a
widget has a *Weights* field and a *Download weights* button. An error therefore holds
the interface-neutral message (what is wrong) plus optional ``hints`` per interface
(``"cli"``, ``"gui"``); ``str(exc)`` is the message with the command-line hint (what
the CLI and the logs print) and :func:`user_message` picks the hint for a widget.
"""

from __future__ import annotations

from typing import Mapping, Optional

#: Interfaces an error hint can address.
INTERFACES = ("cli", "gui")


class MedsegError(Exception):
    """Base class of every error the core raises on purpose.

    Parameters
    ----------
    *args
        The message (first argument): what is wrong, in words that hold in every
        interface; with no ``hints`` it also says what to do.
    hints : mapping, optional
        What to do, per interface: ``{"cli": "pass --weights DIR.", "gui": "choose the
        folder under Weights."}``. A missing interface gets the message alone.
    """

    def __init__(self, *args, hints: Optional[Mapping[str, str]] = None) -> None:
        super().__init__(*args)
        unknown = set(hints or {}) - set(INTERFACES)
        if unknown:  # a typo would silently drop the hint
            raise ValueError(f"unknown interface(s) {sorted(unknown)} in hints; use {INTERFACES}")
        self.hints = dict(hints or {})

    @property
    def message(self) -> str:
        """The interface-neutral message (without any hint)."""
        return super().__str__()

    def message_for(self, interface: str) -> str:
        """The message followed by the hint for ``interface`` (``"cli"`` or ``"gui"``)."""
        hint = self.hints.get(interface)
        return f"{self.message} {hint}" if hint else self.message

    def __str__(self) -> str:
        return self.message_for("cli")


def user_message(exc: BaseException, interface: str = "gui") -> str:
    """The text to show a user for ``exc`` in ``interface`` (``"gui"`` or ``"cli"``).

    A :class:`MedsegError` gives its message with that interface's hint; anything else
    is a bug, named as such (type and text) with a pointer to the log.
    """
    if isinstance(exc, MedsegError):
        return exc.message_for(interface)
    return f"unexpected error ({type(exc).__name__}: {exc}); details in the log"


class InvalidInputError(MedsegError, ValueError):
    """Input data or arguments are unusable (wrong shape, NaN voxels, bad spacing, ...)."""


class ImageReadError(MedsegError, OSError):
    """A file or folder that should hold an image cannot be read."""


class UnsupportedFormatError(ImageReadError):
    """The path is not in a format this project reads or writes."""


class GeometryMismatchError(InvalidInputError):
    """Two volumes that must share a voxel grid do not (shape, spacing, origin or direction)."""


class WeightsNotFoundError(MedsegError, FileNotFoundError):
    """Model weights are not installed where they were looked for."""


class DownloadError(MedsegError, OSError):
    """A download failed, was refused (not https) or did not match its checksum."""


class UnsafeCheckpointError(MedsegError):
    """A checkpoint asks to run or import something outside the allow-list."""


class CheckpointMismatchError(MedsegError):
    """A checkpoint does not fit the architecture (missing/unexpected/mis-shaped keys)."""


class InsufficientMemoryError(MedsegError, MemoryError):
    """The estimated memory for a job exceeds what the machine can give."""


class Cancelled(MedsegError):
    """A long-running job was cancelled by the user. Nothing was modified."""
