"""Untrusted weights: https only, sha256 before use, no partial downloads, safe archives.

Everything runs offline: downloads go through a fake opener that serves bytes (or fails
the way a network does), and archives are crafted in the tests.
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from napari_medseg.errors import Cancelled, DownloadError
from napari_medseg.models import weights as wm
from napari_medseg.models.archive import check_archive, safe_extract
from napari_medseg.models.registry import ModelCard, RemoteFile
from napari_medseg.progress import CancelToken


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_WEIGHTS_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "totalseg"))


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


# ------------------------------------------------------------------ crafted archives
def _zip_with(entries) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


def _tar_with(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _tarinfo(name, type_=tarfile.REGTYPE, size=0, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = type_
    info.size = size
    info.linkname = linkname
    return info


ZIP_CASES = [
    ("absolute path", [("/etc/cron.d/evil", b"x", None)], "absolute path"),
    ("windows drive", [("C:\\Windows\\evil.dll", b"x", None)], "absolute path"),
    ("dot-dot", [("model/../../evil", b"x", None)], "path traversal"),
    ("backslash dot-dot", [("model\\..\\..\\evil", b"x", None)], "path traversal"),
    ("symlink", [("model/link", b"/etc/passwd", stat.S_IFLNK | 0o777)], "symbolic link"),
    ("fifo", [("model/pipe", b"", stat.S_IFIFO | 0o644)], "special file"),
]

TAR_CASES = [
    ("absolute path", [(_tarinfo("/tmp/evil", size=1), b"x")], "absolute path"),
    ("dot-dot", [(_tarinfo("a/../../evil", size=1), b"x")], "path traversal"),
    ("symlink", [(_tarinfo("a/link", tarfile.SYMTYPE, linkname="/etc/passwd"), None)], "link"),
    ("hardlink", [(_tarinfo("a/hard", tarfile.LNKTYPE, linkname="/etc/passwd"), None)], "link"),
    ("char device", [(_tarinfo("a/dev", tarfile.CHRTYPE), None)], "special file"),
    ("block device", [(_tarinfo("a/blk", tarfile.BLKTYPE), None)], "special file"),
    ("fifo", [(_tarinfo("a/fifo", tarfile.FIFOTYPE), None)], "special file"),
]


@pytest.mark.parametrize("case, entries, message", ZIP_CASES, ids=[c[0] for c in ZIP_CASES])
def test_crafted_zip_is_refused_and_nothing_written(case, entries, message, tmp_path):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(_zip_with([("model/ok.txt", b"ok", None)] + entries))
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("old")
    with pytest.raises(DownloadError, match=message):
        safe_extract(archive, dest)
    with pytest.raises(DownloadError, match=message):
        check_archive(archive)
    assert sorted(p.name for p in dest.iterdir()) == ["keep.txt"]
    assert (dest / "keep.txt").read_text() == "old"


@pytest.mark.parametrize("case, members, message", TAR_CASES, ids=[c[0] for c in TAR_CASES])
def test_crafted_tar_is_refused_and_nothing_written(case, members, message, tmp_path):
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(_tar_with([(_tarinfo("a/ok.txt", size=2), b"ok")] + members))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(DownloadError, match=message):
        safe_extract(archive, dest)
    assert list(dest.iterdir()) == []


def test_good_tar_and_zip_extract(tmp_path):
    tar = tmp_path / "good.tar.gz"
    tar.write_bytes(_tar_with([(_tarinfo("pkg", tarfile.DIRTYPE), None),
                               (_tarinfo("pkg/a.txt", size=3), b"abc")]))
    assert safe_extract(tar, tmp_path / "d1") == ["pkg"]
    assert (tmp_path / "d1" / "pkg" / "a.txt").read_bytes() == b"abc"
    z = tmp_path / "good.zip"
    z.write_bytes(_zip_with([("pkg/./b.txt", b"b", None)]))
    assert safe_extract(z, tmp_path / "d2") == ["pkg"]
    assert (tmp_path / "d2" / "pkg" / "b.txt").read_bytes() == b"b"


def test_not_an_archive_is_refused(tmp_path):
    bad = tmp_path / "x.zip"
    bad.write_bytes(b"<html>rate limited</html>")
    with pytest.raises(DownloadError, match="not a zip or tar archive"):
        safe_extract(bad, tmp_path / "d")
