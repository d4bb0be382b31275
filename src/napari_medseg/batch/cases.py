"""Which cases a cohort holds: a folder, a glob or a CSV manifest -> a list of :class:`Case`.

- a **folder**: every NIfTI/NRRD/MetaImage file directly inside it and every subfolder
  holding a DICOM series is a case (hidden entries, 3D Slicer ``.seg.nrrd`` label maps
  and JSON sidecars are not);
- a **glob** (``'scans/*/ct.nii.gz'``, ``**`` allowed): every match that is an image file
  or a DICOM folder;
- a **CSV manifest** (``*.csv``): ``case_id,path`` per line (a header line starting
  with ``case_id`` is optional); relative paths are relative to the manifest's folder.

Without a manifest a case's id is its file name without extensions (``case1.nii.gz`` ->
``case1``) or its DICOM folder's name; a glob that matches ``a/ct.nii.gz`` and
``b/ct.nii.gz`` gives the same id twice, which is refused (use a manifest). Ids name the
output files, so they must be usable file names, and two ids that differ only in case are
refused too (they would collide on macOS and Windows).

A manifest line whose file is missing is kept as a case that fails with a message (the
other cases run, and the run ends with a non-zero status listing it); a malformed
manifest (no path, empty id) is refused before anything runs.
"""

from __future__ import annotations

import csv
import glob as _glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Union

from ..errors import InvalidInputError
from ..io.dicom import folder_has_dicom
from ..io.formats import EXTENSIONS, SUPPORTED_TEXT, extension_of, looks_like_dicom, strip_extension

PathLike = Union[str, os.PathLike]

__all__ = ["Case", "discover_cases", "check_case_id"]

#: Characters a case id may hold (it names ``labels/<case_id>.<ext>`` and its records).
_ID_OK = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+=@ -]*$")
#: Label-map files found beside images in cohort folders (never cases).
_NOT_CASES = (".seg.nrrd",)


@dataclass(frozen=True)
class Case:
    """One scan of a cohort.

    Attributes
    ----------
    case_id : str
        Names the outputs (``labels/<case_id>.<ext>``) and the results row.
    path : str
        The image file or DICOM series folder (absolute).
    problem : str or None
        Why this case cannot run (a manifest entry whose file is missing); it then
        becomes one ``error`` row without stopping the others.
    """

    case_id: str
    path: str
    problem: Optional[str] = None


def check_case_id(case_id: str, where: str) -> str:
    """Return ``case_id`` stripped, or refuse one that cannot name a file.

    Raises
    ------
    InvalidInputError
        Empty ids, path separators, ``..``, leading dots or control characters,
        naming ``where`` the id came from.
    """
    text = str(case_id).strip()
    if not text:
        raise InvalidInputError(f"{where}: the case id is empty; every case needs an id")
    if not _ID_OK.match(text) or ".." in text:
        raise InvalidInputError(
            f"{where}: case id {text!r} cannot name an output file; use letters, digits and "
            "_ . - + = @ or spaces (no path separators, no leading dot, no '..')")
    return text


def _is_image_file(path: Path) -> bool:
    name = path.name
    if name.startswith(".") or not path.is_file():
        return False
    if extension_of(name, _NOT_CASES):
        return False
    ext = extension_of(name)
    return ext is not None and EXTENSIONS[ext] != "dicom"


def _id_from_path(path: Path) -> str:
    return strip_extension(path.name) if path.is_file() else path.name


def _from_folder(folder: Path) -> tuple:
    cases, notes, loose_dicom = [], [], 0
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if folder_has_dicom(entry):
                cases.append(entry)
        elif _is_image_file(entry):
            cases.append(entry)
        elif entry.is_file() and looks_like_dicom(entry):
            loose_dicom += 1
    if loose_dicom:
        notes.append(f"{loose_dicom} DICOM file(s) directly inside {folder} were not taken as "
                     "cases: put each series in its own subfolder (one case per folder)")
    return cases, notes


