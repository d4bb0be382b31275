"""The output guard in the widgets that write files, docked as users dock them.

Files are opened as ``napari FILE``, File > Open and drag and drop open them
(``tests/napari_open.py``: no ``plugin=``); exporting over any open layer's file is
refused with a message and the file keeps its bytes.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from napari_open import open_as_user, viewer_after_first_use  # noqa: E402,F401  (fixture)

pytestmark = pytest.mark.gui


def _digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("guard")
    res = subprocess.run([sys.executable, "-m", "napari_medseg.cli", "sample", out, "--shape", "24,80,80"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture
def opened(viewer_after_first_use, sample_files, tmp_path):
    for name in ("ct.nii.gz", "labels.nii.gz", "labels.json"):
        shutil.copy(sample_files / name, tmp_path / name)
    viewer = viewer_after_first_use
    assert [layer.__class__.__name__ for layer in open_as_user(viewer, tmp_path / "ct.nii.gz")] == ["Image"]
    assert [layer.__class__.__name__ for layer in open_as_user(viewer, tmp_path / "labels.nii.gz")] == ["Labels"]
    return viewer, tmp_path


def _dock(viewer, name):
    _, widget = viewer.window.add_plugin_dock_widget("napari-medseg", name)
    return widget


def test_export_widget_refuses_open_files(qtbot, opened):
    viewer, folder = opened
    widget = _dock(viewer, "Export labels")
    before = {n: _digest(folder / n) for n in ("ct.nii.gz", "labels.nii.gz", "labels.json")}
    for target in ("labels.nii.gz", "ct.nii.gz", "sub/../ct.nii.gz"):
        assert widget.export(folder / target) is None
        assert "refusing to write the export" in widget.status.text()
    assert {n: _digest(folder / n) for n in before} == before
    # a fresh name works
    worker = widget.export(folder / "labels_copy.nii.gz")
    assert worker is not None
    with qtbot.waitSignal(worker.finished, timeout=30000):
        pass
    assert (folder / "labels_copy.nii.gz").is_file()


def test_statistics_csv_refuses_open_files(qtbot, opened):
    from napari_medseg.errors import InvalidInputError

    viewer, folder = opened
    widget = _dock(viewer, "Statistics")
    widget.debounce_ms = 10
    widget.refresh()
    qtbot.waitUntil(lambda: bool(widget.stats), timeout=30000)
    before = _digest(folder / "labels.json")
    with pytest.raises(InvalidInputError, match="refusing to write the CSV"):
        widget.export_csv(folder / "labels.json")
    assert _digest(folder / "labels.json") == before
    assert Path(widget.export_csv(folder / "stats.csv")).is_file()
