"""Scenes for the widget tests: layers built in memory, or the sample phantom opened as users open it."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from napari_medseg.io import LabelTable
from napari_medseg.io.layer_data import image_layer_tuple, labels_layer_tuple
from napari_medseg.io.volume import Volume
from tests.napari_open import open_as_user, viewer_after_first_use  # noqa: F401  (fixture)


@pytest.fixture
def scene(make_napari_viewer):
    """An oblique-free LPS-flipped CT with a two-class label map (liver 1, lesion 3) in a viewer."""
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    ct = Volume(rng.integers(-100, 200, (6, 20, 20)).astype(np.int16), spacing=(0.7, 0.7, 2.5),
                origin=(-5.0, 3.0, 40.0), direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1), modality="CT")
    arr = np.zeros(ct.shape, np.uint8)
    arr[1:4, 2:8, 2:9] = 1
    arr[5, 10:15, 10:12] = 3
    table = LabelTable.from_names({1: "liver", 3: "lesion"})
    d, kw, _ = image_layer_tuple(ct, "ct")
    image = viewer.add_image(d, **kw)
    d, kw, _ = labels_layer_tuple(arr, ct, table, "seg")
    labels = viewer.add_labels(d, **kw)
    return viewer, ct, image, labels, table


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory):
    """``medseg sample`` output (small phantom), written once per module."""
    out = tmp_path_factory.mktemp("guard")
    res = subprocess.run([sys.executable, "-m", "napari_medseg.cli", "sample", out, "--shape", "24,80,80"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture
def opened(viewer_after_first_use, sample_files, tmp_path):
    """The sample CT and labels copied to tmp_path and opened as ``napari FILE`` opens them."""
    for name in ("ct.nii.gz", "labels.nii.gz", "labels.json"):
        shutil.copy(sample_files / name, tmp_path / name)
    viewer = viewer_after_first_use
    assert [layer.__class__.__name__ for layer in open_as_user(viewer, tmp_path / "ct.nii.gz")] == ["Image"]
    assert [layer.__class__.__name__ for layer in open_as_user(viewer, tmp_path / "labels.nii.gz")] == ["Labels"]
    return viewer, tmp_path


@pytest.fixture(autouse=True)
def _own_config_dir(tmp_path_factory, monkeypatch):
    """Each test remembers its "Where it runs" choice in its own folder (never the user's)."""
    monkeypatch.setenv("MEDSEG_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))


@pytest.fixture
def medseg_server(tmp_path):
    """A real ``medseg serve`` application on loopback (uvicorn in a thread) and its token file.

    Returns an object with ``url``, ``token_file`` (mode 600, as ``medseg serve --new-token``
    writes it), ``handle`` (``app``, ``stop()``); stopped after the test.
    """
    pytest.importorskip("fastapi", reason="the [serve] extra (fastapi, uvicorn, httpx) is not installed")
    pytest.importorskip("uvicorn", reason="the [serve] extra is not installed")
    pytest.importorskip("httpx", reason="the [serve] extra is not installed")
    from types import SimpleNamespace

    from napari_medseg.serve.app import ServeConfig, serve_in_thread
    from napari_medseg.serve.auth import make_token

    token_file = tmp_path / "medseg-token"
    handle = serve_in_thread(ServeConfig(tokens=[make_token(token_file)]))
    yield SimpleNamespace(url=handle.url, token_file=token_file, handle=handle)
    handle.stop()
