"""The weights manager: where model weights live, how they are found, downloaded and checked.

Search order for a model's weights (:func:`resolve_weights`):

1. an explicit ``path`` (``--weights DIR`` / the widget's folder field);
2. the cache, ``$MEDSEG_WEIGHTS_DIR`` or ``~/.cache/napari-medseg/weights``;
3. for TotalSegmentator models, TotalSegmentator's own weights folder
   (``$TOTALSEG_WEIGHTS_PATH``, else ``$TOTALSEG_HOME_DIR/nnunet/results``, else
   ``~/.totalsegmentator/nnunet/results``), so users who already ran TotalSegmentator keep
   using the weights they have.

Downloads (:func:`download`) are https only, streamed to a ``.part`` file in the cache's
``.downloads`` folder, checked against the sha256 *before* use, extracted through
:mod:`~napari_medseg.models.archive` (no absolute paths, ``..``, links or devices) and moved
into place atomically. The sha256 is the publisher's where one is published (none of the
current models' publishers give one); otherwise the first download cannot be verified: its
sha256 is recorded in ``hashes.json`` and every later download must match it (trust on
first use). :func:`checksum_policy` says which applies to a model. A failed or cancelled
download deletes its ``.part`` file, and a ``.part`` file is never read as weights.

Nothing here imports torch; missing weights raise :class:`WeightsNotFoundError` with the
exact command to run or the folder to fill, never a traceback.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional, Union

from ..errors import Cancelled, DownloadError, InvalidInputError, WeightsNotFoundError
from ..progress import CancelLike, ProgressCallback, check_cancel, report, sub_progress
from .families import TotalSegFamily, family_of
from .families import totalseg_weights_dir  # noqa: F401 - part of this module's API
from .registry import ModelCard, RemoteFile, get_card

_CHUNK = 1 << 20
_TIMEOUT_S = 60
CardLike = Union[str, ModelCard]


# ------------------------------------------------------------------------ locations
def cache_dir() -> Path:
    """The weights cache: ``$MEDSEG_WEIGHTS_DIR`` or ``~/.cache/napari-medseg/weights``."""
    env = os.environ.get("MEDSEG_WEIGHTS_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "napari-medseg" / "weights"


def install_root(card: CardLike) -> Path:
    """The folder under the cache that holds ``card``'s files."""
    card = _card(card)
    return cache_dir() / (card.install_dir or card.name)


def _card(card: CardLike) -> ModelCard:
    return card if isinstance(card, ModelCard) else get_card(card)


def _candidate_roots(card: ModelCard) -> list:
    return [install_root(card)] + family_of(card).extra_roots(card)


# ---------------------------------------------------------------------- layout checks
def trained_model_missing(dataset_dir: Path, card: ModelCard) -> Optional[str]:
    """Why ``dataset_dir`` is not a usable nnU-Net dataset folder for ``card`` (None if it is)."""
    return family_of("totalseg").dataset_missing(dataset_dir, card)


def resolve_weights(name: CardLike, path: Optional[Union[str, Path]] = None) -> Optional[Path]:
    """Find the weights of model ``name``.

    Parameters
    ----------
    name : str or ModelCard
        A registry name (``"total-fast"``) or card.
    path : str or Path, optional
        An explicit location (wins over the cache and TotalSegmentator's folder).

    Returns
    -------
    Path or None
        None for weights-free models; the checkpoint file for SAM-Med3D / 3DSAM-adapter;
        otherwise the folder holding the model's files (for TotalSegmentator models the
        folder holding its ``DatasetNNN_*`` folders).

    Raises
    ------
    WeightsNotFoundError
        Saying where it looked, what is missing, and what to run or where to put files.
    """
    card = _card(name)
    if not card.needs_weights:
        return None
    if path is not None and str(path) != "":
        family = family_of(card)
        root, missing = family.explicit_root(card, Path(path))
        if not missing:
            return family.result_path(card, root) if root.is_dir() else root
        raise WeightsNotFoundError(
            f"the weights given for {card.name!r} at {path} are incomplete: "
            + "; ".join(missing[:3]) + ".", hints=_install_hints(card)
        )
    tried = []
    for root in _candidate_roots(card):
        missing = family_of(card).missing_in_root(card, root)
        if not missing:
            return family_of(card).result_path(card, root)
        tried.append(str(root))
    raise WeightsNotFoundError(
        f"no weights for {card.name!r} ({card.task}); looked in {', '.join(tried)}.",
        hints=_install_hints(card),
    )


