"""The ``ray`` engine: Ray actors running the same per-case function as ``local``.

Each actor builds one :class:`~.runner.CaseRunner` (the model stays loaded in it) and is
given one case at a time. Actors ask Ray for ``gpus_per_worker`` GPUs (one actor per GPU
with 1) or one CPU each. ``address="auto"`` (or ``ray://...``, ``HOST:PORT``) joins an
existing cluster; no address starts a local one for the run. Inputs and OUTDIR must be
on a file system every node sees under the same paths (each actor reads its input and
writes its label file and record itself, as on one machine).

An actor that dies in the middle of a case (its process killed, its node lost) is
replaced and the case retried on the new actor, up to ``retries`` times, then recorded
as an ``error`` row. Ctrl-C kills the actors and keeps what is finished.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Callable, List, Optional

from ..errors import InvalidInputError
from .cases import Case
from .records import Settings
from .runner import KILL_HOOK, CaseRunner, error_row

__all__ = ["run_ray", "ray_available"]


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


def run_ray(cases: List[Case], settings: Settings, outdir: str, *, workers: Optional[int],
            retries: int, on_row: Callable[[dict], None], address: Optional[str] = None,
            gpus_per_worker: float = 0.0, threads: Optional[int] = None,
            on_start: Optional[Callable[[dict], None]] = None) -> None:
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
    """
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        kwargs = dict(include_dashboard=False, log_to_driver=False,
                      ignore_reinit_error=True)
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=workers or os.cpu_count() or 1, **kwargs)
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
        options = {"num_cpus": 1, "num_gpus": float(gpus_per_worker or 0.0), "max_restarts": 0}
        if os.environ.get(KILL_HOOK):  # actors of a running cluster do not see our environment
            options["runtime_env"] = {"env_vars": {KILL_HOOK: os.environ[KILL_HOOK]}}
        actor_cls = ray.remote(_RayWorker).options(**options)

        def new_actor():
            return actor_cls.remote(settings.to_dict(), outdir, threads)

        actors = [new_actor() for _ in range(n)]
        if on_start is not None:
            on_start({"workers": n, "cluster": {k: v for k, v in resources.items()
                                                if k in ("CPU", "GPU", "memory")}})
        fingerprint = settings.fingerprint()
        died = tuple(getattr(ray.exceptions, name) for name in
                     ("RayActorError", "WorkerCrashedError", "NodeDiedError")
                     if hasattr(ray.exceptions, name))
        queue = deque((c, 1) for c in cases)
        running: dict = {}  # ObjectRef -> (actor index, case, attempts)
        idle = list(range(n))
        while queue or running:
            while idle and queue:
                i = idle.pop()
                case, k = queue.popleft()
                running[actors[i].run.remote(case, k)] = (i, case, k)
            done, _ = ray.wait(list(running), num_returns=1, timeout=5.0)
            for ref in done:
                i, case, k = running.pop(ref)
                try:
                    row = ray.get(ref)
                except died as exc:
                    # the actor died during this case: replace it, then retry or give up
                    try:
                        ray.kill(actors[i])
                    except Exception:  # noqa: BLE001 - already gone
                        pass
                    actors[i] = new_actor()
                    idle.append(i)
                    if k <= retries:
                        queue.appendleft((case, k + 1))
                    else:
                        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                        on_row(error_row(case, settings, fingerprint,
                                         f"the Ray worker died during this case ({why}) {k} "
                                         f"time(s); not retried further (--retries {retries})",
                                         attempts=k))
                    continue
                except ray.exceptions.RayTaskError as exc:  # a bug outside the case's own guard
                    row = error_row(case, settings, fingerprint, f"worker error: {exc}", attempts=k)
                idle.append(i)
                on_row(row)
    finally:
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        if started_here:
            ray.shutdown()
