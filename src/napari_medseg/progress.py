"""Progress reporting and cooperative cancellation for long-running core jobs.

Core functions take ``progress`` (a callable ``(fraction, text) -> None``) and
``cancel`` (anything with ``is_set()``, e.g. :class:`threading.Event` or
:class:`CancelToken`). They call :func:`check_cancel` between units of work and raise
:class:`~napari_medseg.errors.Cancelled`, having modified nothing the caller owns.
Widgets pass callbacks that forward to a napari worker; the CLI passes a tqdm bar.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional, Protocol, TypeVar

from .errors import Cancelled

ProgressCallback = Callable[[float, str], None]
T = TypeVar("T")


class CancelLike(Protocol):
    def is_set(self) -> bool: ...


class CancelToken:
    """A thread-safe cancellation flag (a thin, named wrapper over :class:`threading.Event`)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the running job to stop at its next check."""
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def reset(self) -> None:
        self._event.clear()


def check_cancel(cancel: Optional[CancelLike]) -> None:
    """Raise :class:`Cancelled` if ``cancel`` has been set."""
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled by the user; nothing was changed")


def report(progress: Optional[ProgressCallback], fraction: float, text: str = "") -> None:
    """Call ``progress`` if given, clamping the fraction to [0, 1]."""
    if progress is not None:
        progress(min(1.0, max(0.0, float(fraction))), text)


def sub_progress(
    progress: Optional[ProgressCallback], start: float, stop: float, prefix: str = ""
) -> Optional[ProgressCallback]:
    """Map a sub-task's 0..1 progress into the ``[start, stop]`` part of ``progress``.

    Useful when a job has stages (preprocess, predict, export) that each report
    their own fraction.
    """
    if progress is None:
        return None

    def _inner(fraction: float, text: str = "") -> None:
        label = f"{prefix}{text}" if prefix and text else (prefix or text)
        report(progress, start + (stop - start) * min(1.0, max(0.0, fraction)), label)

    return _inner


def iterate_progress(job: Callable[[ProgressCallback], "T"], name: str = "medseg-job"):
    """Run ``job(progress)`` in a helper thread and yield its ``(fraction, text)`` reports.

    A generator adapter for code that reports through a callback, so that a napari
    generator worker (which can only pass on what it yields) shows the core's progress.
    Returns (``StopIteration.value``) what ``job`` returned and re-raises what it raised.
    Cancel through the ``cancel`` token the job was given: the job stops at its next
    check, so the helper thread never outlives the generator.
    """
    import queue

    reports: "queue.Queue" = queue.Queue()
    box: dict = {}

    def progress(fraction: float, text: str = "") -> None:
        reports.put((float(fraction), str(text)))

    def target() -> None:
        try:
            box["result"] = job(progress)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc
        finally:
            reports.put(None)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    while True:
        item = reports.get()
        if item is None:
            break
        yield item
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]