def _install_hints(card: ModelCard) -> dict:
    """What to do about missing weights, for the command line and for the widgets."""
    family, where = family_of(card), install_root(card)
    return {"cli": family.cli_hint(card, where), "gui": family.gui_hint(card, where)}


def installed(name: CardLike) -> bool:
    """True when :func:`resolve_weights` would find the weights (always True if weights-free)."""
    try:
        resolve_weights(name)
    except WeightsNotFoundError:
        return False
    return True


def dataset_folder(name: CardLike, part: Optional[int] = None,
                   weights: Optional[Union[str, Path]] = None) -> Path:
    """The nnU-Net trained-model folder (``.../DatasetNNN_x/{trainer}__{plans}__{config}``).

    ``part`` is the dataset id of a part model (multi-part cards); ``weights`` an explicit
    location as for :func:`resolve_weights`.
    """
    card = _card(name)
    family = family_of(card)
    if not isinstance(family, TotalSegFamily):
        raise InvalidInputError(f"{card.name!r} is not an nnU-Net (TotalSegmentator) model")
    root = resolve_weights(card, weights)
    folders = family.dataset_folders(card)
    if part is not None:
        matches = [p.folder for p in card.parts if p.dataset_id == part]
        if not matches:
            raise InvalidInputError(f"{card.name!r} has no part with dataset id {part}")
        folder = matches[0]
    else:
        if len(folders) != 1:
            raise InvalidInputError(f"{card.name!r} has {len(folders)} part models; name one")
        folder = folders[0]
    return Path(root) / folder / card.model_folder_name


def installed_size_mb(name: CardLike) -> Optional[float]:
    """Disk size of the installed weights in MB (None if not installed)."""
    card = _card(name)
    if not card.needs_weights:
        return 0.0
    try:
        found = resolve_weights(card)
    except WeightsNotFoundError:
        return None
    paths = family_of(card).content_paths(card, found)
    total = 0
    for p in paths:
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return total / 1e6


# ---------------------------------------------------------------------- hash records
def _hash_file() -> Path:
    return cache_dir() / "hashes.json"


def recorded_hashes() -> dict:
    """``{url: {"sha256": ..., "recorded": iso-time}}`` of trust-on-first-use records."""
    path = _hash_file()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DownloadError(f"the checksum record {path} is unreadable ({exc}); fix or delete "
                            "it (deleting it makes the next download trusted on first use)")
    return data if isinstance(data, dict) else {}