def _from_glob(pattern: str) -> list:
    out = []
    for match in sorted(_glob.glob(os.path.expanduser(pattern), recursive=True)):
        p = Path(match)
        if _is_image_file(p) or (p.is_dir() and folder_has_dicom(p)):
            out.append(p)
    return out


def _from_manifest(manifest: Path) -> List[Case]:
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read the manifest {manifest}: {exc}") from None
    rows = list(csv.reader(text.splitlines()))
    cases = []
    for number, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if number == 1 and cells[0].lower() == "case_id":
            continue  # header
        where = f"{manifest} line {number}"
        if len(cells) < 2 or not cells[1]:
            raise InvalidInputError(f"{where}: expected 'case_id,path', got {','.join(row)!r}")
        if any(cells[2:]):
            raise InvalidInputError(
                f"{where}: extra channel paths are not supported: the automatic models take "
                "one image per case; list one image per line (case_id,path)")
        case_id = check_case_id(cells[0], where)
        path = Path(os.path.expanduser(cells[1]))
        if not path.is_absolute():
            path = manifest.parent / path
        path = Path(os.path.abspath(path))
        problem = None
        if not path.exists():
            problem = f"{path}: no such file or folder (listed in {where})"
        cases.append(Case(case_id, str(path), problem))
    return cases


def discover_cases(source: PathLike) -> tuple:
    """The cases of a cohort folder, glob or CSV manifest.

    Parameters
    ----------
    source : path-like or str
        A folder, a glob pattern (``*``, ``?``, ``[``, ``**``) or a ``.csv`` manifest.

    Returns
    -------
    cases : list of Case
        In a stable order (the manifest's, else sorted by path).
    notes : list of str
        Things found but not taken (loose DICOM files).

    Raises
    ------
    InvalidInputError
        Nothing found, a missing folder/manifest, a malformed manifest, an id that
        cannot name a file, or duplicate ids (all duplicates and their paths listed).
    """
    text = str(source)
    path = Path(os.path.expanduser(text))
    notes: list = []
    if path.is_file() and path.name.lower().endswith(".csv"):
        cases = _from_manifest(path)
        origin = f"the manifest {path}"
    elif path.is_dir():
        found, notes = _from_folder(path)
        cases = [Case(check_case_id(_id_from_path(p), str(p)), str(Path(os.path.abspath(p))))
                 for p in found]
        origin = f"the folder {path}"
    elif any(ch in text for ch in "*?["):
        cases = [Case(check_case_id(_id_from_path(p), str(p)), str(Path(os.path.abspath(p))))
                 for p in _from_glob(text)]
        origin = f"the pattern {text!r}"
    elif path.exists():
        raise InvalidInputError(
            f"{path} is a file: give a cohort folder, a glob pattern (quote it) or a .csv "
            "manifest of case_id,path lines (for one image use `medseg segment`)")
    else:
        raise InvalidInputError(f"{path}: no such folder or manifest (INPUT is a folder, a "
                                "quoted glob pattern or a .csv manifest)")
    if not cases:
        raise InvalidInputError(
            f"{origin} holds no cases: expected {SUPPORTED_TEXT} files"
            + (" or DICOM series subfolders" if path.is_dir() else ""))
    _refuse_duplicates(cases, origin)
    return cases, notes


def _refuse_duplicates(cases: List[Case], origin: str) -> None:
    seen: dict = {}
    for case in cases:
        seen.setdefault(case.case_id.lower(), []).append(case)
    dups = {k: v for k, v in seen.items() if len(v) > 1}
    if not dups:
        return
    lines = []
    for group in list(dups.values())[:10]:
        lines.append(", ".join(f"{c.case_id!r} ({c.path})" for c in group))
    more = f"; and {len(dups) - 10} more" if len(dups) > 10 else ""
    raise InvalidInputError(
        f"duplicate case ids in {origin} (ids name the output files; ids differing only in "
        f"case count as the same): " + "; ".join(lines) + more
        + ". Nothing was run: give each case a unique id with a CSV manifest (case_id,path)")
