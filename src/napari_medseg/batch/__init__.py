"""Cohorts: ``medseg batch`` on one machine (a process pool) or on a Ray cluster.

Public API:

- :func:`run_batch` (``.run``): a cohort folder, glob or CSV manifest -> label files,
  done-records, ``results.csv``/``results.parquet`` and ``run.json``, resumable;
- :func:`discover_cases`, :class:`Case` (``.cases``): what a cohort holds;
- :class:`CaseRunner` (``.runner``): the per-case function both engines run;
- :class:`Settings` (``.records``): what decides an output (its fingerprint).

Nothing here imports torch, Ray or pandas at import time.
"""

from .cases import Case, discover_cases
from .records import Settings
from .run import BatchSummary, run_batch
from .runner import CaseRunner

__all__ = ["Case", "discover_cases", "Settings", "BatchSummary", "run_batch", "CaseRunner"]
