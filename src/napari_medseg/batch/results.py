"""The results table: ``results.csv`` always, ``results.parquet`` when pyarrow is installed.

One row per case (:data:`~.runner.ROW_COLUMNS`); with ``--stats`` each structure of the
model adds ``<name>_ml``, ``<name>_mean`` and ``<name>_std`` (mean/std of the image
inside it; empty for an absent structure, whose volume is 0). Both files are written
atomically, so a reader never sees half a table.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import List, Sequence

from ..io.atomic import atomic_write, atomic_write_text
from .runner import ROW_COLUMNS

__all__ = ["flatten_rows", "write_results", "parquet_available"]


def flatten_rows(rows: Sequence[dict]) -> tuple:
    """Rows with their ``stats`` spread into columns; returns ``(columns, rows)``."""
    structures: List[str] = []
    for row in rows:
        for name in (row.get("stats") or {}):
            if name not in structures:
                structures.append(name)
    columns = list(ROW_COLUMNS)
    for name in structures:
        columns += [f"{name}_ml", f"{name}_mean", f"{name}_std"]
    flat = []
    for row in rows:
        out = {c: row.get(c) for c in ROW_COLUMNS}
        stats = row.get("stats") or {}
        for name in structures:
            item = stats.get(name) or {}
            out[f"{name}_ml"] = item.get("ml")
            out[f"{name}_mean"] = item.get("mean")
            out[f"{name}_std"] = item.get("std")
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
