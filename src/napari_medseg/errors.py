"""Exception types raised by the napari-medseg core.

Every error a user can trigger derives from :class:`MedsegError`, carries a message
that says what was wrong and what to do, and is caught at the edges (CLI, widgets)
to become a message instead of a traceback.
"""

from __future__ import annotations


class MedsegError(Exception):
    """Base class of every error the core raises on purpose."""


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
