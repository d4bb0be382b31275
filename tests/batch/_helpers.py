"""Helpers of the cohort runner tests: run ``medseg batch`` as users do, write cohorts,
read results tables."""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
from pathlib import Path

PHANTOM_SHAPES = [(16, 56, 56), (20, 64, 64), (24, 48, 64), (18, 72, 56)]


def medseg_batch(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    """``python -m napari_medseg.cli batch ARGS`` in a subprocess, as users run it."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "napari_medseg.cli", "batch", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def write_phantom_cohort(folder: Path, shapes=PHANTOM_SHAPES, first_seed: int = 0) -> list:
    """Write synthetic CTs ``case<i>.nii.gz`` of several sizes; returns their paths."""
    from napari_medseg.io import write_volume
    from napari_medseg.phantom import make_phantom

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, shape in enumerate(shapes):
        ph = make_phantom(seed=first_seed + i, shape=shape, n_lesions=1)
        paths.append(write_volume(ph.ct, folder / f"case{first_seed + i}.nii.gz"))
    return paths


def digests(folder: Path) -> dict:
    """sha256 of every file under ``folder`` (inputs must survive byte for byte)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def read_rows(outdir: Path) -> dict:
    """``results.csv`` as {case_id: row}."""
    with open(Path(outdir) / "results.csv", newline="") as fh:
        return {r["case_id"]: r for r in csv.DictReader(fh)}
