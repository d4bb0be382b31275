"""One job runner and one status line for every dock widget of the plugin.

:class:`JobRunner` runs a core function ``job(progress, cancel)`` in a napari worker
thread (:func:`napari.qt.threading.create_worker`), forwards the core's progress reports
to the main thread, cancels through a :class:`~napari_medseg.progress.CancelToken` and
hands the result (or the error) to callbacks on the main thread, the only place where a
widget touches layers. :class:`StatusLine` is the one place where a widget shows what
happened: plain text, "Error: ..." in the wording for widgets
(:func:`napari_medseg.errors.user_message` with ``"gui"``: fields and buttons, never
command-line flags), and :data:`CANCELLED`.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Optional

from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import QLabel

from ..errors import Cancelled, MedsegError, user_message
from ..progress import CancelToken

log = logging.getLogger(__name__)

#: What every widget says after a cancelled job.
CANCELLED = "Cancelled; nothing was changed."


class StatusLine(QLabel):
    """A widget's status and error display (a word-wrapped, selectable label).

    :meth:`error` shows ``"Error: <message>"`` with the message for widgets, logs the
    error (with its traceback when it is not a :class:`MedsegError`, i.e. a bug) and
    raises a napari notification, so that an error is seen even in a scrolled dock.
    """

    def __init__(self, text: str = "", parent=None) -> None:
        super().__init__(text, parent)
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextSelectableByMouse)
        #: the text of the last error shown ("" when the last message was not an error)
        self.last_error = ""

    def message(self, text: str) -> str:
        """Show ``text`` (not an error); returns it."""
        self.last_error = ""
        self.setText(text)
        return text

    def error(self, exc, *, notify: bool = True) -> str:
        """Show ``exc`` (an exception or a message) as an error; returns the message shown."""
        if isinstance(exc, BaseException):
            if isinstance(exc, MedsegError):
                log.info("%s", exc)
            else:
                log.error("unexpected error in a medseg widget", exc_info=exc)
            message = user_message(exc, "gui")
        else:
            message = str(exc)
            log.info("%s", message)
        self.setText(f"Error: {message}")
        self.last_error = message
        if notify:
            try:
                from napari.utils.notifications import show_error

                show_error(message)
            except Exception:  # pragma: no cover - notifications are best effort
                pass
        return message


class _Outcome:
    """What a job ended with: ``result`` or ``error`` (never raised in the worker thread)."""

    __slots__ = ("result", "error")

    def __init__(self, result=None, error: Optional[BaseException] = None) -> None:
        self.result, self.error = result, error


class JobRunner(QObject):
    """Runs one core job at a time in a worker thread, for one widget.

    Parameters
    ----------
    status : StatusLine
        Where progress text, errors and :data:`CANCELLED` are shown.
    progress_bar : QProgressBar, optional
        Set from the job's progress fractions (range 0..1000); a bar with range
        (0, 0) is a busy indicator shown only while a job runs.
    cancel_button : QAbstractButton, optional
        Enabled while a job runs; clicking it cancels.
    busy : iterable of QWidget
        Disabled while a job runs (Run buttons, pickers).

    Signals
    -------
    finished(str)
        After each job, on the main thread: ``"done"``, ``"cancelled"`` or ``"error"``.
    """

    finished = Signal(str)
    _progressed = Signal(float, str)

    def __init__(self, status: StatusLine, *, progress_bar=None, cancel_button=None,
                 busy: Iterable = (), parent=None) -> None:
        super().__init__(parent)
        self.status = status
        self.progress_bar = progress_bar
        self.cancel_button = cancel_button
        self.busy = list(busy)
        self.worker = None
        self.token: Optional[CancelToken] = None
        self._handlers: tuple = ()
        # queued: progress is reported from the worker thread, shown on the main thread
        self._progressed.connect(self._on_progress, Qt.QueuedConnection)
        if cancel_button is not None:
            cancel_button.setEnabled(False)
            cancel_button.clicked.connect(lambda *_: self.cancel())
        self._show_bar(False)

    @property
    def running(self) -> bool:
        """True while a job runs."""
        return self.worker is not None

    def start(self, job: Callable, *, done: Callable, text: str = "running…",
              failed: Optional[Callable] = None, cancelled: Optional[Callable] = None):
        """Run ``job(progress, cancel)`` in a worker thread.

        Parameters
        ----------
        job : callable
            ``job(progress, cancel) -> result``: a core function reporting through
            ``progress(fraction, text)`` and stopping when ``cancel.is_set()``. It must
            not touch layers (it runs in another thread).
        done : callable
            ``done(result)`` on the main thread; a :class:`MedsegError` it raises is shown.
            Not called when the job was cancelled meanwhile (the result is dropped).
        text : str
            Status text while the job starts ("" leaves the status line alone).
        failed, cancelled : callable, optional
            ``failed(exc)`` / ``cancelled()`` on the main thread, after the status line
            shows the error / :data:`CANCELLED`.

        Returns
        -------
        worker or None
            The napari worker (``None`` when a job is already running).
        """
        from napari.qt.threading import create_worker

        if self.running:
            return None
        token = CancelToken()
        emit = self._progressed.emit

        def progress(fraction: float, message: str = "") -> None:
            try:
                emit(float(fraction), str(message))
            except RuntimeError:  # the widget was closed: nobody listens, stop the job
                token.cancel()

        def work():
            try:
                return _Outcome(result=job(progress, token))
            except Exception as exc:  # noqa: BLE001 - handed to the main thread, shown there
                return _Outcome(error=exc)

        worker = create_worker(work, _start_thread=False, _ignore_errors=True)
        box: dict = {}
        worker.returned.connect(lambda outcome: box.setdefault("outcome", outcome))
        worker.errored.connect(lambda exc: box.setdefault("outcome", _Outcome(error=exc)))
        worker.finished.connect(lambda: self._on_finished(box.get("outcome")))
        self.worker, self.token = worker, token
        self._handlers = (done, failed, cancelled)
        self._set_running(True)
        if self.progress_bar is not None and self.progress_bar.maximum() > 0:
            self.progress_bar.setValue(0)
        if text:
            self.status.message(text)
        worker.start()
        return worker

    def cancel(self) -> None:
        """Ask the running job to stop at its next check; its result is dropped."""
        if self.token is not None and not self.token.is_set():
            self.token.cancel()
            self.status.message("Cancelling…")

    # ------------------------------------------------------------------ main thread
    def _on_progress(self, fraction: float, text: str) -> None:
        if self.worker is None:
            return
        if self.progress_bar is not None and self.progress_bar.maximum() > 0:
            self.progress_bar.setValue(int(round(1000 * fraction)))
        if text:
            self.status.message(text)

    def _on_finished(self, outcome: Optional[_Outcome]) -> None:
        token = self.token
        done, failed, cancelled = self._handlers
        self.worker, self.token, self._handlers = None, None, ()
        self._set_running(False)
        if outcome is None:
            outcome = _Outcome(error=MedsegError("the job ended without a result; see the log"))
        if isinstance(outcome.error, Cancelled) or (outcome.error is None and token is not None and token.is_set()):
            state = "cancelled"
            self.status.message(CANCELLED)
            self._reset_bar()
            if cancelled is not None:
                cancelled()
        elif outcome.error is not None:
            state = "error"
            self.status.error(outcome.error)
            self._reset_bar()
            if failed is not None:
                failed(outcome.error)
        else:
            state = "done"
            if self.progress_bar is not None and self.progress_bar.maximum() > 0:
                self.progress_bar.setValue(1000)
            try:
                done(outcome.result)
            except MedsegError as exc:
                state = "error"
                self.status.error(exc)
        self.finished.emit(state)

    def _set_running(self, running: bool) -> None:
        if self.cancel_button is not None:
            self.cancel_button.setEnabled(running)
        for widget in self.busy:
            widget.setEnabled(not running)
        self._show_bar(running)

    def _show_bar(self, running: bool) -> None:
        # a busy indicator (range 0..0) is shown only while something runs
        if self.progress_bar is not None and self.progress_bar.maximum() == 0:
            self.progress_bar.setVisible(running)

    def _reset_bar(self) -> None:
        if self.progress_bar is not None and self.progress_bar.maximum() > 0:
            self.progress_bar.setValue(0)