def _record_hash(url: str, digest: str) -> None:
    records = recorded_hashes()
    records[url] = {"sha256": digest,
                    "recorded": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    path = _hash_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".hashes-", suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(records, fh, indent=2, sort_keys=True)
    os.replace(tmp, path)


def expected_sha256(remote: RemoteFile) -> Optional[str]:
    """The published sha256, else the one recorded at the first download, else None."""
    if remote.sha256:
        return remote.sha256.lower()
    rec = recorded_hashes().get(remote.url)
    return rec.get("sha256") if isinstance(rec, dict) else None


def sha256_of(path: Union[str, Path]) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------- download
def check_url(url: str) -> None:
    """Refuse anything but an https URL with a host (DownloadError)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme.lower() != "https" or not parsed.netloc:
        raise DownloadError(
            f"refusing to download {url!r}: only https:// addresses are allowed "
            f"(got {parsed.scheme or 'no'} scheme); weights must come over an authenticated "
            "connection"
        )


def _default_opener(url: str) -> Any:
    request = urllib.request.Request(url, headers={"User-Agent": "napari-medseg"})
    return urllib.request.urlopen(request, timeout=_TIMEOUT_S)  # noqa: S310 - https checked


def _fetch(url: str, part_path: Path, opener: Callable, progress, cancel) -> str:
    """Stream ``url`` into ``part_path``; return the sha256 of the bytes written."""
    check_url(url)
    try:
        response = opener(url)
    except (OSError, ValueError) as exc:
        raise DownloadError(
            f"could not download {url}: {exc}. Check the internet connection (or proxy), or "
            "download the file elsewhere and use `medseg weights import`"
        ) from exc
    h = hashlib.sha256()
    with response:
        final = getattr(response, "geturl", lambda: url)()
        if final and final != url:
            check_url(final)  # a redirect must stay on https
        length = None
        headers = getattr(response, "headers", None)
        if headers is not None:
            try:
                length = int(headers.get("Content-Length") or 0) or None
            except (TypeError, ValueError):
                length = None
        done = 0
        with open(part_path, "wb") as out:
            while True:
                check_cancel(cancel)
                try:
                    chunk = response.read(_CHUNK)
                except OSError as exc:
                    raise DownloadError(f"download of {url} broke off after {done} bytes: {exc}; "
                                        "run the command again") from exc
                if not chunk:
                    break
                out.write(chunk)
                h.update(chunk)
                done += len(chunk)
                if length:
                    report(progress, done / length, f"{done / 1e6:.0f}/{length / 1e6:.0f} MB")
                else:
                    report(progress, 0.0, f"{done / 1e6:.0f} MB")
        if length is not None and done != length:
            raise DownloadError(f"download of {url} is incomplete ({done} of {length} bytes); "
                                "nothing was installed, run the command again")
    return h.hexdigest()


def download(name: CardLike, progress: Optional[ProgressCallback] = None,
             cancel: Optional[CancelLike] = None, *, opener: Optional[Callable] = None,
             force: bool = False) -> Optional[Path]:
    """Download, verify and install the weights of ``name``; return :func:`resolve_weights`.

    Parameters
    ----------
    name : str or ModelCard
    progress : callable, optional
        ``(fraction, text)``.
    cancel : CancelToken-like, optional
        Checked between chunks; a cancelled download installs nothing.
    opener : callable, optional
        ``opener(url) -> response`` with ``read(n)`` (tests pass one that serves bytes).
    force : bool
        Download even artefacts that are already installed.

    Raises
    ------
    DownloadError
        Not https, network failure, incomplete transfer, checksum mismatch, unsafe archive.
    WeightsNotFoundError
        The model has no download source (manual download / trained locally).
    """
    card = _card(name)
    if not card.needs_weights:
        return None
    if not card.downloadable:
        raise WeightsNotFoundError(f"{card.name!r} cannot be downloaded automatically.",
                                   hints=_install_hints(card))
    opener = opener or _default_opener
    for remote in card.remote_files:
        check_url(remote.url)  # refuse before touching the disk
    root = install_root(card)
    root.mkdir(parents=True, exist_ok=True)
    staging = cache_dir() / ".downloads"
    staging.mkdir(parents=True, exist_ok=True)

    family = family_of(card)
    todo = [f for f in card.remote_files if force or not family.artefact_present(card, root, f)]
    for i, remote in enumerate(todo):
        check_cancel(cancel)
        label = Path(urllib.parse.urlparse(remote.url).path).name
        step = sub_progress(progress, i / len(todo), (i + 1) / len(todo), f"{label}: ")
        _download_one(remote, root, staging, opener, step, cancel)
    # Cropped tasks also need the model that finds their region of interest.
    if card.crop and card.crop_model:
        dep = get_card(card.crop_model)
        if not installed(dep):
            download(dep, progress=None, cancel=cancel, opener=opener)
    report(progress, 1.0, f"{card.name}: installed")
    return resolve_weights(card)


def _download_one(remote: RemoteFile, root: Path, staging: Path, opener, progress, cancel) -> None:
    fd, tmp = tempfile.mkstemp(prefix=Path(remote.target).name + ".", suffix=".part", dir=staging)
    os.close(fd)
    part = Path(tmp)
    try:
        digest = _fetch(remote.url, part, opener, progress, cancel)
        expected = expected_sha256(remote)
        if expected is not None and digest != expected:
            source = "published" if remote.sha256 else "recorded at the first download"
            raise DownloadError(
                f"checksum mismatch for {remote.url}: got sha256 {digest}, expected {expected} "
                f"({source}). The file was deleted and nothing was installed; the server may "
                "serve a different or tampered file"
            )
        if remote.archive:
            from .archive import safe_extract

            safe_extract(part, root, cancel=cancel)
            if not (root / remote.target).exists():
                raise DownloadError(f"{remote.url} did not contain the expected folder "
                                    f"{remote.target}; nothing usable was installed")
        else:
            target = root / remote.target
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, target)  # same file system: atomic
        if expected is None:
            _record_hash(remote.url, digest)
    except Cancelled:
        raise
    finally:
        if part.exists():
            part.unlink()


# --------------------------------------------------------------------------- import
def import_weights(name: CardLike, path: Union[str, Path], *, link: bool = False) -> Path:
    """Copy (or symlink, ``link=True``) a user's weights into the cache after checking them.

    ``path`` is what :func:`resolve_weights` accepts as an explicit location (a folder with
    the expected layout, a single dataset folder, or a checkpoint file). A published
    checksum, where there is one, must match.
    """
    card = _card(name)
    if not card.needs_weights:
        raise InvalidInputError(f"{card.name!r} needs no weights")
    source = Path(path).expanduser()
    family = family_of(card)
    src_root, missing = family.explicit_root(card, source)
    if missing:
        raise WeightsNotFoundError(
            f"{source} does not hold usable weights for {card.name!r}: " + "; ".join(missing[:3])
            + family.expected_layout(card)
        )
    root = install_root(card)
    root.mkdir(parents=True, exist_ok=True)
    if src_root.is_file():
        published = next((f.sha256 for f in card.files if f.target == card.checkpoint
                          and f.sha256), None)
        if published and sha256_of(src_root) != published.lower():
            raise DownloadError(f"{src_root} does not match the published sha256 of "
                                f"{card.name!r}; refusing to import it")
        items = [(src_root, root / card.checkpoint)]
    else:
        items = family.import_items(card, src_root, root)
    from ..io.paths import check_outputs

    for src, dst in items:
        if src.resolve() == dst.resolve() or (dst.exists() and os.path.samefile(src, dst)):
            continue  # already in place (or a hard link to it)
        check_outputs([dst], [src], what=f"the cached weights of {card.name!r}")
        _place(src, dst, link)
    return resolve_weights(card)


def _place(src: Path, dst: Path, link: bool) -> None:
    """Copy/link ``src`` to ``dst`` through a temporary name, replacing ``dst`` at the end."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.importing")
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp)
    elif tmp.exists() or tmp.is_symlink():
        tmp.unlink()
    if link:
        os.symlink(src.resolve(), tmp, target_is_directory=src.is_dir())
    elif src.is_dir():
        shutil.copytree(src, tmp, symlinks=False)
    else:
        shutil.copy2(src, tmp)
    if dst.is_dir() and not dst.is_symlink():
        shutil.rmtree(dst)
    elif dst.exists() or dst.is_symlink():
        dst.unlink()
    os.replace(tmp, dst)


