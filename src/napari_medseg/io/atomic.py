"""Atomic file writing: the old file stays intact until the new one is complete.

:func:`atomic_write` yields a temporary path inside a hidden staging folder created in
the destination's own folder (same file system, so the final move is an
:func:`os.replace`, atomic on POSIX and Windows). The staging path keeps the
destination's file name, so writers that pick the format from the extension, or that
write companion files (MetaImage ``.mhd`` + ``.raw``, a JSON sidecar) next to it,
work unchanged. On success every file in the staging folder is moved into place,
companions first and the main file last; on any exception nothing is moved and the
staging folder is removed.

A multi-file result (``.mhd`` + ``.raw``) cannot be replaced in one atomic step; the
data file is moved before the header that references it, so a reader never sees a
new header pointing at missing data (the MetaImage writer also gives a replacing data
file a fresh name, so an old header never meets new data).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Union

from ..errors import ImageReadError

_STAGING_PREFIX = ".medseg-tmp-"


@contextlib.contextmanager
def atomic_write(path: Union[str, os.PathLike]) -> Iterator[Path]:
    """Context manager yielding a temporary path to write ``path`` through.

    Parameters
    ----------
    path : path-like
        Final destination. Its parent folder is created if missing.

    Yields
    ------
    pathlib.Path
        ``<parent>/.medseg-tmp-XXXX/<name>``: write the file (and any companion
        files, same folder) there.

    Raises
    ------
    ImageReadError
        When the destination folder cannot be created or written to (the message
        names it).

    Examples
    --------
    >>> with atomic_write("out/labels.nii.gz") as tmp:  # doctest: +SKIP
    ...     sitk.WriteImage(image, str(tmp))
    """
    final = Path(path)
    parent = final.parent if str(final.parent) else Path(".")
    if final.is_dir():
        raise ImageReadError(f"cannot write {final}: it is a folder; give a file name")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=parent))
    except OSError as exc:
        raise ImageReadError(f"cannot write into {parent}: {exc.strerror or exc}") from None
    tmp = staging / final.name
    try:
        yield tmp
        if not tmp.exists():
            raise ImageReadError(f"writing {final} produced no file; nothing was changed")
        companions = sorted(p for p in staging.iterdir() if p.name != final.name)
        for item in companions:
            os.replace(item, parent / item.name)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def atomic_write_text(path: Union[str, os.PathLike], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    final = Path(path)
    with atomic_write(final) as tmp:
        tmp.write_text(text, encoding=encoding)
    return final
