"""The weights manager: locations, resolution order, messages, import, trust on first use."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from napari_medseg.errors import DownloadError, WeightsNotFoundError
from napari_medseg.models import weights as wm
from napari_medseg.models.registry import ModelCard, RemoteFile, get_card


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_WEIGHTS_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "totalseg"))
    monkeypatch.delenv("TOTALSEG_HOME_DIR", raising=False)


def fake_dataset(root: Path, folder: str, model_folder: str, folds=(0,)) -> Path:
    d = root / folder / model_folder
    d.mkdir(parents=True)
    (d / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "a": 1}}))
    (d / "plans.json").write_text("{}")
    for f in folds:
        (d / f"fold_{f}").mkdir()
        (d / f"fold_{f}" / "checkpoint_final.pth").write_bytes(b"x")
    return d


def test_cache_dir_env_and_default(monkeypatch, tmp_path):
    assert wm.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("MEDSEG_WEIGHTS_DIR")
    assert wm.cache_dir() == Path.home() / ".cache" / "napari-medseg" / "weights"


def test_totalseg_dir_rules(monkeypatch, tmp_path):
    assert wm.totalseg_weights_dir() == tmp_path / "totalseg"
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH")
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "tshome"))
    assert wm.totalseg_weights_dir() == tmp_path / "tshome" / "nnunet" / "results"
    monkeypatch.delenv("TOTALSEG_HOME_DIR")
    assert wm.totalseg_weights_dir() == Path.home() / ".totalsegmentator" / "nnunet" / "results"


def test_missing_weights_message_says_what_to_run():
    with pytest.raises(WeightsNotFoundError) as err:
        wm.resolve_weights("total-fast")
    msg = str(err.value)
    assert "medseg weights download total-fast" in msg
    assert "Dataset297_TotalSegmentator_total_3mm_1559subj" in msg
    assert "TOTALSEG_WEIGHTS_PATH" in msg and "--weights" in msg
    assert not wm.installed("total-fast")


def test_manual_model_message_says_import():
    with pytest.raises(WeightsNotFoundError, match=r"medseg weights import 3dsam-adapter-kits PATH"):
        wm.resolve_weights("3dsam-adapter-kits")


def test_weights_free_model_resolves_to_none():
    assert wm.resolve_weights("hu-tissue") is None
    assert wm.installed("hu-tissue")


def test_totalsegmentator_folder_is_used(tmp_path):
    card = get_card("total-fast")
    fake_dataset(tmp_path / "totalseg", card.files[0].target, card.model_folder_name)
    assert wm.resolve_weights("total-fast") == tmp_path / "totalseg"
    assert wm.installed("total-fast")
    folder = wm.dataset_folder("total-fast")
    assert folder.name == card.model_folder_name and folder.is_dir()


def test_cache_wins_over_totalsegmentator_and_explicit_wins_over_both(tmp_path):
    card = get_card("total-fastest")
    target, mf = card.files[0].target, card.model_folder_name
    fake_dataset(tmp_path / "totalseg", target, mf)
    fake_dataset(tmp_path / "cache" / "totalsegmentator", target, mf)
    assert wm.resolve_weights(card) == tmp_path / "cache" / "totalsegmentator"
    fake_dataset(tmp_path / "mine", target, mf)
    assert wm.resolve_weights(card, tmp_path / "mine") == tmp_path / "mine"
    # The dataset folder itself and the trained-model folder are accepted too.
    assert wm.resolve_weights(card, tmp_path / "mine" / target) == tmp_path / "mine"
    assert wm.resolve_weights(card, tmp_path / "mine" / target / mf) == tmp_path / "mine"


def test_multi_part_needs_every_part(tmp_path):
    card = get_card("total")
    root = tmp_path / "cache" / "totalsegmentator"
    for part in card.parts[:4]:
        fake_dataset(root, part.folder, card.model_folder_name)
    with pytest.raises(WeightsNotFoundError, match="Dataset295"):
        wm.resolve_weights("total")
    fake_dataset(root, card.parts[4].folder, card.model_folder_name)
    assert wm.resolve_weights("total") == root
    assert wm.dataset_folder("total", part=293).parent.name == card.parts[2].folder


def test_incomplete_explicit_folder_names_the_missing_file(tmp_path):
    card = get_card("total-fast")
    d = fake_dataset(tmp_path / "mine", card.files[0].target, card.model_folder_name)
    (d / "fold_0" / "checkpoint_final.pth").unlink()
    with pytest.raises(WeightsNotFoundError, match=r"fold_0[/\\]checkpoint_final.pth is missing"):
        wm.resolve_weights(card, tmp_path / "mine")


def test_partial_download_file_is_never_taken_for_weights(tmp_path):
    card = get_card("sam-med3d")
    root = wm.install_root(card)
    root.mkdir(parents=True)
    (root / "sam_med3d.pth.part").write_bytes(b"half")
    assert not wm.installed(card)
    (root / "sam_med3d.pth").write_bytes(b"whole")
    assert wm.resolve_weights(card) == root / "sam_med3d.pth"


def test_import_checkpoint_file_and_folder(tmp_path):
    ckpt = tmp_path / "dl" / "sam_med3d_turbo.pth"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"weights")
    path = wm.import_weights("sam-med3d-turbo", ckpt)
    assert path == wm.install_root("sam-med3d-turbo") / "sam_med3d_turbo.pth"
    assert path.read_bytes() == b"weights"
    card = get_card("total-fast")
    fake_dataset(tmp_path / "ts", card.files[0].target, card.model_folder_name)
    root = wm.import_weights("total-fast", tmp_path / "ts")
    assert root == wm.install_root(card) and wm.installed("total-fast")


def test_import_with_link(tmp_path):
    card = get_card("total-fastest")
    fake_dataset(tmp_path / "ts", card.files[0].target, card.model_folder_name)
    root = wm.import_weights(card, tmp_path / "ts", link=True)
    assert (root / card.files[0].target).is_symlink()


def test_import_refuses_a_wrong_layout(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError, match="Expected a folder containing Dataset297"):
        wm.import_weights("total-fast", tmp_path / "empty")
    assert not wm.install_root("total-fast").exists() or not any(wm.install_root("total-fast").iterdir())


def test_import_refuses_a_published_checksum_mismatch(tmp_path):
    card = ModelCard(name="t", kind="sam-med3d", task="t", description="t",
                     files=(RemoteFile(url="https://example.org/m.pth", target="m.pth",
                                       sha256="0" * 64),), checkpoint="m.pth", licence="x")
    f = tmp_path / "m.pth"
    f.write_bytes(b"abc")
    with pytest.raises(DownloadError, match="published sha256"):
        wm.import_weights(card, f)


def test_describe_reports_installation_and_source(tmp_path):
    row = wm.describe("total-fast")
    assert row["installed"] is False and row["source"].startswith("https://")
    assert row["sha256"] == "trust on first use"
    assert wm.describe("hu-tissue")["installed"] is True
    assert wm.describe("3dsam-adapter-lits")["source"] == "manual download"
