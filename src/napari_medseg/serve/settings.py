"""Where a dock widget's work runs: this computer or a ``medseg serve`` machine.

The Interactive and Automatic segmentation docks offer a "Where it runs" choice. This
module holds that choice (:class:`ServerSetting`), remembers it between napari sessions in
a small JSON file under the user's configuration folder (the server's URL and the token
file's *path*; never the token itself), and builds what runs from it:

- :func:`prompt_session`: a local :func:`~napari_medseg.prompts.factory.make_session`
  backend, or a :class:`~napari_medseg.serve.client.RemotePromptSession` on the server;
- :func:`run_segment`: a local :func:`~napari_medseg.inference.segment.segment_with_info`,
  or :func:`~napari_medseg.serve.client.remote_segment` (same
  :class:`~napari_medseg.inference.segment.SegmentResult`);
- :func:`close_session` frees a replaced session (on the server too) and
  :func:`session_lost` says when a server no longer holds a session (the next
  interaction must upload the image again).

Nothing here imports Qt: the widgets only show the fields and call these functions.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from ..errors import InvalidInputError, MedsegError
from ..progress import CancelLike, ProgressCallback

log = logging.getLogger(__name__)

#: the settings file's name inside :func:`config_dir`
SETTINGS_FILE = "server.json"

#: the two places work can run, as the widgets name them
LOCAL, REMOTE = "this computer", "a server"


def config_dir() -> Path:
    """The user's napari-medseg configuration folder.

    ``$MEDSEG_CONFIG_DIR`` when set (tests, shared machines), else the platform's user
    configuration folder (``~/.config/napari-medseg`` on Linux).
    """
    env = os.environ.get("MEDSEG_CONFIG_DIR")
    if env:
        return Path(env).expanduser()
    try:
        from platformdirs import user_config_dir  # ships with napari

        return Path(user_config_dir("napari-medseg", appauthor=False))
    except ImportError:  # pragma: no cover - platformdirs comes with napari and pip
        return Path.home() / ".config" / "napari-medseg"


@dataclass(frozen=True)
class ServerSetting:
    """Where work runs: this computer (default) or a server.

    Parameters
    ----------
    remote : bool
        Run on the server at ``url`` (``False``: this computer).
    url : str
        ``http://host:port`` of a ``medseg serve`` (kept when ``remote`` is off, so that
        switching back needs no retyping).
    token_file : str
        Path of a file holding the server's token (mode 600). Only the path is stored.
    """

    remote: bool = False
    url: str = ""
    token_file: str = ""

    @property
    def where(self) -> str:
        """``"this computer"`` or ``"the server http://..."`` (for status lines)."""
        return f"the server {self.url.strip()}" if self.remote else LOCAL

    @property
    def key(self) -> tuple:
        """What identifies the place work runs (a cached session is reused only on the same)."""
        if not self.remote:
            return (False,)
        return (True, self.url.strip().rstrip("/"), str(Path(self.token_file.strip()).expanduser()))

    def to_dict(self) -> dict:
        return {"remote": bool(self.remote), "url": str(self.url), "token_file": str(self.token_file)}

    @classmethod
    def from_dict(cls, data: Any) -> "ServerSetting":
        """A setting from a saved dict; anything unusable gives the default (this computer)."""
        if not isinstance(data, dict):
            return cls()
        url, token_file = data.get("url", ""), data.get("token_file", "")
        return cls(remote=data.get("remote") is True,
                   url=url if isinstance(url, str) else "",
                   token_file=token_file if isinstance(token_file, str) else "")

    def client(self, **kwargs):
        """A :class:`~napari_medseg.serve.client.Client` for this server (reads the token file).

        Raises
        ------
        InvalidInputError
            The setting is not remote, the URL or the token file is missing, or the token
            file is unusable (missing, readable by others, empty: the message says which).
        MedsegError
            httpx (the ``[serve]`` extra) is not installed.
        """
        if not self.remote:
            raise InvalidInputError("the work is set to run on this computer, not on a server")
        if not self.url.strip():
            raise InvalidInputError(
                "no server URL given;",
                hints={"gui": "type the server's URL (e.g. http://127.0.0.1:8765) under Options > "
                              "Server URL, or set 'Where it runs' to this computer.",
                       "cli": "pass --server URL."})
        if not self.token_file.strip():
            raise InvalidInputError(
                f"no token file given for the server {self.url.strip()};",
                hints={"gui": "choose the server's token file (mode 600) under Options > Token file.",
                       "cli": "pass --token-file FILE."})
        from .client import Client

        return Client.from_token_file(self.url, self.token_file.strip(), **kwargs)


def settings_path() -> Path:
    """The file the setting is remembered in (:func:`config_dir` / ``server.json``)."""
    return config_dir() / SETTINGS_FILE


def load_setting(path=None) -> ServerSetting:
    """The remembered setting; this computer when none was saved or the file is unusable.

    A broken file never stops a widget from opening: it is logged and ignored.
    """
    p = Path(path) if path is not None else settings_path()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ServerSetting()
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("cannot read the server setting %s (%s); using this computer", p, exc)
        return ServerSetting()
    try:
        return ServerSetting.from_dict(json.loads(text))
    except ValueError as exc:
        log.warning("the server setting %s is not valid JSON (%s); using this computer", p, exc)
        return ServerSetting()


def save_setting(setting: ServerSetting, path=None) -> Path:
    """Remember ``setting`` (URL and token file *path* only; the token is never written).

    Returns the file written. The write is atomic (a temporary file renamed over the
    old one), so a crash never leaves half a file.
    """
    p = Path(path) if path is not None else settings_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(setting.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, p)
    return p


def _no_local_options(setting: ServerSetting, *, weights=None, device: str = "auto",
                      model: Any = None, runtime: str = "auto") -> None:
    """Refuse the options that only apply to work on this computer."""
    if weights:
        raise InvalidInputError(
            f"a weights path ({weights!s}) does not apply when the work runs on {setting.where}: "
            "the server uses its own installed weights;",
            hints={"gui": "clear the Weights field, or set 'Where it runs' to this computer.",
                   "cli": "drop --weights."})
    if str(device or "auto").strip().lower() != "auto":
        raise InvalidInputError(
            f"device '{device}' does not apply when the work runs on {setting.where}: the "
            "server's `medseg serve --device` decides;",
            hints={"gui": "set Device to auto.", "cli": "drop --device."})
    if str(runtime or "auto").strip().lower() != "auto":
        raise InvalidInputError(
            f"runtime '{runtime}' does not apply when the work runs on {setting.where}: the "
            "server's `medseg serve --runtime` decides;",
            hints={"gui": "set CPU runtime to auto.", "cli": "drop --runtime."})
    if isinstance(model, Path) or (isinstance(model, str) and ("/" in model or "\\" in model)):
        raise InvalidInputError(
            f"a model folder on this computer ({model!s}) cannot run on {setting.where}: a "
            "server runs only the registry models it offers (paths are never sent);",
            hints={"gui": "pick a registry model, or set 'Where it runs' to this computer.",
                   "cli": "pass a registry model name."})


def prompt_session(backend: str, setting: ServerSetting, *, weights=None, bias_correct: bool = False,
                   runtime: str = "auto"):
    """The interactive session ``setting`` asks for: local, or on the server.

    Parameters
    ----------
    backend : str
        An interactive backend (``"region-growing"``, ``"sam-med3d"``, ...).
    setting : ServerSetting
        Where it runs.
    weights : path, optional
        A checkpoint for a local backend (refused with a server: it uses its own).
    bias_correct : bool
        Region growing on the N4 bias-corrected MR intensities (this computer only).
    runtime : {"auto", "openvino", "torch"}
        What runs a network backend's encoder on this computer's CPU (refused with a
        server unless ``auto``: the server's ``--runtime`` decides).

    Returns
    -------
    PromptSession
        :func:`~napari_medseg.prompts.factory.make_session`'s session, or a
        :class:`~napari_medseg.serve.client.RemotePromptSession` (not yet uploaded: call
        ``set_volume``).
    """
    if not setting.remote:
        from ..prompts.factory import make_session

        return make_session(backend, weights=weights, bias_correct=bias_correct, runtime=runtime)
    _no_local_options(setting, weights=weights, runtime=runtime)
    if bias_correct:
        raise InvalidInputError(
            f"bias-field correction runs on this computer only, not on {setting.where};",
            hints={"gui": "untick Bias-field correction (N4), or set 'Where it runs' to this computer.",
                   "cli": "drop --bias-correct."})
    from .client import RemotePromptSession

    return RemotePromptSession(backend, client=setting.client())


def run_segment(volume, model, setting: ServerSetting, *, weights=None, device: str = "auto",
                roi_subset: Optional[Sequence[str]] = None,
                progress: Optional[ProgressCallback] = None, cancel: Optional[CancelLike] = None,
                poll_s: float = 0.25, confidence: bool = False, runtime: str = "auto"):
    """Automatic segmentation where ``setting`` says; the same result either way.

    Parameters
    ----------
    volume : Volume
    model : str or Path
        A registry model (or, on this computer only, an nnU-Net folder).
    setting : ServerSetting
    weights, device
        Local options (refused with a server, except ``device="auto"``).
    roi_subset, progress, cancel
        As for :func:`~napari_medseg.inference.segment.segment_with_info`; with a server,
        ``cancel`` cancels the job on the server.
    poll_s : float
        Seconds between progress polls of a server job.
    confidence : bool
        Also compute the confidence maps (``result.confidence``). A server returns labels
        only: the result then has no maps and a note that says so.
    runtime : {"auto", "openvino", "torch"}
        What runs the network on this computer's CPU (refused with a server unless
        ``auto``: the server's ``--runtime`` decides).

    Returns
    -------
    SegmentResult
    """
    if not setting.remote:
        from ..inference.segment import segment_with_info

        return segment_with_info(volume, model, weights=weights, device=device, roi_subset=roi_subset,
                                 progress=progress, cancel=cancel, confidence=confidence,
                                 runtime=runtime)
    _no_local_options(setting, weights=weights, device=device, model=model, runtime=runtime)
    from .client import remote_segment

    with setting.client() as client:
        result = remote_segment(volume, str(model), client=client, roi_subset=roi_subset,
                                progress=progress, cancel=cancel, poll_s=poll_s)
    if confidence:
        result.notes.append(f"the server at {setting.where} returns labels only: no confidence "
                            "map (run on this computer for one)")
    return result


def close_session(session) -> None:
    """Free a session that is being replaced: a remote one on its server (quietly).

    A local session needs nothing (memory is freed with the object); a lost server reaps
    the remote copy itself after its idle timeout.
    """
    close = getattr(session, "close", None)
    if close is None:
        return
    try:
        close()
        client = getattr(session, "client", None)
        if client is not None:
            client.close()
    except MedsegError as exc:  # a lost server: nothing to free here
        log.info("closing a replaced session: %s", exc)


def session_lost(exc: BaseException) -> bool:
    """True when ``exc`` says the server no longer holds the session (expired, restarted).

    The caller then forgets its session: the next interaction uploads the image again.
    """
    from .client import ServerError

    return isinstance(exc, ServerError) and getattr(exc, "status", None) == 404
