"""``medseg weights``: list (JSON, text, checksum note), path and import, manual models."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from napari_medseg.cli import main
from napari_medseg.models.registry import get_card

from ._run import refused


# --- bad input and faults


# ------------------------------------------------------------------- weights text
def test_weights_list_says_what_the_checksum_check_is(tmp_path):
    import os

    env = dict(os.environ, MEDSEG_WEIGHTS_DIR=str(tmp_path / "cache"))
    res = subprocess.run([sys.executable, "-m", "napari_medseg.cli", "weights", "list", "--json"],
                         capture_output=True, text=True, env=env)
    rows = {r["name"]: r for r in json.loads(res.stdout)["models"]}
    assert "first download is not verified" in rows["total"]["checksum"]
    assert "trust on first use" in rows["total"]["checksum"]
    assert rows["hu-tissue"]["checksum"].startswith("no weights")


# --- bad input and faults


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_WEIGHTS_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "no-totalseg"))


def test_weights_import_never_deletes_its_source(tmp_path):
    """Importing (linking) weights that lie inside the folder the import replaces."""
    import subprocess
    import sys

    from napari_medseg.models.registry import get_card

    card = get_card("total-fast")
    cache = tmp_path / "cache"
    dataset = card.files[0].target
    # a user's copy kept inside the cached dataset folder the import would replace
    mine = cache / "totalsegmentator" / dataset / "my-copy"
    model = mine / dataset / card.model_folder_name
    (model / "fold_0").mkdir(parents=True)
    (model / "dataset.json").write_text("{}")
    (model / "plans.json").write_text("{}")
    (model / "fold_0" / "checkpoint_final.pth").write_bytes(b"weights")
    env = dict(os.environ, MEDSEG_WEIGHTS_DIR=str(cache), TOTALSEG_WEIGHTS_PATH=str(tmp_path / "none"))
    res = subprocess.run([sys.executable, "-m", "napari_medseg.cli", "weights", "import",
                          "total-fast", mine, "--link"], capture_output=True, text=True, env=env)
    refused(res, "would be lost")
    assert (model / "fold_0" / "checkpoint_final.pth").read_bytes() == b"weights"


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
