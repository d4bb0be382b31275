"""Fixtures for the command-line tests: every test runs ``medseg`` in a subprocess, as users do."""

from __future__ import annotations

import json
import shutil

import pytest

from ._run import medseg


@pytest.fixture(scope="session")
def sample(tmp_path_factory) -> dict:
    """``medseg sample`` output (small phantom): paths of ct, labels, sidecar, lesions."""
    out = tmp_path_factory.mktemp("sample")
    res = medseg("sample", out, "--shape", "24,80,80", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.fixture
def work(tmp_path, sample):
    """A private copy of the phantom CT and labels (with sidecar) in tmp_path."""
    shutil.copy(sample["ct"], tmp_path / "a.nii.gz")
    shutil.copy(sample["labels"], tmp_path / "labels.nii.gz")
    shutil.copy(sample["label_names"], tmp_path / "labels.json")
    (tmp_path / "a").mkdir()
    return tmp_path


@pytest.fixture(scope="module")
def mr_sample(tmp_path_factory) -> dict:
    """``medseg sample --modality mr`` (T1, T2, labels) written once per test module."""
    out = tmp_path_factory.mktemp("mr")
    res = medseg("sample", out, "--modality", "mr", "--shape", "24,80,80", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)
