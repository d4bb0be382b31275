"""``run_batch``: a cohort -> label files, done-records, results table and run.json.

The order of work: find the cases (:mod:`.cases`), refuse a bad command line before
anything runs (model options, output extension, an OUTDIR that holds or lies inside an
input, a second run writing the same OUTDIR), skip the cases whose done-records match
(:mod:`.records`, by size and modification time: seconds for a finished cohort), run
the rest on an engine (:mod:`.local` or :mod:`.ray_engine`), and write ``results.csv``
/ ``results.parquet`` and ``run.json``. Ctrl-C stops the engine and still writes the
table of what finished; rerunning the same command resumes.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from ..errors import InvalidInputError
from ..io.atomic import atomic_write_text
from ..io.formats import WRITABLE_LABELS
from .cases import Case, discover_cases
from .records import Settings, model_identity
from .runner import precheck_done

__all__ = ["BatchSummary", "run_batch", "ENGINES"]

ENGINES = ("local", "ray")
_LOCK = ".medseg-batch.lock"


@dataclass
class BatchSummary:
    """What :func:`run_batch` did.

    Attributes
    ----------
    rows : list of dict
        One row per case, in case order (cases not reached before an interrupt have none).
    cases : int
        Cases found.
    seconds : float
        Wall time of the run.
    interrupted : bool
        Ctrl-C stopped it (rerun the same command to resume).
    workers : int
        Workers (processes or actors) used.
    notes : list of str
        Inputs found but not taken.
    files : list of Path
        The results files written.
    timings : dict
        Where the engine's time went (seconds from the engine's start: workers or
        actors started, first and last row, shutdown; with Ray also importing and
        joining or starting it); also in ``run.json`` as ``engine_timings``.
    """

    rows: list = field(default_factory=list)
    cases: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    workers: int = 0
    notes: list = field(default_factory=list)
    files: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    def count(self, status: str) -> int:
        """Number of rows with ``status`` (``ok``, ``error``, ``skipped``)."""
        return sum(1 for r in self.rows if r.get("status") == status)

    @property
    def failed(self) -> list:
        """The ``error`` rows."""
        return [r for r in self.rows if r.get("status") == "error"]


def _versions(engine: str) -> dict:
    from importlib import metadata

    from .. import __version__

    out = {"napari-medseg": __version__, "python": platform.python_version(),
           "platform": platform.platform()}
    for dist in ("numpy", "SimpleITK", "torch", "monai", "pandas", "pyarrow") + (("ray",) if engine == "ray" else ()):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


@contextlib.contextmanager
def _outdir_lock(outdir: Path):
    """One run per OUTDIR at a time (two would overwrite each other's table)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here
        yield
        return
    fh = open(outdir / _LOCK, "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InvalidInputError(
                f"another medseg batch is writing {outdir} now; wait for it to finish or "
                "choose another -o OUTDIR") from None
        yield
    finally:
        fh.close()


def _clean_staging(outdir: Path) -> None:
    """Remove temporary folders of writes that a killed worker left (never a finished file)."""
    for sub in ("labels", "records", "."):
        folder = outdir / sub
        if folder.is_dir():
            for p in folder.glob(".medseg-tmp-*"):
                shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def _ray_started(address: Optional[str], workers: Optional[int]):
    """A :class:`~.ray_engine.RayInstance` starting now; stopped (waited for) on the way out."""
    from .ray_engine import RayInstance

    instance = RayInstance(address, workers)
    try:
        yield instance
    finally:
        instance.stop()


def check_batch_options(source, outdir, cases: Sequence[Case], *, model: str, weights, device: str,
                        roi_subset, ext: str, engine: str) -> tuple:
    """Refuse a bad command line before any case runs; returns the canonical roi names."""
    from ..inference.segment import check_segment_options
    from ..io.paths import check_outputs

    if engine not in ENGINES:
        raise InvalidInputError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if ext not in WRITABLE_LABELS:
        raise InvalidInputError(f"output extension {ext!r} is not one the label writer makes; "
                                f"use one of {', '.join(WRITABLE_LABELS)}")
    out = Path(os.path.expanduser(str(outdir)))
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"-o {out} is a file; OUTDIR must be a folder (it gets labels/, "
                                "records/, results.csv, results.parquet and run.json)")
    inputs = [c.path for c in cases if not c.problem]
    src = Path(os.path.expanduser(str(source)))
    if src.is_dir():
        inputs.append(str(src))
    check_outputs([out, out / "labels", out / "results.csv"], inputs, what="-o OUTDIR")
    _, _, roi = check_segment_options(model, weights=weights, device=device, roi_subset=roi_subset)
    return tuple(roi) if roi else None


