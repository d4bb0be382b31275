"""Archive extraction of downloaded weights: crafted zip/tar refused with nothing written, good ones extract."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile

import pytest

from napari_medseg.errors import DownloadError
from napari_medseg.models.archive import check_archive, safe_extract


# --- bad input and faults


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
