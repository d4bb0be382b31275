"""The results table: ``results.csv`` always, ``results.parquet`` when pyarrow is installed.

One row per case (:data:`~.runner.ROW_COLUMNS`); with ``--stats`` each structure of the
model adds ``<name>_ml``, ``<name>_mean`` and ``<name>_std`` (mean/std of the image
inside it; empty for an absent structure, whose volume is 0); with ``--confidence`` a
``review`` column (the structures flagged for review, ``;``-separated) and, per structure,
``<name>_mean_confidence``, ``<name>_fraction_below``, ``<name>_boundary_confidence`` and
``<name>_review`` (empty for an absent structure). Both files are written
atomically, so a reader never sees half a table.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import List, Sequence

from ..io.atomic import atomic_write, atomic_write_text
from ..analysis.confidence import CONFIDENCE_COLUMNS
from .runner import ROW_COLUMNS

__all__ = ["flatten_rows", "write_results", "preload_writers", "parquet_available"]

#: (row key, per-structure fields) spread into ``<name>_<field>`` columns
_SPREAD = (("stats", (("ml", "ml"), ("mean", "mean"), ("std", "std"))),
           ("confidence", tuple((c, c) for c in CONFIDENCE_COLUMNS)))


def flatten_rows(rows: Sequence[dict]) -> tuple:
    """Rows with their ``stats`` and ``confidence`` spread into columns; returns
    ``(columns, rows)``."""
    columns = list(ROW_COLUMNS)
    if any("confidence" in row for row in rows):
        columns.append("review")
    spread = []
    for key, fields in _SPREAD:
        structures: List[str] = []
        for row in rows:
            for name in (row.get(key) or {}):
                if name not in structures:
                    structures.append(name)
        for name in structures:
            for field, column in fields:
                spread.append((key, name, field, f"{name}_{column}"))
                columns.append(f"{name}_{column}")
    flat = []
    for row in rows:
        out = {c: row.get(c) for c in columns if c in ROW_COLUMNS or c == "review"}
        for key, name, field, column in spread:
            out[column] = ((row.get(key) or {}).get(name) or {}).get(field)
        flat.append(out)
    return columns, flat


def parquet_available() -> bool:
    """True when pandas and pyarrow can be imported (``pip install pyarrow``)."""
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def preload_writers() -> None:
    """Import what :func:`write_results` uses (pandas, pyarrow's Parquet writer) ahead
    of time, while the driver waits anyway (a second or more on a busy machine)."""
    if parquet_available():
        import pyarrow.parquet  # noqa: F401 - to_parquet imports it on first use


def write_results(outdir, rows: Sequence[dict]) -> list:
    """Write ``results.csv`` (and ``results.parquet`` if possible); returns the paths."""
    columns, flat = flatten_rows(rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in flat:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    paths = [atomic_write_text(Path(outdir) / "results.csv", buf.getvalue())]
    if parquet_available():
        import pandas as pd

        frame = pd.DataFrame(flat, columns=columns)
        for col in ("seconds", "peak_memory_mb"):
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
        frame["attempts"] = pd.to_numeric(frame["attempts"], errors="coerce").astype("Int64")
        with atomic_write(Path(outdir) / "results.parquet") as tmp:
            frame.to_parquet(tmp, index=False)
        paths.append(Path(outdir) / "results.parquet")
    return paths
