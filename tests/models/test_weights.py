"""The weights manager: locations, resolution order, messages, import, trust on first use."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from napari_medseg.errors import DownloadError, WeightsNotFoundError
from napari_medseg.errors import Cancelled, DownloadError
from napari_medseg.models import weights as wm
from napari_medseg.models.registry import ModelCard, RemoteFile, get_card
from napari_medseg.progress import CancelToken


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


# --- bad input and faults


class FakeResponse:
    """A urlopen-like response serving ``data``; can break after ``fail_after`` bytes."""

    def __init__(self, data: bytes, url: str, *, length=None, fail_after=None, final_url=None):
        self._buf = io.BytesIO(data)
        self._url = final_url or url
        self._fail_after = fail_after
        self._sent = 0
        self.headers = {"Content-Length": str(len(data) if length is None else length)}

    def read(self, n=-1):
        if self._fail_after is not None and self._sent >= self._fail_after:
            raise ConnectionResetError("connection reset by peer")
        n = min(n, 4096) if n and n > 0 else 4096
        chunk = self._buf.read(n)
        self._sent += len(chunk)
        return chunk

    def geturl(self):
        return self._url

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def opener_for(data: bytes, **kw):
    calls = []

    def _open(url):
        calls.append(url)
        return FakeResponse(data, url, **kw)

    _open.calls = calls
    return _open


def file_card(url="https://example.org/models/m.pth", sha=None, name="test-ckpt") -> ModelCard:
    return ModelCard(name=name, kind="sam-med3d", task="test", description="test",
                     files=(RemoteFile(url=url, target="m.pth", sha256=sha),),
                     checkpoint="m.pth", install_dir=name, licence="test")


def zip_card(sha=None) -> ModelCard:
    return ModelCard(name="test-zip", kind="totalseg", task="test", description="test",
                     classes={1: "a"},
                     files=(RemoteFile(url="https://example.org/Dataset900_x.zip",
                                       target="Dataset900_x", sha256=sha, archive=True),),
                     install_dir="test-zip", licence="test")


def dataset_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        base = "Dataset900_x/nnUNetTrainer__nnUNetPlans__3d_fullres/"
        zf.writestr(base + "dataset.json", json.dumps({"labels": {"background": 0, "a": 1}}))
        zf.writestr(base + "plans.json", "{}")
        zf.writestr(base + "fold_0/checkpoint_final.pth", b"weights")
    return buf.getvalue()


def snapshot(root: Path) -> dict:
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*")) if ".downloads" not in p.parts}


def no_part_files(tmp_path) -> bool:
    return not list((tmp_path / "cache").rglob("*.part"))


# ----------------------------------------------------------------------- https only
@pytest.mark.parametrize("url", [
    "http://example.org/m.pth",
    "file:///etc/passwd",
    "ftp://example.org/m.pth",
    "https:///no-host.pth",
    "example.org/m.pth",
    "HTTP://EXAMPLE.ORG/m.pth",
])
def test_non_https_is_refused_before_any_request(url, tmp_path):
    opener = opener_for(b"data")
    before = snapshot(tmp_path / "cache")
    with pytest.raises(DownloadError, match="only https:// addresses are allowed"):
        wm.download(file_card(url=url), opener=opener)
    assert opener.calls == []
    assert snapshot(tmp_path / "cache") == before


def test_redirect_to_http_is_refused(tmp_path):
    opener = opener_for(b"data", final_url="http://mirror.example.org/m.pth")
    with pytest.raises(DownloadError, match="only https://"):
        wm.download(file_card(), opener=opener)
    assert not wm.installed(file_card()) and no_part_files(tmp_path)


# ------------------------------------------------------------------------ checksums
def test_published_checksum_mismatch_installs_nothing(tmp_path):
    card = file_card(sha=hashlib.sha256(b"the real file").hexdigest())
    with pytest.raises(DownloadError, match="checksum mismatch"):
        wm.download(card, opener=opener_for(b"a tampered file"))
    assert not wm.installed(card)
    assert not (wm.install_root(card) / "m.pth").exists()
    assert no_part_files(tmp_path)


def test_published_checksum_match_installs(tmp_path):
    data = b"the real file"
    card = file_card(sha=hashlib.sha256(data).hexdigest())
    path = wm.download(card, opener=opener_for(data))
    assert path.read_bytes() == data and no_part_files(tmp_path)


def test_trust_on_first_use_records_then_enforces(tmp_path):
    card = file_card()
    wm.download(card, opener=opener_for(b"version 1"))
    record = wm.recorded_hashes()[card.urls[0]]
    assert record["sha256"] == hashlib.sha256(b"version 1").hexdigest()
    installed = (wm.install_root(card) / "m.pth").read_bytes()
    # A later download that serves different bytes is refused and the old file kept.
    with pytest.raises(DownloadError, match="recorded at the first download"):
        wm.download(card, opener=opener_for(b"version 2"), force=True)
    assert (wm.install_root(card) / "m.pth").read_bytes() == installed
    # The same bytes again are accepted.
    wm.download(card, opener=opener_for(b"version 1"), force=True)


def test_already_installed_is_not_downloaded_again():
    card = file_card()
    wm.download(card, opener=opener_for(b"v1"))
    opener = opener_for(b"v1")
    wm.download(card, opener=opener)
    assert opener.calls == []


# ----------------------------------------------------------------- partial downloads
def test_connection_reset_midway_leaves_no_part_file(tmp_path):
    card = file_card()
    with pytest.raises(DownloadError, match="broke off"):
        wm.download(card, opener=opener_for(b"x" * 100_000, fail_after=8192))
    assert not wm.installed(card) and no_part_files(tmp_path)
    assert card.urls[0] not in wm.recorded_hashes()


def test_short_transfer_is_refused(tmp_path):
    card = file_card()
    with pytest.raises(DownloadError, match="incomplete"):
        wm.download(card, opener=opener_for(b"x" * 1000, length=5000))
    assert not wm.installed(card) and no_part_files(tmp_path)


def test_network_error_message_is_actionable(tmp_path):
    def offline(url):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    with pytest.raises(DownloadError, match="medseg weights import"):
        wm.download(file_card(), opener=offline)
    assert no_part_files(tmp_path)


def test_cancel_during_download_installs_nothing(tmp_path):
    token = CancelToken()
    card = file_card()

    def progress(fraction, text):
        if fraction > 0.1:
            token.cancel()

    with pytest.raises(Cancelled):
        wm.download(card, progress=progress, cancel=token, opener=opener_for(b"x" * 200_000))
    assert not wm.installed(card) and no_part_files(tmp_path)


def test_manual_model_cannot_be_downloaded():
    from napari_medseg.errors import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError, match="medseg weights import 3dsam-adapter-colon"):
        wm.download("3dsam-adapter-colon")


# ------------------------------------------------------------ archives via download
def test_zip_archive_download_extracts_dataset(tmp_path):
    card = zip_card()
    root = wm.download(card, opener=opener_for(dataset_zip()))
    assert (root / "Dataset900_x" / "nnUNetTrainer__nnUNetPlans__3d_fullres" / "fold_0"
            / "checkpoint_final.pth").read_bytes() == b"weights"
    assert no_part_files(tmp_path)


def test_archive_without_expected_folder_is_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("something_else/file.txt", "x")
    with pytest.raises(DownloadError, match="did not contain the expected folder"):
        wm.download(zip_card(), opener=opener_for(buf.getvalue()))


def test_unsafe_archive_download_writes_nothing(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("Dataset900_x/ok.txt", "fine")
        zf.writestr("../../escaped.txt", "evil")
    with pytest.raises(DownloadError, match="path traversal"):
        wm.download(zip_card(), opener=opener_for(buf.getvalue()))
    assert not (tmp_path / "escaped.txt").exists()
    assert not (wm.install_root(zip_card()) / "Dataset900_x").exists()
    assert no_part_files(tmp_path)
