"""Resume: settings fingerprints, input hashes and done-records.

A case is done only when **all** of these hold:

- ``OUTDIR/records/<case_id>.json`` exists (written after the label file, atomically);
- its input sha256 equals the input's sha256 now;
- its settings fingerprint equals this run's (model, model files, options);
- the label file exists with the size and sha256 the record holds (and its names
  sidecar exists), so a truncated, replaced or half-written output never counts.

Hashing every input of a large cohort on each rerun would take minutes, so a record
also keeps each input file's size and modification time: when they are unchanged the
recorded sha256 is trusted (as rsync and git do); when they changed the file is hashed
again and the case reruns only if the content differs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from ..io.atomic import atomic_write_text
from ..io.formats import DETACHED, detached_data_file

__all__ = ["Settings", "model_identity", "input_files_of", "stat_signature", "sha256_of_input",
           "sha256_of_file", "record_path", "read_record", "write_record", "record_matches",
           "refresh_stat"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Settings:
    """What decides a case's output (the fingerprint) and how rows are made.

    Attributes
    ----------
    model : str
        Registry name or nnU-Net model folder (as for ``medseg segment``).
    weights, device, roi_subset, channel
        As for ``medseg segment``.
    runtime : str
        What runs the network on a CPU (``auto``, ``openvino``, ``torch``; as for
        ``medseg segment --runtime``). In the fingerprint: the runtimes agree to float
        rounding, not voxel for voxel.
    ext : str
        Output extension (``.nii.gz``, ``.nrrd``, ``.mha``, ``.seg.nrrd``).
    stats : bool
        Add each structure's volume and mean/std intensity to the rows.
    confidence : bool
        Add each structure's confidence figures and review flag to the rows
        (:mod:`napari_medseg.analysis.confidence`).
    temperature : float, optional
        Softmax temperature of the confidence (None: the model's).
    review_thresholds : dict, optional
        :class:`~napari_medseg.analysis.confidence.ReviewThresholds` fields (None: defaults).
    model_id : dict
        What identifies the model's files (filled by :func:`model_identity`).
    """

    model: str = "hu-tissue"
    weights: Optional[str] = None
    device: str = "auto"
    roi_subset: Optional[tuple] = None
    channel: Optional[int] = None
    runtime: str = "auto"
    ext: str = ".nii.gz"
    stats: bool = False
    confidence: bool = False
    temperature: Optional[float] = None
    review_thresholds: Optional[dict] = None
    model_id: dict = field(default_factory=dict)

    def fingerprint(self) -> str:
        """sha256 (16 hex digits) of everything that changes the label files (and, with
        ``confidence``, the confidence figures: temperature and review thresholds)."""
        from .. import __version__

        doc = {"model": self.model_id or {"name": self.model}, "weights": self.weights,
               "device": self.device, "roi_subset": list(self.roi_subset or []) or None,
               "channel": self.channel, "ext": self.ext, "medseg": __version__,
               "runtime": self.runtime}
        if self.confidence:
            # only when on: a run without it keeps the fingerprint (and the done cases) it had
            doc["confidence"] = {"temperature": self.temperature,
                                 "review": dict(sorted((self.review_thresholds or {}).items()))}
        text = json.dumps(doc, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["roi_subset"] = list(self.roi_subset) if self.roi_subset else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Settings":
        d = dict(d)
        if d.get("roi_subset"):
            d["roi_subset"] = tuple(d["roi_subset"])
        return cls(**d)


def model_identity(model: str, weights: Optional[str] = None) -> dict:
    """What identifies a model's files, for the fingerprint.

    A model folder: the content hash of its ``plans.json`` and ``dataset.json`` and the
    size and modification time of each checkpoint (retraining changes them). A registry
    model: its name and where its weights were found.

    Raises
    ------
    InvalidInputError, WeightsNotFoundError
        As :func:`~napari_medseg.inference.segment.check_segment_options` and
        :func:`~napari_medseg.models.weights.resolve_weights` (before any case runs).
    """
    from ..inference.segment import resolve_model

    kind, target = resolve_model(model)
    if kind == "folder":
        from ..models.nnunet.folder import trained_model_folder

        folder = trained_model_folder(target)
        files = {}
        for p in sorted(folder.rglob("*")):
            if not p.is_file() or p.name.startswith("."):
                continue
            rel = p.relative_to(folder).as_posix()
            if p.suffix == ".json":
                files[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif p.suffix in (".pth", ".pt"):
                st = p.stat()
                files[rel] = [st.st_size, st.st_mtime_ns]
        return {"folder": str(folder.resolve()), "files": files}
    from ..models import weights as wm

    root = wm.resolve_weights(target, weights)
    return {"name": target.name, "weights": str(root) if root is not None else None}


def input_files_of(path: str) -> list:
    """The files a case reads: the image (and a detached header's data file), or every
    file of a DICOM folder, sorted."""
    p = Path(path)
    if p.is_dir():
        return sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith("."))
    out = [p]
    if p.name.lower().endswith(DETACHED):
        data = detached_data_file(p)
        if data and (p.parent / data).is_file():
            out.append(p.parent / data)
    return out


def stat_signature(path: str) -> list:
    """``[[relative name, size, mtime_ns], ...]`` of a case's input files (cheap)."""
    base = Path(path) if Path(path).is_dir() else Path(path).parent
    out = []
    for f in input_files_of(path):
        st = f.stat()
        out.append([f.relative_to(base).as_posix(), st.st_size, st.st_mtime_ns])
    return out


def _sha256_file(path: Path, h=None):
    h = h or hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h


def sha256_of_input(path: str) -> str:
    """sha256 of a case's input: the file's bytes; for a series (or a detached header
    with its data file) the hash of each file's relative name and bytes in order."""
    files = input_files_of(path)
    if len(files) == 1 and not Path(path).is_dir():
        return _sha256_file(files[0]).hexdigest()
    base = Path(path) if Path(path).is_dir() else Path(path).parent
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(base).as_posix().encode() + b"\0")
        h.update(_sha256_file(f).hexdigest().encode())
    return h.hexdigest()


def sha256_of_file(path) -> str:
    """sha256 of one file's bytes."""
    return _sha256_file(Path(path)).hexdigest()


def record_path(outdir, case_id: str) -> Path:
    """``OUTDIR/records/<case_id>.json``."""
    return Path(outdir) / "records" / f"{case_id}.json"


def read_record(outdir, case_id: str) -> Optional[dict]:
    """The done-record of a case, or None (missing or unreadable: the case reruns)."""
    try:
        return json.loads(record_path(outdir, case_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_record(outdir, case_id: str, record: dict) -> Path:
    """Write a done-record atomically (after the label file it describes)."""
    return atomic_write_text(record_path(outdir, case_id), json.dumps(record, indent=1, default=str) + "\n")


def _output_intact(outdir, record: dict) -> bool:
    from ..io.label_table import sidecar_path

    out = Path(outdir) / str(record.get("output", ""))
    try:
        if not out.is_file() or out.stat().st_size != record.get("output_size"):
            return False
        if not sidecar_path(out).is_file():
            return False
        return sha256_of_file(out) == record.get("output_sha256")
    except OSError:
        return False


def record_matches(outdir, record: Optional[dict], *, case_path: str, fingerprint: str,
                   want_stats: bool, input_sha256: Optional[str] = None,
                   stat_only: bool = False) -> Optional[bool]:
    """Whether ``record`` says the case is done for this input and these settings.

    Parameters
    ----------
    outdir : path-like
        The run's output folder.
    record : dict or None
        From :func:`read_record`.
    case_path, fingerprint, want_stats
        The case's input, this run's settings fingerprint, whether rows need statistics.
    input_sha256 : str, optional
        The input's hash, when already computed.
    stat_only : bool
        Judge the input by size and modification time only; return None when they
        differ from the record's (the caller hashes the input and asks again).

    Returns
    -------
    bool or None
        True: done (skip); False: run it; None: undecided without hashing.
    """
    if not record or record.get("fingerprint") != fingerprint:
        return False
    if want_stats and not record.get("row", {}).get("has_stats"):
        return False
    if input_sha256 is None:
        try:
            same_stat = stat_signature(case_path) == record.get("input_stat")
        except OSError:
            return False
        if not same_stat:
            if stat_only:
                return None
            input_sha256 = sha256_of_input(case_path)
        else:
            input_sha256 = record.get("input_sha256")
    if input_sha256 != record.get("input_sha256"):
        return False
    return _output_intact(outdir, record)


def refresh_stat(outdir, case_id: str, record: dict, case_path: str) -> None:
    """After a content match with a changed modification time: remember the new one,
    so the next rerun needs no hash."""
    try:
        record = dict(record, input_stat=stat_signature(case_path))
        write_record(outdir, case_id, record)
    except OSError:
        pass

