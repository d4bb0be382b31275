"""Autosave of edited label maps to a recovery folder, and restoring from it.

A crash (or a killed process) must never lose an afternoon of editing. Snapshots are
written to ``MEDSEG_RECOVERY_DIR`` (default ``~/.cache/napari-medseg/recovery``) as

``<dir>/<session>/<layer>/<seq>.npz``  the label array (compressed), and
``<dir>/<session>/<layer>/<seq>.json`` layer name, geometry, label table, time, and
the SHA-256 of the ``.npz``.

Both files are written to a temporary name, flushed to disk and renamed into place,
the array first and the JSON last: the JSON is the commit record. A snapshot whose
JSON is missing (the process died mid-write) or whose array does not match the
recorded checksum is never offered for restore, so a restore always yields a
complete, intact snapshot. Only the newest ``keep`` snapshots per layer are kept.

Saving is skipped when the data did not change since the last snapshot: callers can
pass a cheap ``version`` (e.g. a counter bumped by napari's paint/data events);
otherwise a BLAKE2 digest of the array is compared (~0.1 s for 512x512x300 uint8).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

import numpy as np

from ..errors import ImageReadError, InvalidInputError
from ..io.arrays import fingerprint  # one home for array digests; re-exported here

log = logging.getLogger(__name__)

FORMAT = "napari-medseg-recovery"
FORMAT_VERSION = 1
_TMP_PREFIX = ".tmp-"


def recovery_dir() -> Path:
    """The recovery folder: ``$MEDSEG_RECOVERY_DIR`` or ``~/.cache/napari-medseg/recovery``."""
    env = os.environ.get("MEDSEG_RECOVERY_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "napari-medseg" / "recovery"


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("._") or "labels"
    return slug[:60]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(path: Path, write: Callable[[Any], None]) -> str:
    """Write through a temporary file in the same folder, fsync, rename; return its SHA-256."""
    tmp = path.with_name(f"{_TMP_PREFIX}{os.getpid()}-{path.name}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        sha = _sha256(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return sha


@dataclass(frozen=True)
class Snapshot:
    """One recoverable snapshot (what :func:`list_recoverable` returns)."""

    id: str
    layer_name: str
    timestamp: str
    created: float
    shape: tuple
    path: Path
    meta_path: Path
    extra: dict = field(default_factory=dict)

    def describe(self) -> str:
        """One line for a "Restore..." list."""
        return f"{self.layer_name} — {self.timestamp} — {'x'.join(map(str, self.shape))} ({self.id})"


class Autosaver:
    """Writes snapshots of label maps when they changed, keeping the newest ``keep``.

    Parameters
    ----------
    directory : path, optional
        Recovery folder (default :func:`recovery_dir`).
    keep : int
        Snapshots kept per layer (older ones are deleted after a new one is complete).
    session : str, optional
        Sub-folder of this run (default: start time and process id), so that two
        napari windows never overwrite each other's snapshots.
    """

    def __init__(self, directory: Union[str, Path, None] = None, keep: int = 5,
                 session: Optional[str] = None) -> None:
        if int(keep) < 1:
            raise InvalidInputError(f"keep must be >= 1 snapshot, got {keep!r}")
        self.directory = Path(directory) if directory is not None else recovery_dir()
        self.keep = int(keep)
        self.session = _slug(session) if session else time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"
        self._last: dict = {}
        self._seq: dict = {}
        self._lock = threading.Lock()

    @property
    def session_dir(self) -> Path:
        return self.directory / self.session

    def changed(self, layer_name: str, array: np.ndarray, version: Any = None) -> bool:
        """Whether ``array`` differs from the last snapshot of ``layer_name``."""
        key = ("v", version) if version is not None else ("h", fingerprint(array))
        return self._last.get(layer_name) != key

    def save(self, layer_name: str, array: np.ndarray, geometry: Optional[dict] = None,
             table: Any = None, *, version: Any = None, force: bool = False,
             extra: Optional[dict] = None) -> Optional[Snapshot]:
        """Snapshot ``array`` unless it is unchanged since the last snapshot.

        Parameters
        ----------
        layer_name : str
            Name of the napari layer (restored under the same name).
        array : numpy.ndarray
            Integer label map. It is read, never modified; pass a copy if another
            thread may edit it meanwhile.
        geometry : dict, optional
            :meth:`Volume.geometry_dict` of the labels (restored exactly).
        table : LabelTable or dict, optional
            Names and colours.
        version : hashable, optional
            A cheap change token (e.g. an edit counter); when given, the array is not
            hashed.
        force : bool
            Save even if unchanged.
        extra : dict, optional
            JSON-serialisable data stored with the snapshot.

        Returns
        -------
        Snapshot or None
            ``None`` when nothing changed.
        """
        arr = np.asarray(array)
        if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
            raise InvalidInputError(f"autosave expects an integer label array, got dtype {arr.dtype}")
        key = ("v", version) if version is not None else ("h", fingerprint(arr))
        with self._lock:
            if not force and self._last.get(layer_name) == key:
                return None
            folder = self.session_dir / _slug(layer_name)
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ImageReadError(
                    f"cannot create the recovery folder {folder}: {exc.strerror or exc}; "
                    "set MEDSEG_RECOVERY_DIR to a writable folder"
                ) from None
            seq = self._next_seq(layer_name, folder)
            npz = folder / f"{seq:06d}.npz"
            meta = folder / f"{seq:06d}.json"
            sha = _write_atomic(npz, lambda fh: np.savez_compressed(fh, labels=arr))
            if table is not None and hasattr(table, "to_dict"):
                table = table.to_dict()
            created = time.time()
            doc = {
                "format": FORMAT, "version": FORMAT_VERSION,
                "layer_name": str(layer_name), "session": self.session, "pid": os.getpid(),
                "created": created,
                "timestamp": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created)),
                "shape": [int(s) for s in arr.shape], "dtype": arr.dtype.str,
                "array_file": npz.name, "sha256": sha,
                "geometry": geometry, "label_table": table, "extra": dict(extra or {}),
            }
            text = json.dumps(doc, indent=1).encode("utf-8")
            _write_atomic(meta, lambda fh: fh.write(text))
            self._last[layer_name] = key
            self._prune(folder)
            return _snapshot_from(meta, doc, self.directory)

    def _next_seq(self, layer_name: str, folder: Path) -> int:
        if layer_name not in self._seq:
            existing = [int(p.stem) for p in folder.glob("[0-9]*.json") if p.stem.isdigit()]
            self._seq[layer_name] = max(existing, default=0)
        self._seq[layer_name] += 1
        return self._seq[layer_name]

    def _prune(self, folder: Path) -> None:
        metas = sorted((p for p in folder.glob("[0-9]*.json") if p.stem.isdigit()), key=lambda p: int(p.stem))
        for old in metas[: -self.keep]:
            old.unlink(missing_ok=True)  # commit record first: never a JSON without data
            old.with_suffix(".npz").unlink(missing_ok=True)
        for stray in folder.glob(f"{_TMP_PREFIX}*"):
            # temp files of dead writers (not ours: ours are renamed or removed)
            if not stray.name.startswith(f"{_TMP_PREFIX}{os.getpid()}-"):
                stray.unlink(missing_ok=True)

    def clear(self) -> None:
        """Delete this session's snapshots (e.g. after the user saved properly)."""
        with self._lock:
            shutil.rmtree(self.session_dir, ignore_errors=True)
            self._last.clear()
            self._seq.clear()


