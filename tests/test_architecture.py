"""The architecture contracts of ``.importlinter`` hold (layers one way; the core never imports Qt).

import-linter reads every import, function-local ones included, so a cycle hidden inside
a function fails here like any other.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> str:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("lint-imports is missing: install the test extra (pip install -e '.[test]')")
    return exe


def _lint_with_probe(tmp_path, probe_path: Path, code: str, config: str) -> subprocess.CompletedProcess:
    """Run lint-imports with ``config`` while ``probe_path`` (a source module) holds ``code``."""
    probe_path.write_text(code)
    try:
        cfg = tmp_path / "contracts.ini"
        cfg.write_text(config)
        return subprocess.run([_lint_imports(), "--no-cache", "--config", str(cfg)], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
    finally:
        probe_path.unlink()


def test_import_contracts_are_kept():
    proc = subprocess.run([_lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Contracts: 4 kept, 0 broken." in proc.stdout


def test_contracts_catch_an_upward_import(tmp_path):
    """A models module importing inference breaks the layers contract (the check can fail)."""
    config = (ROOT / ".importlinter").read_text()
    proc = _lint_with_probe(tmp_path, ROOT / "src" / "napari_medseg" / "models" / "_probe_upward_import.py",
                            "from ..inference import segment  # noqa: F401\n", config)
    assert proc.returncode != 0
    assert "napari_medseg.models._probe_upward_import -> napari_medseg.inference" in proc.stdout


def test_io_contract_catches_a_cycle_inside_io(tmp_path):
    """A bottom io module importing the readers breaks the io layers contract (no cycles in io/)."""
    config = (ROOT / ".importlinter").read_text()
    assert "    formats | arrays\n" in config
    proc = _lint_with_probe(tmp_path, ROOT / "src" / "napari_medseg" / "io" / "_probe_cycle.py",
                            "from . import readers  # noqa: F401\n",
                            config.replace("    formats | arrays\n", "    formats | arrays | _probe_cycle\n"))
    assert proc.returncode != 0
    assert "napari_medseg.io._probe_cycle -> napari_medseg.io.readers" in proc.stdout


def test_contract_catches_the_product_importing_the_test_helpers(tmp_path):
    """A product module importing napari_medseg.testing breaks its forbidden contract."""
    config = (ROOT / ".importlinter").read_text()
    proc = _lint_with_probe(tmp_path, ROOT / "src" / "napari_medseg" / "editing" / "_probe_testing_import.py",
                            "from ..testing import tolerance  # noqa: F401\n", config)
    assert proc.returncode != 0
    # lint-imports wraps long lines
    assert ("napari_medseg.editing._probe_testing_import -> napari_medseg.testing.tolerance"
            in " ".join(proc.stdout.split()))


def test_test_helpers_import_without_napari_qt_or_torch():
    """Every napari_medseg.testing module imports light: napari, Qt and torch load inside functions."""
    import pkgutil

    import napari_medseg.testing as testing

    names = [f"napari_medseg.testing.{m.name}" for m in pkgutil.iter_modules(testing.__path__)]
    assert "napari_medseg.testing.nnunet" in names and "napari_medseg.testing.sam_med3d" in names
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "heavy = sorted(m for m in ('napari', 'qtpy', 'PyQt5', 'PyQt6', 'torch') if m in sys.modules)\n"
            "print(','.join(heavy))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"napari_medseg.testing imported {proc.stdout.strip()} at import time"