def describe(name: CardLike) -> dict:
    """A summary for ``medseg weights list`` and the widget."""
    card = _card(name)
    try:
        location = resolve_weights(card)
        is_installed = True
    except WeightsNotFoundError:
        location, is_installed = None, False
    if not card.needs_weights:
        # weights-free, or networks inside an installed package (deepbet): the family says
        # whether that package is there
        is_installed = not family_of(card).missing_in_root(card, Path("."))
        source = family_of(card).no_download_source if card.kind != "hu-tissue" \
            else "built in (no weights)"
    elif card.urls:
        source = card.urls[0] + (f" (+{len(card.urls) - 1} more)" if len(card.urls) > 1 else "")
    else:
        source = family_of(card).no_download_source
    return {
        "name": card.name,
        "kind": card.kind,
        "task": card.task,
        "installed": is_installed,
        "location": str(location) if location else None,
        "size_mb": installed_size_mb(card) if is_installed else None,
        "download_mb": sum(f.size_mb or 0 for f in card.remote_files) or None,
        "source": source,
        "sha256": "published" if any(card.sha256) else (
            "trust on first use" if card.urls else "n/a"),
        "checksum": checksum_policy(card),
        "licence": card.licence,
    }


def checksum_policy(name: CardLike) -> str:
    """What is actually verified about ``name``'s downloads, in one sentence.

    A published sha256 is enforced from the first download. Where the publisher gives
    none (TotalSegmentator, SAM-Med3D, nnInteractive today), the first download is not
    verified against anything: its sha256 is recorded in ``hashes.json`` and every later
    download must match it (trust on first use).
    """
    card = _card(name)
    if not card.needs_weights:
        return "no weights, nothing to verify"
    if not card.urls:
        return ("no download (manual or trained locally); imports are checked against a "
                "published sha256 only where one exists")
    if all(card.sha256):
        return "sha256 published by the authors, verified on every download"
    try:
        records = recorded_hashes()
    except DownloadError:
        records = {}
    recorded = [records.get(f.url) for f in card.remote_files if not f.sha256]
    if recorded and all(isinstance(r, dict) for r in recorded):
        when = min(str(r.get("recorded", "?")) for r in recorded)
        return (f"no sha256 published; recorded at the first download ({when}), later "
                "downloads must match it (trust on first use)")
    return ("no sha256 published; the first download is not verified, its sha256 is "
            "recorded and later downloads must match it (trust on first use)")