def _snapshot_from(meta: Path, doc: dict, root: Path) -> Snapshot:
    rel = meta.relative_to(root).with_suffix("")
    return Snapshot(
        id=rel.as_posix(), layer_name=doc["layer_name"], timestamp=doc.get("timestamp", ""),
        created=float(doc.get("created", 0.0)), shape=tuple(doc.get("shape", ())),
        path=meta.with_name(doc["array_file"]), meta_path=meta, extra=dict(doc.get("extra") or {}),
    )


def _read_meta(meta: Path) -> Optional[dict]:
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or "array_file" not in doc:
        return None
    return doc


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def list_recoverable(directory: Union[str, Path, None] = None, *, verify: bool = True) -> list:
    """Complete snapshots in the recovery folder, newest first.

    Parameters
    ----------
    directory : path, optional
        Recovery folder (default :func:`recovery_dir`).
    verify : bool
        Check each array file against its recorded SHA-256 (skip torn/corrupt ones).

    Returns
    -------
    list of Snapshot
    """
    root = Path(directory) if directory is not None else recovery_dir()
    if not root.is_dir():
        return []
    out = []
    for meta in root.glob("*/*/[0-9]*.json"):
        if meta.name.startswith(_TMP_PREFIX):
            continue
        doc = _read_meta(meta)
        if doc is None:
            log.warning("ignoring unreadable recovery record %s", meta)
            continue
        data = meta.with_name(doc["array_file"])
        if not data.is_file() or (verify and _sha256(data) != doc.get("sha256")):
            log.warning("ignoring incomplete snapshot %s", meta)
            continue
        out.append(_snapshot_from(meta, doc, root))
    out.sort(key=lambda s: (s.created, s.id), reverse=True)
    return out


