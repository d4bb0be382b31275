"""The ``ray`` engine: Ray actors running the same per-case function as ``local``.

Each actor builds one :class:`~.runner.CaseRunner` (the model stays loaded in it). Actors
ask Ray for ``gpus_per_worker`` GPUs (one actor per GPU with 1) or one CPU each.
``address="auto"`` (or ``ray://...``, ``HOST:PORT``) joins an existing cluster; no
address starts a local one for the run. Inputs and OUTDIR must be on a file system every
node sees under the same paths (each actor reads its input and writes its label file and
record itself, as on one machine).

Dispatch: each actor holds one case at a time (so the case an actor died in is always
known); it gets its next case as soon as its previous one is back, before the driver
reports the finished row, and every result that is ready is collected in one pass. An
actor that dies in the middle of a case (its process killed, also by Ray's memory
monitor on a node short of memory, or its node lost) is replaced and the case retried on
the new actor up to ``retries`` times, then recorded as an ``error`` row. Ctrl-C kills
the actors and keeps what is finished.

Start-up: :class:`RayInstance` imports Ray and joins or starts it in a background thread,
so the driver's own work (locking OUTDIR, run.json, the resume check, loading the
results writer) runs while a local instance starts (several seconds, mostly waiting on
Ray's processes). The actors are created as soon as Ray is up. At the end the caller
writes its results while the same thread stops what the run started.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Callable, List, Optional

from ..errors import InvalidInputError
from .cases import Case
from .records import Settings
from .runner import KILL_HOOK, CaseRunner, error_row

__all__ = ["run_ray", "RayInstance", "ray_available", "worker_lost_errors", "WORKER_LOST"]


class _RayWorker:
    """The actor's body (wrapped by ``ray.remote`` at run time, so importing this module
    does not import Ray)."""

    def __init__(self, settings: dict, outdir: str, threads: Optional[int]) -> None:
        self.runner = CaseRunner(Settings.from_dict(settings), outdir, threads=threads)

    def run(self, case: Case, attempts: int) -> dict:
        return self.runner.run(case, attempts)


def ray_available() -> bool:
    """True when Ray can be imported (``pip install "napari-medseg[ray]"``)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _import_ray():
    try:
        import ray
    except ImportError:
        raise InvalidInputError(
            "--engine ray needs Ray: pip install \"napari-medseg[ray]\" (or pip install ray); "
            "--engine local (the default) needs nothing extra") from None
    return ray


#: Ray's errors for a case whose actor was lost (its process killed, by a signal or by
#: Ray's memory monitor when the node runs low on memory, or its node gone): the case is
#: retried on a new actor, then recorded as an error row.
WORKER_LOST = ("RayActorError", "WorkerCrashedError", "NodeDiedError", "OutOfMemoryError",
               "ObjectLostError")


