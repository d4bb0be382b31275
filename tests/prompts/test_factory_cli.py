"""Backend factory and the ``medseg prompt`` command."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from napari_medseg.cli import main
from napari_medseg.errors import InvalidInputError, MedsegError
from napari_medseg.io import read_volume, write_volume
from napari_medseg.io.volume import Volume
from napari_medseg.prompts import factory
from napari_medseg.prompts.base import PromptSession
from napari_medseg.prompts.region_growing import RegionGrowingSession


def test_default_backend_is_weights_free_and_listed_first():
    names = factory.available_backends()
    assert names[0] == "region-growing"
    session = factory.make_session()
    assert isinstance(session, RegionGrowingSession) and isinstance(session, PromptSession)
    status = {s.name: s for s in factory.backend_statuses()}
    assert set(status) == {"region-growing", "sam-med3d", "3dsam-adapter", "nninteractive"}
    assert status["region-growing"].ready and not status["region-growing"].needs_weights
    for name in ("sam-med3d", "3dsam-adapter", "nninteractive"):
        assert status[name].needs_weights
        if not status[name].ready:
            assert status[name].reason  # says why (module missing / weights missing)


def test_listing_backends_does_not_import_torch():
    code = (
        "import sys; from napari_medseg.prompts.factory import backend_statuses, available_backends;"
        "backend_statuses(); available_backends(); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_sam_backends_need_weights_with_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_WEIGHTS_DIR", str(tmp_path))
    for name in ("sam-med3d", "3dsam-adapter"):
        if name not in factory.available_backends():
            continue
        with pytest.raises(MedsegError) as info:
            factory.make_session(name)
        assert "weights" in str(info.value).lower()


def test_missing_backend_module_is_reported(monkeypatch):
    spec = factory.BackendSpec("ghost", "no_such_module", "Nope", "test", weights_card="x")
    monkeypatch.setitem(factory.BACKENDS, "ghost", spec)
    assert "ghost" not in factory.available_backends()
    with pytest.raises(MedsegError, match="not available: its module napari_medseg.prompts.no_such_module"):
        factory.make_session("ghost")


@pytest.fixture()
def sphere_file(tmp_path):
    from .test_region_growing import _sphere_volume

    volume, ref, centre = _sphere_volume()
    volume = Volume(volume.array, spacing=volume.spacing, origin=(10.0, -20.0, 33.0),
                    direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1), modality="CT")
    path = tmp_path / "ct.nii.gz"
    write_volume(volume, path)
    return path, ref, centre


def test_cli_prompt_writes_mask_with_geometry(sphere_file, tmp_path, capsys):
    path, ref, centre = sphere_file
    out = tmp_path / "mask.nii.gz"
    rc = main(["prompt", str(path), "-o", str(out), "--point", ",".join(map(str, centre)),
               "--label", "3", "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    mask = read_volume(out)
    source = read_volume(path)
    assert mask.same_grid(source)
    assert mask.array.dtype == np.uint8
    assert set(np.unique(mask.array)) == {0, 3}
    got = mask.array == 3
    assert 2 * (got & ref).sum() / (got.sum() + ref.sum()) > 0.85
    assert report["voxels"] == int(got.sum())
    assert report["timings"]["setup_s"] >= 0
    assert len(report["timings"]["interactions"]) == 1


def test_cli_prompt_negative_and_box(sphere_file, tmp_path, capsys):
    path, ref, centre = sphere_file
    out = tmp_path / "mask.nii.gz"
    z, y, x = centre
    rc = main(["prompt", str(path), "-o", str(out), "--point", f"{z},{y},{x}",
               "--negative", f"{z},{y},{x + 15}", "--box", f"0,0,0,{z + 5},{y + 30},{x + 30}", "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["prompt"] for s in report["timings"]["interactions"]] == ["point", "negative", "box"]
    mask = read_volume(out).array
    assert mask[z, y, x] == 1 and mask[z, y, x + 15] == 0
    assert not mask[z + 6:].any()
