"""``medseg segment`` and ``medseg weights``: files written with the source geometry, JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_medseg.cli import main
from napari_medseg.io import read_labels, read_volume, sidecar_path, write_volume
from napari_medseg.models.registry import get_card
from napari_medseg.phantom import make_phantom


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_WEIGHTS_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "no-totalseg"))


@pytest.fixture(scope="module")
def ct_file(tmp_path_factory):
    ph = make_phantom(seed=4, shape=(20, 64, 64), spacing_zyx=(5.0, 3.0, 3.0))
    vol = ph.ct
    # An oblique-free but flipped, offset geometry: the output must reproduce it exactly.
    vol = vol.__class__(vol.array, spacing=vol.spacing, origin=(12.5, -40.0, 100.0),
                        direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1), modality="CT")
    path = tmp_path_factory.mktemp("ct") / "ct.nii.gz"
    write_volume(vol, path)
    return path


def test_segment_json_and_geometry(ct_file, tmp_path, capsys):
    out = tmp_path / "seg.nii.gz"
    assert main(["segment", str(ct_file), "-o", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["output"] == str(out) and doc["model"] == "hu-tissue"
    names = {d["name"] for d in doc["labels"]}
    assert {"lung", "bone", "subcutaneous_fat", "skeletal_muscle"} <= names
    assert all(d["voxels"] > 0 and d["volume_ml"] > 0 for d in doc["labels"])
    assert "total_s" in doc["timings"] and "read_s" in doc["timings"]
    src = read_volume(ct_file)
    labels, table = read_labels(out, reference=src)
    assert labels.same_grid(src)
    assert sidecar_path(out).exists()
    assert table.names.get(5) == "lung"
    counts = {d["id"]: d["voxels"] for d in doc["labels"]}
    assert counts[5] == int((labels.array == 5).sum())


def test_segment_roi_subset_text_output(ct_file, tmp_path, capsys):
    out = tmp_path / "lung.nrrd"
    assert main(["segment", str(ct_file), "-o", str(out), "--roi-subset", "lung"]) == 0
    text = capsys.readouterr().out
    assert "wrote" in text and "lung" in text
    labels, _ = read_labels(out)
    assert set(np.unique(labels.array)) == {0, 5}


def test_segment_missing_weights_is_one_line_exit_2(ct_file, tmp_path, capsys):
    out = tmp_path / "x.nii.gz"
    assert main(["segment", str(ct_file), "-o", str(out), "--model", "total-fast"]) == 2
    err = capsys.readouterr().err
    assert "medseg weights download total-fast" in err and "Traceback" not in err
    assert not out.exists()


def test_segment_bad_structure_exit_2(ct_file, tmp_path, capsys):
    out = tmp_path / "x.nii.gz"
    assert main(["segment", str(ct_file), "-o", str(out), "--roi-subset", "lnug"]) == 2
    assert "did you mean 'lung'" in capsys.readouterr().err
    assert not out.exists()


def test_weights_list_json(capsys):
    assert main(["weights", "list", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in doc["models"]}
    assert rows["hu-tissue"]["installed"] is True
    assert rows["total"]["installed"] is False and rows["total"]["licence"]
    assert rows["total"]["source"].startswith("https://github.com/wasserth/TotalSegmentator")


def test_weights_list_text(capsys):
    assert main(["weights", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith("total-fast "))
    assert row.split()[1] == "no" and "~230 MB" in row
    assert next(line for line in lines if line.startswith("hu-tissue ")).split()[1] == "yes"


def test_weights_path_and_import(tmp_path, capsys):
    assert main(["weights", "path", "total-fast"]) == 2
    assert "medseg weights download total-fast" in capsys.readouterr().err
    card = get_card("total-fast")
    d = tmp_path / "mine" / card.files[0].target / card.model_folder_name
    (d / "fold_0").mkdir(parents=True)
    (d / "dataset.json").write_text("{}")
    (d / "plans.json").write_text("{}")
    (d / "fold_0" / "checkpoint_final.pth").write_bytes(b"x")
    assert main(["weights", "import", "total-fast", str(tmp_path / "mine")]) == 0
    capsys.readouterr()
    assert main(["weights", "path", "total-fast"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cache" / "totalsegmentator")


def test_weights_download_refuses_manual_model(capsys):
    assert main(["weights", "download", "3dsam-adapter-kits"]) == 2
    assert "medseg weights import 3dsam-adapter-kits" in capsys.readouterr().err