def worker_lost_errors(ray) -> tuple:
    """The exception classes of :data:`WORKER_LOST` that this Ray version has."""
    return tuple(getattr(ray.exceptions, name) for name in WORKER_LOST
                 if hasattr(ray.exceptions, name))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _NotMainThread(logging.Filter):
    """Drops Ray's warning that ``ray.init`` outside the main thread sets no SIGTERM
    handler: the driver keeps Python's default (SIGTERM ends it) and the processes of
    a local instance die with it (Ray binds them to the starting thread's life)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


class RayInstance:
    """Ray, joined or started for one run by a background thread that owns it.

    Parameters
    ----------
    address : str, optional
        Cluster to join (``"auto"``, ``"HOST:PORT"``, ``"ray://HOST:10001"``); None
        starts a local instance (stopped by :meth:`stop`).
    num_cpus : int, optional
        CPUs of a local instance (default: this machine's cores).

    Notes
    -----
    The thread that calls ``ray.init`` lives until :meth:`stop`: Ray starts a local
    instance's processes (GCS, raylet, ...) with the kernel's parent-death signal, which
    fires when the *thread* that started them ends. Timings (seconds from the
    construction) are in :attr:`timings`: ``ray_import_s``, ``ray_init_s``,
    ``started_local_ray`` and, after :meth:`stop`, ``shutdown_s``.
    """

    def __init__(self, address: Optional[str] = None, num_cpus: Optional[int] = None) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.t0 = time.perf_counter()
        self.timings: dict = {}
        self.started_here = False
        self._ray = None
        self._error: Optional[BaseException] = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._own, name="medseg-ray", daemon=True)
        self._thread.start()

    def _mark(self, name: str) -> None:
        self.timings[name] = round(time.perf_counter() - self.t0, 3)

    def _own(self) -> None:
        ray = None
        try:
            ray = _import_ray()
            self._mark("ray_import_s")
            self.started_here = not ray.is_initialized()
            if self.started_here:
                # no dashboard and no forwarding of the workers' logs: neither is used
                # here, and both cost start-up time (the logs stay in Ray's session folder)
                kwargs = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
                quiet = _NotMainThread()
                logging.getLogger("ray._private.worker").addFilter(quiet)
                try:
                    if self.address:
                        ray.init(address=self.address, **kwargs)
                    else:
                        ray.init(num_cpus=self.num_cpus or os.cpu_count() or 1, **kwargs)
                finally:
                    logging.getLogger("ray._private.worker").removeFilter(quiet)
            self._mark("ray_init_s")
            self.timings["started_local_ray"] = bool(self.started_here and not self.address)
            self._ray = ray
        except BaseException as exc:  # noqa: BLE001 - handed to the driver by wait()
            self._error = exc
        finally:
            self._ready.set()
        self._stop.wait()
        t = time.perf_counter()
        if ray is not None and self.started_here:
            try:
                ray.shutdown()  # also after a failed init: it may have started processes
            except Exception:  # noqa: BLE001 - nothing more to stop
                pass
        self.timings["shutdown_s"] = round(time.perf_counter() - t, 3)

    def wait(self):
        """The ``ray`` module once Ray is up; raises what joining or starting it raised."""
        while not self._ready.wait(0.2):  # in short steps: Ctrl-C stays responsive
            pass
        if self._error is not None:
            raise self._error
        return self._ray

    def stop(self, wait: bool = True) -> None:
        """Stop what this instance started (a joined cluster keeps running; the driver
        disconnects); with ``wait``, return once Ray's processes are gone."""
        self._stop.set()
        if wait:
            while self._thread.is_alive():
                self._thread.join(0.2)


def run_ray(cases: List[Case], settings: Settings, outdir: str, *, workers: Optional[int],
            retries: int, on_row: Callable[[dict], None], address: Optional[str] = None,
            gpus_per_worker: float = 0.0, threads: Optional[int] = None,
            on_start: Optional[Callable[[dict], None]] = None,
            timings: Optional[dict] = None, instance: Optional[RayInstance] = None) -> None:
    """Run ``cases`` on Ray actors; ``on_row`` gets each row (as :func:`~.local.run_local`).

    Parameters
    ----------
    workers : int, optional
        Number of actors (default: what the cluster's free CPUs, or GPUs divided by
        ``gpus_per_worker``, allow; at most one per case).
    address : str, optional
        Cluster to join (``"auto"``, ``"HOST:PORT"``, ``"ray://HOST:10001"``); None
        starts a local Ray instance for this run and stops it afterwards.
    gpus_per_worker : float
        GPUs each actor reserves (0: CPU actors).
    threads : int, optional
        Torch threads per actor (default 1 for CPU actors, torch's default on GPUs).
    on_start : callable, optional
        Called with ``{"workers": N, "cluster": {...}}`` once the actors are placed.
    timings : dict, optional
        Filled with where the engine's time went (seconds from the start of Ray's
        start-up): ``ray_import_s``, ``ray_init_s`` (joining, or starting a local
        instance), ``actors_submitted_s``, ``first_row_s``, ``last_row_s``,
        ``shutdown_s`` (stopping what this run started; only when this call stops it).
    instance : RayInstance, optional
        Ray already being joined or started (by :func:`~.run.run_batch`, while it does
        its own work); the caller stops it. None: this call starts and stops one
        (``address``, ``workers``).
    """
    timings = {} if timings is None else timings
    own = instance is None
    if own:
        instance = RayInstance(address, workers)
    t0 = instance.t0

    def mark(name: str) -> None:
        timings[name] = round(time.perf_counter() - t0, 3)

    try:
        ray = instance.wait()
    except BaseException:
        if own:
            instance.stop()
        raise
    timings.update(instance.timings)
    actors: list = []
    try:
        resources = ray.available_resources()
        if gpus_per_worker:
            gpus = float(resources.get("GPU", 0.0))
            if gpus < gpus_per_worker:
                raise InvalidInputError(
                    f"--gpus-per-worker {gpus_per_worker:g}: the Ray cluster has {gpus:g} free "
                    "GPU(s); leave the option out for CPU workers")
            fit = int(gpus // gpus_per_worker)
        else:
            fit = max(1, int(float(resources.get("CPU", 1.0))))
        n = max(1, min(workers or fit, len(cases)))
        if threads is None and not gpus_per_worker:
            threads = 1
        options = {"num_cpus": 1, "num_gpus": float(gpus_per_worker or 0.0), "max_restarts": 0,
                   "max_task_retries": 0}
        if os.environ.get(KILL_HOOK):  # actors of a running cluster do not see our environment
            options["runtime_env"] = {"env_vars": {KILL_HOOK: os.environ[KILL_HOOK]}}
        actor_cls = ray.remote(_RayWorker).options(**options)

        def new_actor():
            return actor_cls.remote(settings.to_dict(), outdir, threads)

        actors = [new_actor() for _ in range(n)]
        mark("actors_submitted_s")
        if on_start is not None:
            on_start({"workers": n, "cluster": {k: v for k, v in resources.items()
                                                if k in ("CPU", "GPU", "memory")}})
        _dispatch(ray, actors, new_actor, cases, settings, retries, on_row, timings, t0)
    finally:
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        if own:
            instance.stop()
            timings["shutdown_s"] = instance.timings.get("shutdown_s", 0.0)


def _dispatch(ray, actors: list, new_actor, cases: List[Case], settings: Settings,
              retries: int, on_row: Callable[[dict], None], timings: dict, t0: float) -> None:
    """Hand ``cases`` to ``actors`` until every case has a row (see the module's notes)."""
    fingerprint = settings.fingerprint()
    died = worker_lost_errors(ray)
    queue = deque((c, 1) for c in cases)
    running: dict = {}  # ObjectRef -> (actor index, case, attempts); one per actor
    idle = list(range(len(actors)))
    rows: list = []  # received, not yet reported (reported even if Ctrl-C comes first)

    def fill() -> None:
        while idle and queue:
            i = idle.pop()
            case, k = queue.popleft()
            running[actors[i].run.remote(case, k)] = (i, case, k)

    try:
        while queue or running:
            fill()
            done, rest = ray.wait(list(running), num_returns=1, timeout=5.0)
            if done and rest:  # collect everything else that is ready in the same pass
                more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                done += more
            for ref in done:
                i, case, k = running.pop(ref)
                try:
                    rows.append(ray.get(ref))
                except died as exc:
                    # the actor died during this case: replace it, then retry or give up
                    try:
                        ray.kill(actors[i])
                    except Exception:  # noqa: BLE001 - already gone
                        pass
                    actors[i] = new_actor()
                    if k <= retries:
                        queue.appendleft((case, k + 1))
                    else:
                        rows.append(error_row(
                            case, settings, fingerprint,
                            f"the Ray worker died during this case ({_first_line(exc)}) {k} "
                            f"time(s); not retried further (--retries {retries})", attempts=k))
                except ray.exceptions.RayTaskError as exc:  # a bug outside the case's guard
                    rows.append(error_row(case, settings, fingerprint, f"worker error: {exc}",
                                          attempts=k))
                idle.append(i)
            fill()  # the actors get their next cases before the rows are reported
            while rows:
                timings.setdefault("first_row_s", round(time.perf_counter() - t0, 3))
                on_row(rows.pop(0))
    except BaseException:
        while rows:  # finished before the interrupt: their outputs are complete
            on_row(rows.pop(0))
        raise
    timings["last_row_s"] = round(time.perf_counter() - t0, 3)
