"""Safe extraction of downloaded weight archives (zip and tar).

Weights come from the internet; an archive is untrusted input. Before writing anything,
every member is checked, and the whole archive is refused if any member:

- has an absolute path (``/etc/passwd``, ``C:\\...``) or a drive letter;
- contains ``..`` (path traversal) or resolves outside the destination;
- is a symbolic or hard link (zip entries whose Unix mode says symlink, tar ``SYMTYPE`` /
  ``LNKTYPE``), a device, a FIFO or anything else that is not a plain file or folder.

Extraction then goes into a temporary folder next to the destination and is moved into
place only when complete, so a failure leaves no half-extracted model behind.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Optional

from ..errors import Cancelled, DownloadError
from ..progress import CancelLike, ProgressCallback, check_cancel, report

_CHUNK = 1 << 20


def _check_member_name(name: str, archive: Path) -> PurePosixPath:
    """Return the member's relative path, or raise if it could escape the destination."""
    if not name or "\x00" in name:
        raise DownloadError(f"{archive.name}: refused an archive member with an empty or "
                            f"NUL-containing name; the archive is not trusted")
    posix = name.replace("\\", "/")
    win = PureWindowsPath(name)
    if posix.startswith("/") or win.drive or win.root:
        raise DownloadError(f"{archive.name}: refused absolute path {name!r} in the archive; "
                            "the archive is not trusted and nothing was extracted")
    parts = PurePosixPath(posix).parts
    if any(p == ".." for p in parts):
        raise DownloadError(f"{archive.name}: refused path traversal {name!r} ('..') in the "
                            "archive; nothing was extracted")
    clean = [p for p in parts if p not in ("", ".")]
    return PurePosixPath(*clean) if clean else PurePosixPath(".")


def _zip_members(zf: zipfile.ZipFile, archive: Path) -> list:
    out = []
    for info in zf.infolist():
        rel = _check_member_name(info.filename, archive)
        mode = (info.external_attr >> 16) & 0xFFFF
        if mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            kind = "symbolic link" if stat.S_ISLNK(mode) else "special file"
            raise DownloadError(f"{archive.name}: refused {kind} {info.filename!r} in the "
                                "archive; links and device files are never extracted")
        out.append((info, rel, info.is_dir()))
    return out


def _tar_members(tf: tarfile.TarFile, archive: Path) -> list:
    out = []
    for member in tf.getmembers():
        rel = _check_member_name(member.name, archive)
        if member.issym() or member.islnk():
            raise DownloadError(f"{archive.name}: refused link {member.name!r} -> "
                                f"{member.linkname!r} in the archive; links are never extracted")
        if not (member.isfile() or member.isdir()):
            raise DownloadError(f"{archive.name}: refused special file {member.name!r} (device, "
                                "FIFO or other) in the archive")
        out.append((member, rel, member.isdir()))
    return out


def check_archive(path: Path) -> list:
    """List the member paths of a zip or tar archive, raising if any is unsafe.

    Raises
    ------
    DownloadError
        For unsafe members or a file that is neither a readable zip nor tar archive.
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return [str(rel) for _, rel, _ in _zip_members(zf, path)]
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as tf:
            return [str(rel) for _, rel, _ in _tar_members(tf, path)]
    raise DownloadError(f"{path.name} is not a zip or tar archive (corrupt or wrong file); "
                        "delete it and download again")


def safe_extract(archive: Path, dest: Path, *, progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelLike] = None) -> list:
    """Extract ``archive`` into ``dest`` after checking every member; return top-level names.

    Members are written into a temporary folder inside ``dest`` and each top-level entry is
    then moved into ``dest`` (replacing an older copy of the same name), so a failed or
    cancelled extraction leaves ``dest`` as it was.
    """
    archive = Path(archive)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                members = _zip_members(zf, archive)
                _write_members(members, staging, lambda m: zf.open(m), progress, cancel)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = _tar_members(tf, archive)
                _write_members(members, staging, lambda m: tf.extractfile(m), progress, cancel)
        else:
            raise DownloadError(f"{archive.name} is not a zip or tar archive (corrupt or wrong "
                                "file); delete it and download again")
        tops = sorted(p.name for p in staging.iterdir())
        for name in tops:
            target = dest / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(staging / name, target)
        return tops
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_members(members, staging: Path, opener, progress, cancel) -> None:
    root = staging.resolve()
    total = max(1, len(members))
    for i, (member, rel, is_dir) in enumerate(members):
        check_cancel(cancel)
        if str(rel) == ".":
            continue
        target = (staging / rel).resolve()
        # Belt and braces: the name checks above already exclude escapes.
        if root != target and root not in target.parents:
            raise DownloadError(f"refused archive member {rel} resolving outside the folder")
        if is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        src = opener(member)
        if src is None:  # pragma: no cover - tar regular files always open
            raise DownloadError(f"cannot read archive member {rel}")
        with src, open(target, "wb") as out:
            while True:
                chunk = src.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
        report(progress, (i + 1) / total, f"extracting {rel}")


__all__ = ["check_archive", "safe_extract", "Cancelled"]
