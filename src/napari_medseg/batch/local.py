"""The ``local`` engine: a pool of worker processes on this machine.

Each worker is a fresh (spawned) process that builds one :class:`~.runner.CaseRunner`,
so the model is loaded once per worker and reused for its cases. The parent hands out
one case at a time per worker over a pipe and watches each worker's process: a worker
that dies in the middle of a case (SIGKILL, the kernel's out-of-memory killer) is
replaced by a new process and the case is retried there, up to ``retries`` times, then
recorded as an ``error`` row; the cases of the other workers are not disturbed (unlike
:class:`concurrent.futures.ProcessPoolExecutor`, whose whole pool breaks when one
worker dies, losing track of which case killed it).

Workers ignore SIGINT: Ctrl-C reaches the parent, which stops the workers and keeps
what is finished (every output already written is complete, :mod:`.runner`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections import deque
from multiprocessing.connection import wait
from typing import Callable, List, Optional

from .cases import Case
from .records import Settings
from .runner import CaseRunner, error_row

__all__ = ["run_local", "default_threads"]


def default_threads(workers: int) -> int:
    """Torch threads per worker: this machine's cores shared between the workers."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _worker_main(conn, settings: dict, outdir: str, threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C stops
    runner = CaseRunner(Settings.from_dict(settings), outdir, threads=threads)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        case, attempts = msg
        conn.send(runner.run(case, attempts))


class _Worker:
    def __init__(self, ctx, settings: Settings, outdir: str, threads: int) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, settings.to_dict(), outdir, threads),
                                daemon=True, name="medseg-batch-worker")
        self.proc.start()
        child.close()
        self.case: Optional[Case] = None

    def ask_to_stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass

    def stop(self, wait_s: float = 2.0) -> None:
        self.ask_to_stop()
        self.proc.join(wait_s)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


def _death(proc) -> str:
    code = proc.exitcode
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def run_local(cases: List[Case], settings: Settings, outdir: str, *, workers: int, retries: int,
              on_row: Callable[[dict], None], threads: Optional[int] = None,
              timings: Optional[dict] = None) -> None:
    """Run ``cases`` on a pool of ``workers`` processes; ``on_row`` gets each row.

    Parameters
    ----------
    cases : list of Case
        The cases to run (done ones already removed).
    settings : Settings
        With ``model_id`` filled.
    outdir : str
        Output folder.
    workers : int
        Worker processes (each holds its own copy of the model).
    retries : int
        How often a case whose worker died is tried again (on a new worker).
    on_row : callable
        Called in this process with each finished case's row, in completion order.
    threads : int, optional
        Torch threads per worker (default: cores / workers).
    timings : dict, optional
        Filled with where the engine's time went (seconds from the call):
        ``workers_started_s``, ``first_row_s``, ``last_row_s``, ``shutdown_s``.

    Raises
    ------
    KeyboardInterrupt
        After stopping every worker (finished cases were already passed to ``on_row``).
    """
    t0 = time.perf_counter()
    timings = {} if timings is None else timings
    ctx = mp.get_context("spawn")  # never fork a process that may hold torch threads
    fingerprint = settings.fingerprint()
    threads = threads or default_threads(workers)
    queue = deque((c, 1) for c in cases)
    pool: List[_Worker] = []
    rows: list = []
    try:
        pool = [_Worker(ctx, settings, outdir, threads) for _ in range(min(workers, len(cases)))]
        timings["workers_started_s"] = round(time.perf_counter() - t0, 3)
        attempts: dict = {}
        rows: list = []  # received, not yet reported (reported even if Ctrl-C comes first)

        def fill() -> None:
            for w in pool:
                if w.case is None and queue:
                    case, n = queue.popleft()
                    attempts[case.case_id] = n
                    w.case = case
                    w.conn.send((case, n))

        while queue or any(w.case is not None for w in pool):
            fill()
            busy = [w for w in pool if w.case is not None]
            ready = wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=5.0)
            for i, w in enumerate(list(pool)):
                if w.case is None or (w.conn not in ready and w.proc.sentinel not in ready):
                    continue
                row = None
                try:
                    if w.conn.poll():
                        row = w.conn.recv()
                except (EOFError, OSError):
                    row = None
                if row is not None:
                    w.case = None
                    rows.append(row)
                    continue
                if w.proc.is_alive():
                    continue
                # the worker died in the middle of this case
                case, n = w.case, attempts[w.case.case_id]
                why = _death(w.proc)
                w.kill()
                pool[i] = _Worker(ctx, settings, outdir, threads)
                if n <= retries:
                    queue.appendleft((case, n + 1))
                else:
                    rows.append(error_row(case, settings, fingerprint,
                                          f"the worker process died during this case ({why}) "
                                          f"{n} time(s); not retried further (--retries {retries})",
                                          attempts=n))
            if rows:
                fill()  # the workers get their next cases before the rows are reported
            while rows:
                timings.setdefault("first_row_s", round(time.perf_counter() - t0, 3))
                on_row(rows.pop(0))
        timings["last_row_s"] = round(time.perf_counter() - t0, 3)
    except BaseException:
        for w in pool:
            w.kill()
        while rows:  # finished before the interrupt: their outputs are complete
            on_row(rows.pop(0))
        raise
    t_stop = time.perf_counter()
    for w in pool:  # every worker winds down at once, then each is joined
        w.ask_to_stop()
    for w in pool:
        w.stop()
    timings["shutdown_s"] = round(time.perf_counter() - t_stop, 3)
