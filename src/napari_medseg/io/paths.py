"""The output guard: no command or widget writes over one of its own inputs.

``medseg segment a.nii.gz -o a.nii.gz`` would replace the CT with its labels. Every
command and widget that writes files calls :func:`check_outputs` with the paths it is
about to write and the paths it read, *before* any work, so the refusal costs nothing
and nothing is written.

Two paths are "the same" when :func:`os.path.samefile` says so (both exist: catches
symlinks and hard links), else when their resolved forms are equal (``..``, relative
paths, symlinked folders). An input folder (a DICOM series, a training set) protects
everything inside it; an output folder that would be replaced protects the inputs inside
it. An input's companion files count as inputs: the data file of a ``.mhd``/``.nhdr``
header and the names sidecar (``labels.json``) of a label file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, List, Optional, Union

from ..errors import InvalidInputError
from .formats import DETACHED, EXTENSIONS, detached_data_file, extension_of
from .label_table import sidecar_path

PathLike = Union[str, os.PathLike]

__all__ = ["check_outputs", "input_files"]


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(os.path.abspath(os.path.expanduser(str(path)))))


def input_files(path: PathLike) -> List[Path]:
    """``path`` and the companion files that belong to it, as far as they exist.

    Parameters
    ----------
    path : path-like
        An input file or folder.

    Returns
    -------
    list of pathlib.Path
        ``path`` itself, the data file named by a ``.mhd``/``.nhdr`` header, and the
        JSON names sidecar of a label file (only those that exist, beyond ``path``).
    """
    p = Path(os.path.expanduser(str(path)))
    out = [p]
    if p.is_file():
        if p.name.lower().endswith(DETACHED):
            data = detached_data_file(p)
            if data:
                out.append(p.parent / data)
        try:
            side = sidecar_path(p)
        except Exception:  # noqa: BLE001 - an odd name simply has no sidecar
            side = None
        if side is not None and side != p and side.is_file():
            out.append(side)
    return out


def _inside(child: Path, folder: Path) -> bool:
    try:
        child.relative_to(folder)
    except ValueError:
        return False
    return True


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return _resolved(a) == _resolved(b)


def _clash(output: Path, source: Path) -> Optional[str]:
    """How writing ``output`` would destroy ``source`` (None if it would not)."""
    if _same(output, source):
        if _resolved(output) != _resolved(source):
            return f"it is the input {source} (a hard link to it)"
        if os.path.abspath(output) != os.path.abspath(source):
            if _resolved(output.parent) != _resolved(source.parent) or output.is_symlink() \
                    or source.is_symlink():
                return f"it is the input {source} (through a symbolic link)"
            return f"it is the input {source} (the same file, written another way)"
        return f"it is the input {source}"
    if source.is_dir() and _inside(_resolved(output), _resolved(source)):
        return f"it lies inside the input folder {source}"
    if output.is_dir() and _inside(_resolved(source), _resolved(output)):
        return f"it is a folder holding the input {source}, which would be lost"
    return None


def check_outputs(outputs: Iterable[Optional[PathLike]], inputs: Iterable[Optional[PathLike]],
                  *, what: str = "output") -> None:
    """Refuse to write any of ``outputs`` when it is, or leads to, one of ``inputs``.

    Parameters
    ----------
    outputs : iterable of path-like or None
        Files (or folders) about to be written; ``None`` entries are skipped.
    inputs : iterable of path-like or None
        Files or folders that were (or will be) read; ``None`` entries are skipped. Their
        companions (:func:`input_files`) are protected too.
    what : str
        How the caller names the output in the message (``"-o/--output"``, ``"the CSV"``).

    Raises
    ------
    InvalidInputError
        Naming the output, the input it would overwrite (and how: same file, link,
        inside the input folder) and what to do. Nothing has been written.

    Examples
    --------
    >>> check_outputs(["a.nii.gz"], ["./x/../a.nii.gz"])  # doctest: +SKIP
    InvalidInputError: refusing to write the output a.nii.gz: it would overwrite the input ...
    """
    sources: List[Path] = []
    for item in inputs:
        if item is not None and str(item):
            sources.extend(input_files(item))
    for out in outputs:
        if out is None or not str(out):
            continue
        out_path = Path(os.path.expanduser(str(out)))
        for source in sources:
            why = _clash(out_path, source)
            if why is None:
                continue
            raise InvalidInputError(
                f"refusing to write {what} {out_path}: {why}. Nothing was written; choose an "
                f"output path outside the inputs (e.g. {_suggest(out_path, source, why)})"
            )


def _suggest(path: Path, source: Path, why: str) -> str:
    if why.startswith("it lies inside"):
        path = _resolved(source).parent / path.name  # beside the input folder
    else:
        path = _resolved(path.parent) / path.name
    name = path.name
    ext = extension_of(name, (*EXTENSIONS, ".csv", ".json"), need_stem=False)
    if ext:
        return str(path.with_name(name[: -len(ext)] + "_out" + name[-len(ext):]))
    return str(path.with_name(name + "_out"))
