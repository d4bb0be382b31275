"""Server state: interactive sessions and automatic jobs, each owned by one token.

Both stores key entries by a random id *and* the owner (a hash of the client's token):
an id presented with another token is "not found", exactly like an unknown id, so one
client can neither use nor detect another's sessions. Entries unused for longer than the
idle timeout are reaped by :meth:`SessionStore.reap` / :meth:`JobStore.reap` (the server
calls them periodically); a job still running is never reaped.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from ..errors import Cancelled, MedsegError
from ..progress import CancelToken


class NotFoundError(MedsegError, KeyError):
    """No session or job of that id for this client (the server answers 404)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class LimitError(MedsegError):
    """A server limit was reached (sessions, jobs): the server answers 429."""


def new_id() -> str:
    """An unguessable id (128 bits, URL-safe)."""
    return secrets.token_urlsafe(16)


@dataclass
class SessionEntry:
    """One interactive session on the server."""

    id: str
    owner: str
    backend: str
    session: Any  # a PromptSession
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_used: float = field(default_factory=time.monotonic)


class SessionStore:
    """Interactive sessions with a count limit and an idle timeout.

    Parameters
    ----------
    max_sessions : int
        Most sessions held at once (all clients together).
    idle_timeout_s : float
        A session unused this long is dropped by :meth:`reap`.
    """

    def __init__(self, max_sessions: int = 8, idle_timeout_s: float = 1800.0) -> None:
        self.max_sessions = int(max_sessions)
        self.idle_timeout_s = float(idle_timeout_s)
        self._entries: dict = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def reserve(self) -> None:
        """Refuse early (before an upload is decoded) when no session slot is free."""
        self.reap()
        with self._lock:
            if len(self._entries) >= self.max_sessions:
                raise LimitError(
                    f"the server holds its maximum of {self.max_sessions} sessions; close one "
                    "(DELETE /sessions/{id}) or wait for idle sessions to expire "
                    f"({self.idle_timeout_s:g} s)")

    def add(self, owner: str, backend: str, session: Any) -> SessionEntry:
        """Register a prepared session; raises :class:`LimitError` when full."""
        self.reap()
        with self._lock:
            if len(self._entries) >= self.max_sessions:
                raise LimitError(
                    f"the server holds its maximum of {self.max_sessions} sessions; close one "
                    "or wait for idle sessions to expire")
            entry = SessionEntry(new_id(), owner, backend, session)
            self._entries[entry.id] = entry
            return entry

    def get(self, owner: str, session_id: str) -> SessionEntry:
        """The caller's session ``session_id`` (its idle clock restarts)."""
        with self._lock:
            entry = self._entries.get(session_id)
            if entry is None or not secrets.compare_digest(entry.owner, owner):
                raise NotFoundError(
                    f"no session {session_id!r} for this token: it expired (idle timeout "
                    f"{self.idle_timeout_s:g} s), was deleted, or the server restarted; "
                    "upload the volume again")
            entry.last_used = time.monotonic()
            return entry

    def remove(self, owner: str, session_id: str) -> None:
        entry = self.get(owner, session_id)
        with self._lock:
            self._entries.pop(entry.id, None)

    def reap(self, now: Optional[float] = None) -> list:
        """Drop sessions idle for longer than the timeout; returns their ids."""
        now = time.monotonic() if now is None else now
        with self._lock:
            # a session busy with a request (its lock held) is in use, not idle
            old = [k for k, e in self._entries.items()
                   if now - e.last_used > self.idle_timeout_s and not e.lock.locked()]
            for k in old:
                del self._entries[k]
        return old


@dataclass
class Job:
    """One automatic segmentation on the server."""

    id: str
    owner: str
    model: str
    state: str = "queued"  # queued, running, done, failed, cancelled
    fraction: float = 0.0
    text: str = ""
    labels: Optional[np.ndarray] = None
    table: Optional[dict] = None
    notes: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    error: str = ""
    cancel: CancelToken = field(default_factory=CancelToken)
    last_used: float = field(default_factory=time.monotonic)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    def status(self) -> dict:
        """JSON-ready state (without the labels)."""
        return {"id": self.id, "model": self.model, "state": self.state,
                "progress": round(float(self.fraction), 4), "text": self.text,
                "error": self.error, "notes": list(self.notes), "timings": dict(self.timings)}


class JobStore:
    """Automatic-segmentation jobs run one at a time (one model in memory) in a worker thread.

    Parameters
    ----------
    run : callable
        ``run(volume, model, roi_subset, progress, cancel) -> (labels, table_dict, notes, timings)``.
    max_jobs : int
        Most jobs held (queued, running or with a result not fetched yet).
    idle_timeout_s : float
        Finished jobs unused this long are dropped by :meth:`reap`.
    """

    def __init__(self, run: Callable, max_jobs: int = 8, idle_timeout_s: float = 1800.0) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._run = run
        self.max_jobs = int(max_jobs)
        self.idle_timeout_s = float(idle_timeout_s)
        self._jobs: dict = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medseg-job")

    def submit(self, owner: str, volume: Any, model: str, roi_subset: Optional[list]) -> Job:
        self.reap()
        with self._lock:
            if len(self._jobs) >= self.max_jobs:
                raise LimitError(
                    f"the server holds its maximum of {self.max_jobs} jobs; fetch or delete "
                    "finished ones (DELETE /jobs/{id})")
            job = Job(new_id(), owner, model)
            self._jobs[job.id] = job
        self._pool.submit(self._work, job, volume, roi_subset)
        return job

    def _work(self, job: Job, volume: Any, roi_subset: Optional[list]) -> None:
        if job.cancel.is_set():
            job.state, job.text = "cancelled", "cancelled before it started"
            return
        job.state = "running"

        def progress(fraction: float, text: str = "") -> None:
            job.fraction, job.text = float(fraction), str(text)

        try:
            labels, table, notes, timings = self._run(volume, job.model, roi_subset, progress, job.cancel)
        except Cancelled:
            job.state, job.text = "cancelled", "cancelled by the user"
        except MedsegError as exc:
            job.state, job.error = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - reported to the client, the server stays up
            job.state, job.error = "failed", f"unexpected error ({type(exc).__name__}: {exc})"
        else:
            job.labels, job.table, job.notes, job.timings = labels, table, notes, timings
            job.fraction, job.state = 1.0, "done"
        finally:
            job.last_used = time.monotonic()

    def get(self, owner: str, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or not secrets.compare_digest(job.owner, owner):
                raise NotFoundError(
                    f"no job {job_id!r} for this token: it was deleted, expired (idle timeout "
                    f"{self.idle_timeout_s:g} s) or the server restarted; submit it again")
            job.last_used = time.monotonic()
            return job

    def cancel(self, owner: str, job_id: str) -> Job:
        """Ask a job to stop and forget it (a running job stops at its next check)."""
        job = self.get(owner, job_id)
        job.cancel.cancel()
        with self._lock:
            self._jobs.pop(job.id, None)
        if not job.finished:
            job.text = "cancelling"
        return job

    def reap(self, now: Optional[float] = None) -> list:
        now = time.monotonic() if now is None else now
        with self._lock:
            old = [k for k, j in self._jobs.items()
                   if j.finished and now - j.last_used > self.idle_timeout_s]
            for k in old:
                del self._jobs[k]
        return old

    def shutdown(self) -> None:
        with self._lock:
            for job in self._jobs.values():
                job.cancel.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
