"""deepbet's networks: loaded once per process and device, re-checked when the files change."""

from __future__ import annotations

import importlib.metadata as md
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from napari_medseg.errors import InvalidInputError

pytest.importorskip("deepbet", reason="deepbet is not installed (pip install -e '.[mri]')")

from napari_medseg.models import deepbet as db  # noqa: E402


@pytest.fixture
def loads(monkeypatch):
    """Counts the networks' loads (each is two TorchScript archives); starts with none loaded."""
    db.release()
    calls = []
    real = db._load

    def counting(paths, no_gpu):
        calls.append((tuple(sorted(str(p) for p in paths.values())), no_gpu))
        return real(paths, no_gpu)

    monkeypatch.setattr(db, "_load", counting)
    yield calls
    db.release()


def _copy_of_the_distribution(root: Path):
    """The installed deepbet's archives and dist-info copied under ``root``, as a Distribution."""
    dist = md.distribution("deepbet")
    for f in dist.files:
        src = Path(dist.locate_file(f))
        if src.is_file() and (str(f).startswith("data/models") or ".dist-info" in str(f)):
            dst = root / f
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    return md.PathDistribution(next(root.glob("deepbet-*.dist-info")))


def test_networks_are_loaded_once_per_device(loads):
    bet, lock = db.brain_extractor(no_gpu=True)
    again, lock2 = db.brain_extractor(no_gpu=True)
    assert again is bet and lock2 is lock and len(loads) == 1 and db.loaded()
    other, _ = db.brain_extractor(no_gpu=False)  # the GPU copy is kept apart (CPU here if none)
    assert other is not bet and len(loads) == 2
    db.brain_extractor(no_gpu=False)
    db.brain_extractor(no_gpu=True)
    assert len(loads) == 2


@pytest.mark.slow
def test_a_second_brain_extraction_does_not_reload(loads):
    """Through segment(), as the widget and batch call it: the second call loads nothing and
    gives the same mask."""
    nilearn = pytest.importorskip("nilearn", reason="nilearn (the MNI152 template) is not installed")
    from napari_medseg.inference.segment import segment
    from napari_medseg.io.readers import read_volume

    t1 = Path(nilearn.__file__).parent / "datasets" / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    volume = read_volume(t1)
    first = segment(volume, "deepbet", device="cpu")[0]
    second = segment(volume, "deepbet", device="cpu")[0]
    assert len(loads) == 1
    assert np.array_equal(first, second) and first.any()


def test_changed_files_are_checked_again(loads, tmp_path, monkeypatch):
    fake = _copy_of_the_distribution(tmp_path / "site")
    monkeypatch.setattr(db, "_distribution", lambda: fake)
    model = tmp_path / "site" / "data" / "models" / "model.pt"
    db.brain_extractor(no_gpu=True)
    assert len(loads) == 1 and str(model) in loads[0][0]
    # the same bytes with a new modification time: checked again, loaded again, accepted
    st = model.stat()
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    db.brain_extractor(no_gpu=True)
    assert len(loads) == 2
    # modified after installation: refused, and the old networks are not kept for later calls
    with open(model, "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(InvalidInputError, match="modified after installation"):
        db.brain_extractor(no_gpu=True)
    assert not db.loaded() and len(loads) == 2
