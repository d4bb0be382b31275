"""The per-case function: one input -> one label file, one done-record, one results row.

Both engines run exactly this code (:class:`CaseRunner`), in a worker process of the
local pool or in a Ray actor, so their files and rows are the same. A runner lives as
long as its worker and keeps the model loaded between cases
(:func:`~napari_medseg.inference.segment.keep_models_loaded`).

Nothing a case does can stop the others: every exception (a corrupt input, a model
error, running out of memory) becomes an ``error`` row with its message. The label
file is written atomically, then the done-record, so a worker killed at any moment
leaves either the old state or a complete output; a case is only ever "done" through
its record (:mod:`.records`).
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Optional

from ..errors import MedsegError
from .cases import Case
from .records import (Settings, read_record, record_matches, refresh_stat, sha256_of_file,
                      sha256_of_input, stat_signature, write_record)

__all__ = ["CaseRunner", "ROW_COLUMNS", "error_row", "output_path"]

#: Columns of every results row, in order (``--stats`` and ``--confidence`` append
#: per-structure columns, ``--confidence`` also ``review``: the flagged structures).
ROW_COLUMNS = ("case_id", "input", "input_sha256", "model", "fingerprint", "status", "error",
               "seconds", "peak_memory_mb", "attempts", "output")

#: Test hook: ``CASE_ID:MARKER``: the worker SIGKILLs itself in the middle of that case
#: the first time (while MARKER does not exist), to test retries of killed workers.
KILL_HOOK = "MEDSEG_BATCH_TEST_KILL"


def output_path(settings: Settings, case_id: str) -> str:
    """The label file of a case, relative to OUTDIR: ``labels/<case_id><ext>``."""
    return f"labels/{case_id}{settings.ext}"


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_mb(resettable: bool) -> float:
    """Peak resident memory of this worker during the case (MB).

    Linux: VmHWM after the reset; elsewhere the worker's lifetime peak (ru_maxrss).
    """
    if resettable:
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return round(int(line.split()[1]) / 1024.0, 1)
        except OSError:
            pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0), 1)


def error_row(case: Case, settings: Settings, fingerprint: str, message: str, *,
              seconds: float = 0.0, attempts: int = 1, peak_mb: Optional[float] = None,
              input_sha256: str = "") -> dict:
    """An ``error`` row (also made by the engines for a case whose worker died)."""
    return {"case_id": case.case_id, "input": case.path, "input_sha256": input_sha256,
            "model": settings.model, "fingerprint": fingerprint, "status": "error",
            "error": message, "seconds": round(seconds, 3), "peak_memory_mb": peak_mb,
            "attempts": attempts, "output": ""}


def _message(exc: BaseException) -> str:
    if isinstance(exc, MedsegError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return f"ran out of memory ({exc or 'MemoryError'}); run fewer --workers or on a larger machine"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _stats_of(volume, labels_volume, table) -> dict:
    from ..analysis.statistics import label_statistics

    ids = sorted(int(i) for i in table.names)
    out = {}
    for row in label_statistics(volume, labels_volume, table, ids=ids, summary_only=True):
        out[row["name"]] = {
            "ml": round(float(row["volume_ml"]), 4),
            "mean": None if row["mean"] is None else round(float(row["mean"]), 3),
            "std": None if row["std"] is None else round(float(row["std"]), 3),
        }
    return out


def confidence_of(labels, confidence, table, settings: Settings) -> dict:
    """Per-structure confidence figures of a case: ``{name: {mean_confidence, fraction_below,
    boundary_confidence, review, reasons}}`` for every structure of the model (an absent one
    has no figures), from :func:`~napari_medseg.analysis.confidence.summarise_confidence`."""
    from ..analysis.confidence import ReviewThresholds, summarise_confidence

    thresholds = ReviewThresholds(**(settings.review_thresholds or {}))
    names = {int(k): v for k, v in table.names.items()}
    summary = {s.id: s for s in summarise_confidence(labels, confidence.max_prob, names,
                                                     thresholds=thresholds)}
    out = {}
    for sid in sorted(names):
        s = summary.get(sid)
        out[names[sid]] = {} if s is None else {
            "mean_confidence": round(float(s.mean_confidence), 4),
            "fraction_below": round(float(s.fraction_below), 4),
            "boundary_confidence": round(float(s.boundary_confidence), 4),
            "review": bool(s.review), "reasons": "; ".join(s.reasons)}
    return out


class CaseRunner:
    """Runs cases for one worker; keeps the model loaded between them.

    Parameters
    ----------
    settings : Settings
        The run's settings (with ``model_id`` filled).
    outdir : str
        The run's output folder (shared by every worker).
    threads : int, optional
        Intra-op threads for torch in this worker (None: leave torch's default).
    """

    def __init__(self, settings: Settings, outdir: str, threads: Optional[int] = None) -> None:
        from ..inference.segment import keep_models_loaded

        self.settings = settings
        self.outdir = str(outdir)
        self.fingerprint = settings.fingerprint()
        keep_models_loaded(True)
        if threads:
            os.environ["OMP_NUM_THREADS"] = str(threads)
            if "torch" in sys.modules or settings.model != "hu-tissue":
                import torch

                torch.set_num_threads(int(threads))

    def run(self, case: Case, attempts: int = 1) -> dict:
        """Run one case; never raises (failures are ``error`` rows).

        Returns
        -------
        dict
            The results row (:data:`ROW_COLUMNS`, plus ``stats`` with ``--stats``).
        """
        t0 = time.perf_counter()
        resettable = _reset_peak()
        sha = ""
        try:
            if case.problem:
                raise FileNotFoundError(case.problem)
            sha = sha256_of_input(case.path)
            record = read_record(self.outdir, case.case_id)
            if record_matches(self.outdir, record, case_path=case.path,
                              fingerprint=self.fingerprint, want_stats=self.settings.stats,
                              input_sha256=sha):
                # same content, new modification time (a copy, a touch): done already
                refresh_stat(self.outdir, case.case_id, record, case.path)
                return dict(record["row"], status="skipped", error="", attempts=attempts,
                            seconds=round(time.perf_counter() - t0, 3), peak_memory_mb=None)
            self._test_kill_hook(case)
            row = self._segment(case, sha, attempts, t0)
        except BaseException as exc:  # noqa: BLE001 - one case's failure is one row
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            msg = _message(exc) if not isinstance(exc, FileNotFoundError) or not case.problem \
                else case.problem
            return error_row(case, self.settings, self.fingerprint, msg,
                             seconds=time.perf_counter() - t0, attempts=attempts,
                             peak_mb=_peak_mb(resettable), input_sha256=sha)
        row["seconds"] = round(time.perf_counter() - t0, 3)
        row["peak_memory_mb"] = _peak_mb(resettable)
        return row

    def _segment(self, case: Case, sha: str, attempts: int, t0: float) -> dict:
        from ..inference.segment import segment_with_info
        from ..io import read_volume, write_labels

        s = self.settings
        volume = read_volume(case.path, channel=s.channel)
        result = segment_with_info(volume, s.model, weights=s.weights, device=s.device,
                                   runtime=s.runtime,
                                   roi_subset=list(s.roi_subset) if s.roi_subset else None,
                                   confidence=s.confidence, temperature=s.temperature)
        rel = output_path(s, case.case_id)
        out = Path(self.outdir) / rel
        labels_volume = volume.with_array(result.labels)
        write_labels(labels_volume, out, result.table)
        row = {"case_id": case.case_id, "input": case.path, "input_sha256": sha,
               "model": s.model, "fingerprint": self.fingerprint, "status": "ok", "error": "",
               "seconds": None, "peak_memory_mb": None, "attempts": attempts, "output": rel}
        if s.stats:
            row["stats"] = _stats_of(volume, labels_volume, result.table)
            row["has_stats"] = True
        if s.confidence:
            if result.confidence is None:  # refused up front; a model change is one error row
                raise MedsegError(" ".join(result.notes) or "the model returned no confidence map")
            row["confidence"] = confidence_of(result.labels, result.confidence, result.table, s)
            row["review"] = "; ".join(name for name, c in row["confidence"].items() if c.get("review"))
        # The record comes after the label file: a record never names a missing output.
        write_record(self.outdir, case.case_id, {
            "case_id": case.case_id, "input": case.path, "input_sha256": sha,
            "input_stat": stat_signature(case.path), "fingerprint": self.fingerprint,
            "settings": s.to_dict(), "output": rel, "output_size": out.stat().st_size,
            "output_sha256": sha256_of_file(out), "notes": list(result.notes),
            "host": os.uname().nodename if hasattr(os, "uname") else "", "pid": os.getpid(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "row": dict(row, seconds=round(time.perf_counter() - t0, 3)),
        })
        return row

    @staticmethod
    def _test_kill_hook(case: Case) -> None:
        spec = os.environ.get(KILL_HOOK, "")
        if not spec or ":" not in spec:
            return
        target, marker = spec.split(":", 1)
        if target == case.case_id and not os.path.exists(marker):
            Path(marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)


def precheck_done(outdir: str, case: Case, fingerprint: str, want_stats: bool) -> Optional[dict]:
    """The skipped row of a case whose record matches by size and modification time
    (no hashing, so a rerun of a finished cohort takes seconds); None: dispatch it."""
    if case.problem:
        return None
    record = read_record(outdir, case.case_id)
    if record_matches(outdir, record, case_path=case.path, fingerprint=fingerprint,
                      want_stats=want_stats, stat_only=True):
        return dict(record["row"], status="skipped", error="", attempts=0, seconds=0.0,
                    peak_memory_mb=None)
    return None