def restore(snapshot_id: Union[str, Snapshot], directory: Union[str, Path, None] = None) -> tuple:
    """Load a snapshot: ``(labels Volume, LabelTable or None, layer name)``.

    Raises
    ------
    ImageReadError
        When the snapshot does not exist or its array does not match its checksum.
    """
    from ..io.label_table import LabelTable
    from ..io.volume import Volume

    root = Path(directory) if directory is not None else recovery_dir()
    sid = snapshot_id.id if isinstance(snapshot_id, Snapshot) else str(snapshot_id)
    if ".." in Path(sid).parts or Path(sid).is_absolute():
        raise InvalidInputError(f"not a snapshot id: {sid!r}")
    meta = root / f"{sid}.json"
    doc = _read_meta(meta)
    if doc is None:
        raise ImageReadError(f"no recoverable snapshot {sid!r} in {root} (see list_recoverable())")
    data = meta.with_name(doc["array_file"])
    if not data.is_file() or _sha256(data) != doc.get("sha256"):
        raise ImageReadError(f"snapshot {sid!r} in {root} is incomplete or damaged; pick an older one")
    with np.load(data, allow_pickle=False) as npz:
        array = npz["labels"]
    geometry = doc.get("geometry")
    metadata = {"medseg_recovered_from": sid}
    if geometry:
        volume = Volume.from_geometry_dict(array, geometry, metadata=metadata)
    else:
        volume = Volume(array, metadata=metadata)
    table = LabelTable.from_dict(doc["label_table"]) if doc.get("label_table") else None
    return volume, table, doc["layer_name"]


class PeriodicAutosaver:
    """Calls :meth:`Autosaver.save` every ``interval_s`` seconds from a daemon thread.

    For headless use (scripts, the CLI); the napari widget drives an
    :class:`Autosaver` from a Qt timer instead.

    Parameters
    ----------
    autosaver : Autosaver
    get_states : callable
        Returns an iterable of ``(layer_name, array, geometry, table, version)``; it
        must return copies (or arrays nobody edits meanwhile).
    interval_s : float
        Seconds between checks.
    """

    def __init__(self, autosaver: Autosaver, get_states: Callable[[], Iterable[tuple]],
                 interval_s: float = 60.0) -> None:
        if not float(interval_s) > 0:
            raise InvalidInputError(f"autosave interval must be > 0 s, got {interval_s!r}")
        self.autosaver = autosaver
        self.get_states = get_states
        self.interval_s = float(interval_s)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.errors: list = []

    def tick(self) -> list:
        """Save every changed state now; returns the snapshots written."""
        written = []
        for name, array, geometry, table, version in self.get_states():
            try:
                snap = self.autosaver.save(name, array, geometry, table, version=version)
            except Exception as exc:  # noqa: BLE001 - autosave must never kill the app
                log.exception("autosave of %s failed", name)
                self.errors.append(exc)
                continue
            if snap is not None:
                written.append(snap)
        return written

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.tick()

    def start(self) -> "PeriodicAutosaver":
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="medseg-autosave", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
