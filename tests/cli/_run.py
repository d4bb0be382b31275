"""Run ``medseg`` in a subprocess as users do, and fingerprint files (shared by tests/cli)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path


def medseg(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    """Run ``python -m napari_medseg.cli ARGS`` and capture its output (text)."""
    return subprocess.run([sys.executable, "-m", "napari_medseg.cli", *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


def digest(path) -> str:
    """sha256 of a file's bytes (to prove an input survived byte for byte)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def refused(res, *names):
    """Assert that a command refused to write (exit 2, one message naming ``names``)."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    assert "refusing to write" in res.stderr and "Nothing was written" in res.stderr
    for name in names:
        assert name in res.stderr
