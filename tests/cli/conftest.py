"""Fixtures for the command-line tests: every test runs ``medseg`` in a subprocess, as users do."""

from __future__ import annotations

import json

import pytest

from ._run import medseg


@pytest.fixture(scope="session")
def sample(tmp_path_factory) -> dict:
    """``medseg sample`` output (small phantom): paths of ct, labels, sidecar, lesions."""
    out = tmp_path_factory.mktemp("sample")
    res = medseg("sample", out, "--shape", "24,80,80", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)
