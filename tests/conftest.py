"""Shared test fixtures.

Real data lives in ``../shared/data`` beside the repository (never copied in).
Tests that need it use the ``shared_data`` fixture, which skips with a reason when
the folder is absent (CI always has it). ``MEDSEG_SHARED_DIR`` overrides the place.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDSEG_SHARED_DIR", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (data and fixtures), or skip."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"shared data folder not found at {SHARED} (set MEDSEG_SHARED_DIR)")
    return SHARED


@pytest.fixture(scope="session")
def shared_data(shared_dir: Path) -> Path:
    """``../shared/data``: the real CT (totalseg_example/) and DICOM (dcmqi_ct3slice/)."""
    return shared_dir / "data"


@pytest.fixture(scope="session")
def shared_fixtures(shared_dir: Path) -> Path:
    """``../shared/fixtures``: checkpoint manifests and reference outputs."""
    path = shared_dir / "fixtures"
    if not path.is_dir():
        pytest.skip(f"fixtures folder not found at {path}")
    return path
