"""Fixtures for the command-line tests: every test runs ``medseg`` in a subprocess, as users do."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest


def medseg(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    """Run ``python -m napari_medseg.cli ARGS`` and capture its output (text)."""
    return subprocess.run([sys.executable, "-m", "napari_medseg.cli", *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


def digest(path) -> str:
    """sha256 of a file's bytes (to prove an input survived byte for byte)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def sample(tmp_path_factory) -> dict:
    """``medseg sample`` output (small phantom): paths of ct, labels, sidecar, lesions."""
    out = tmp_path_factory.mktemp("sample")
    res = medseg("sample", out, "--shape", "24,80,80", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)