def _check_confidence(model, confidence: bool, temperature, thresholds) -> Optional[dict]:
    """Refuse confidence options that cannot apply; returns the thresholds as a dict."""
    from dataclasses import asdict

    from ..analysis.calibration import confidence_unavailable
    from ..analysis.confidence import ReviewThresholds

    if not confidence:
        if temperature is not None or thresholds is not None:
            raise InvalidInputError("--temperature and --review-threshold apply to --confidence; "
                                    "add --confidence or leave them out")
        return None
    why = confidence_unavailable(model)
    if why:
        raise InvalidInputError(f"--confidence: {why}; use a network model (an nnU-Net folder or "
                                "a TotalSegmentator model) or leave out --confidence")
    if temperature is not None:
        import math

        if not (math.isfinite(float(temperature)) and float(temperature) > 0):
            raise InvalidInputError(f"--temperature must be a positive number, got {temperature}")
    if thresholds is None:
        return None
    if isinstance(thresholds, dict):
        try:
            thresholds = ReviewThresholds(**thresholds)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"--review-threshold: {exc}") from None
    return asdict(thresholds)


def run_batch(source, outdir, *, model: str = "hu-tissue", weights: Optional[str] = None,
              device: str = "auto", roi_subset: Optional[Sequence[str]] = None,
              channel: Optional[int] = None, ext: str = ".nii.gz", stats: bool = False,
              runtime: str = "auto",
              confidence: bool = False, temperature: Optional[float] = None,
              review_thresholds=None, engine: str = "local", workers: Optional[int] = None, retries: int = 2,
              address: Optional[str] = None, gpus_per_worker: float = 0.0,
              resume: bool = True, threads: Optional[int] = None,
              on_start: Optional[Callable[[dict], None]] = None,
              on_row: Optional[Callable[[dict], None]] = None,
              argv: Optional[List[str]] = None) -> BatchSummary:
    """Segment a cohort; write ``OUTDIR/labels/``, ``records/``, ``results.*`` and ``run.json``.

    Parameters
    ----------
    source : path-like or str
        Cohort folder, glob pattern or CSV manifest (:func:`~.cases.discover_cases`).
    outdir : path-like
        Output folder (created).
    model, weights, device, roi_subset, channel
        As for :func:`~napari_medseg.inference.segment.segment` / ``medseg segment``.
    runtime : {"auto", "openvino", "torch"}
        What runs the network on a CPU in each worker (``medseg segment --runtime``).
    ext : str
        Label file extension (one of ``WRITABLE_LABELS``).
    stats : bool
        Per-structure volume (mL) and mean/std intensity in the rows.
    confidence : bool
        Per-structure confidence figures and review flags in the rows
        (:func:`~.runner.confidence_of`); network models only.
    temperature : float, optional
        Softmax temperature of the confidence (default: the model's; ``medseg calibrate``).
    review_thresholds : ReviewThresholds or dict, optional
        When a structure is flagged (default: the documented defaults).
    engine : {"local", "ray"}
        Process pool on this machine, or Ray actors.
    workers : int, optional
        Workers (default: the CPU cores here, or what the Ray cluster offers).
    retries : int
        Retries of a case whose worker died during it.
    address, gpus_per_worker
        Ray only: the cluster to join (None: start a local one), GPUs per actor.
    resume : bool
        Skip cases whose done-record matches (False: rerun every case).
    threads : int, optional
        Torch threads per worker.
    on_start : callable, optional
        ``on_start({"cases": N, "to_run": M, "skipped": K, "workers": W})`` before work.
    on_row : callable, optional
        Called with each row as its case finishes (skipped ones first).
    argv : list of str, optional
        The command line, recorded in run.json.

    Returns
    -------
    BatchSummary

    Raises
    ------
    InvalidInputError
        No cases, duplicate ids, a malformed manifest, options the model does not use,
        an OUTDIR holding inputs, another run on the same OUTDIR. Nothing has run.
    WeightsNotFoundError
        The model's weights are missing (nothing has run).
    """
    t0 = time.perf_counter()
    cases, notes = discover_cases(source)
    roi = check_batch_options(source, outdir, cases, model=model, weights=weights, device=device,
                              roi_subset=roi_subset, ext=ext, engine=engine)
    if retries < 0:
        raise InvalidInputError(f"--retries must be 0 or more, got {retries}")
    if workers is not None and workers < 1:
        raise InvalidInputError(f"--workers must be 1 or more, got {workers}")
    review = _check_confidence(model, confidence, temperature, review_thresholds)
    if gpus_per_worker and engine != "ray":
        raise InvalidInputError("--gpus-per-worker applies to --engine ray; the local engine "
                                "runs on this machine's device (--device)")
    from ..inference.runtimes import check_runtime

    settings = Settings(model=str(model), weights=None if weights is None else str(weights),
                        device=device, roi_subset=roi, channel=channel, ext=ext, stats=stats,
                        runtime=check_runtime(runtime),
                        confidence=bool(confidence),
                        temperature=None if temperature is None else float(temperature),
                        review_thresholds=review, model_id=model_identity(str(model), weights))
    fingerprint = settings.fingerprint()
    out = Path(os.path.expanduser(str(outdir))).absolute()
    out.mkdir(parents=True, exist_ok=True)
    summary = BatchSummary(cases=len(cases), notes=notes)
    order = {c.case_id: i for i, c in enumerate(cases)}
    rows: dict = {}

    def emit(row: dict) -> None:
        rows[row["case_id"]] = row
        if on_row is not None:
            on_row(row)

    ray_instance = None
    with _outdir_lock(out), contextlib.ExitStack() as stack:
        if engine == "ray" and (not resume or not (out / "records").is_dir()):
            # nothing can be skipped: start Ray now, while this driver does its own work
            ray_instance = stack.enter_context(_ray_started(address, workers))
        _clean_staging(out)
        started = time.strftime("%Y-%m-%dT%H:%M:%S")
        run_doc = {"command": argv, "source": str(source), "outdir": str(out), "engine": engine,
                   "settings": settings.to_dict(), "fingerprint": fingerprint, "retries": retries,
                   "resume": resume, "address": address, "gpus_per_worker": gpus_per_worker,
                   "versions": _versions(engine), "started": started, "cases": len(cases)}
        atomic_write_text(out / "run.json", json.dumps(run_doc, indent=2, default=str) + "\n")
        todo, skipped = [], []
        for case in cases:
            row = precheck_done(str(out), case, fingerprint, stats) if resume else None
            (skipped.append(row) if row is not None else todo.append(case))
        if not resume:
            # a rerun that ignores the records must not be fooled by them either
            for case in todo:
                rec = out / "records" / f"{case.case_id}.json"
                if rec.exists():
                    rec.unlink()
        if engine == "ray" and todo and ray_instance is None:
            ray_instance = stack.enter_context(_ray_started(address, workers))
        if ray_instance is not None:
            from .results import preload_writers

            preload_writers()  # while Ray starts, not after the last case
        if engine == "local":
            n_workers = max(1, min(workers or os.cpu_count() or 1, len(todo))) if todo else 0
        else:
            n_workers = workers or 0
        summary.workers = n_workers
        if on_start is not None:
            on_start({"cases": len(cases), "to_run": len(todo), "skipped": len(skipped),
                      "workers": n_workers, "engine": engine})
        for row in skipped:
            emit(row)
        try:
            if todo and engine == "local":
                from .local import run_local

                run_local(todo, settings, str(out), workers=n_workers, retries=retries,
                          on_row=emit, threads=threads, timings=summary.timings)
            elif todo:
                from .ray_engine import run_ray

                def placed(info: dict) -> None:
                    summary.workers = info["workers"]

                run_ray(todo, settings, str(out), workers=workers, retries=retries, on_row=emit,
                        address=address, gpus_per_worker=gpus_per_worker, threads=threads,
                        on_start=placed, timings=summary.timings, instance=ray_instance)
        except KeyboardInterrupt:
            summary.interrupted = True
        if ray_instance is not None:
            ray_instance.stop(wait=False)  # Ray stops while the tables are written
        summary.rows = sorted(rows.values(), key=lambda r: order.get(r["case_id"], len(order)))
        from .results import write_results

        summary.files = write_results(out, summary.rows)
        if ray_instance is not None:
            ray_instance.stop()  # no process of the run outlives it
            summary.timings["shutdown_s"] = ray_instance.timings.get("shutdown_s", 0.0)
        summary.seconds = time.perf_counter() - t0
        run_doc.update({"finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                        "interrupted": summary.interrupted, "workers": summary.workers,
                        "seconds": round(summary.seconds, 3),
                        "counts": {s: summary.count(s) for s in ("ok", "skipped", "error")},
                        "failed": [r["case_id"] for r in summary.failed],
                        "not_run": [c.case_id for c in cases if c.case_id not in rows],
                        "engine_timings": summary.timings})
        atomic_write_text(out / "run.json", json.dumps(run_doc, indent=2, default=str) + "\n")
    return summary

