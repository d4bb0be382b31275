"""nnInteractive on a running ``nninteractive-server``, behind the common prompt-session API.

Labs that run nnInteractive for 3D Slicer start the server that ships with the
``nninteractive`` package (``nninteractive-server --model-dir ... --device cuda``); this
backend connects to one through the package's torch-free client
(``pip install nninteractive-client``: ``nnInteractiveRemoteInferenceSession``). The
client has the local session's verbs, so :class:`NnInteractiveRemoteSession` is
:class:`~napari_medseg.prompts.nninteractive_session.NnInteractiveSession` with the
remote client as its backend: the same interaction log, one-level undo through the
server's own ``undo``, deeper undo by replay, initial masks, 2D boxes, the same
anisotropy note. On the wire the image is sent once per volume (compressed), each click
or box is a small JSON request, and the server answers with the box of the mask that
changed, which the client pastes into a target buffer held here; the base class maps it
onto the full volume as for the local backend.

The server keeps the model and does the work (its ``--device``); no weights, GPU or
PyTorch are needed here. The server drops a session after its idle timeout (10 min by
default) or a restart: the next interaction then opens a new one, sends the image again
and replays the object's interactions, so the user sees the same mask. Every failure is
a :class:`RemoteServerError` that says what happened, which server, and what to do
(unreachable, not an nnInteractive server, wrong or missing API key, at capacity, a
refused interaction, a server failure, a timeout).
"""

from __future__ import annotations

import contextlib
import importlib.util
from typing import Any, Callable, Optional

import numpy as np

from ..errors import InvalidInputError, MedsegError
from ..io.volume import Volume
from ..progress import CancelLike, ProgressCallback
from .nninteractive_session import NnInteractiveSession

#: ``nninteractive-server``'s default port
DEFAULT_PORT = 1527

CLIENT_HINT = (
    "the nninteractive-remote backend needs nnInteractive's torch-free client: run "
    "`pip install nninteractive-client` (it brings httpx and blosc2; no PyTorch, no weights)"
)

#: what to do when the server cannot be reached, per interface
_REACH_HINTS = {
    "cli": "check that `nninteractive-server` runs there and the host and port of --server "
           f"(its default port is {DEFAULT_PORT}).",
    "gui": "check that `nninteractive-server` runs there and the Server field under Backend "
           f"(its default port is {DEFAULT_PORT}); your layers were not changed.",
}


class RemoteServerError(MedsegError):
    """The nnInteractive server could not be reached, refused a request, failed or timed out.

    ``status`` is the HTTP status of a refusal (``None`` when no answer came).
    """

    def __init__(self, *args, status: Optional[int] = None, hints=None) -> None:
        super().__init__(*args, hints=hints)
        self.status = status


class SessionLostError(RemoteServerError):
    """The server no longer holds this client's session (idle timeout, restart)."""


def client_available() -> bool:
    """True when nnInteractive's remote client can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("nnInteractive.inference.remote") is not None
    except (ImportError, ValueError):
        return False


def check_server_url(url: Optional[str]) -> str:
    """``url`` without a trailing slash, or a clear error when it cannot be a server URL.

    Raises
    ------
    InvalidInputError
        No URL, no ``http://``/``https://`` scheme, or no host.
    """
    from urllib.parse import urlsplit

    text = str(url or "").strip().rstrip("/")
    if not text:
        raise InvalidInputError(
            "the nninteractive-remote backend needs the URL of a running nninteractive-server "
            f"(e.g. http://gpu-box:{DEFAULT_PORT});",
            hints={"cli": "pass --server URL.", "gui": "fill in the Server field under Backend."})
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise InvalidInputError(
            f"nnInteractive server URL {text!r} must start with http:// or https:// "
            f"(e.g. http://{text.split('://')[-1]})")
    if not parts.hostname:
        raise InvalidInputError(f"nnInteractive server URL {text!r} names no host")
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError as exc:
        raise InvalidInputError(f"nnInteractive server URL {text!r}: {exc}") from None
    return text


def _detail(response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else response.text[:300].strip() or response.reason_phrase


@contextlib.contextmanager
def _translate(url: str, what: str, timeouts: dict):
    """Turn the client's exceptions during ``what`` into :class:`RemoteServerError`."""
    import httpx
    from nnInteractive.inference.remote import ServerAtCapacityError, SessionExpiredError

    try:
        yield
    except SessionExpiredError as exc:
        raise SessionLostError(
            f"the nnInteractive server at {url} no longer holds this session ({exc}) while "
            f"{what};", status=410,
            hints={"gui": "click again: the image is sent anew."}) from exc
    except ServerAtCapacityError as exc:
        raise RemoteServerError(
            f"the nnInteractive server at {url} is at capacity ({exc}): every session it allows "
            "(its --max-sessions) is in use; close another viewer or Slicer session connected "
            "to it, or ask whoever runs it to raise --max-sessions, then try again", status=503) from exc
    except httpx.ConnectTimeout as exc:
        raise RemoteServerError(
            f"the nnInteractive server at {url} did not accept a connection within "
            f"{timeouts['connect']:g} s while {what}; nothing was changed here;", hints=_REACH_HINTS) from exc
    except httpx.TimeoutException as exc:
        limit = timeouts["upload"] if what.startswith("sending the image") else timeouts["read"]
        raise RemoteServerError(
            f"the nnInteractive server at {url} did not answer within {limit:g} s while {what} "
            f"({type(exc).__name__}); it may be busy with other users or running on its CPU; "
            "nothing was changed here: try again, or give a longer timeout") from exc
    except httpx.ConnectError as exc:
        raise RemoteServerError(
            f"cannot reach the nnInteractive server at {url} ({exc}) while {what}; nothing was "
            "changed here;", hints=_REACH_HINTS) from exc
    except httpx.HTTPStatusError as exc:
        response, code = exc.response, exc.response.status_code
        if code == 401:
            raise RemoteServerError(
                f"the nnInteractive server at {url} refused the API key (401: {_detail(response)}) "
                f"while {what};", status=401,
                hints={"cli": "pass the key it was started with (--api-key) in --token-file FILE "
                              "or NN_INTERACTIVE_API_KEY.",
                       "gui": "set NN_INTERACTIVE_API_KEY to the key it was started with "
                              "(--api-key) before starting napari."}) from exc
        if code in (404, 405):
            raise RemoteServerError(
                f"{url} does not answer like an nnInteractive server ({code} for "
                f"{response.request.method} {response.request.url.path}) while {what};",
                status=code, hints=_REACH_HINTS) from exc
        if code == 400:
            raise RemoteServerError(
                f"the nnInteractive server at {url} refused {what}: {_detail(response)}",
                status=code) from exc
        raise RemoteServerError(
            f"the nnInteractive server at {url} failed while {what} ({code}: {_detail(response)}); "
            "its log says why; nothing was changed here", status=code) from exc
    except httpx.HTTPError as exc:
        raise RemoteServerError(
            f"lost the connection to the nnInteractive server at {url} while {what} "
            f"({type(exc).__name__}: {exc}); nothing was changed here;", hints=_REACH_HINTS) from exc
    except (KeyError, ValueError) as exc:  # an answer that is not the protocol's (a web page)
        if isinstance(exc, MedsegError):
            raise
        raise RemoteServerError(
            f"{url} does not answer like an nnInteractive server while {what} "
            f"({type(exc).__name__}: {exc});", hints=_REACH_HINTS) from exc


#: what each client call does, for the error messages
_WHAT = {
    "set_image": "sending the image",
    "set_target_buffer": "setting up the mask",
    "add_point_interaction": "segmenting from a click",
    "add_bbox_interaction": "segmenting from a box",
    "add_initial_seg_interaction": "sending the initial mask",
    "reset_interactions": "resetting the object",
    "undo": "undoing the last interaction",
}


class _Guarded:
    """The package's remote session, each call's failure said in words (attributes pass through)."""

    def __init__(self, remote: Any, url: str, timeouts: dict) -> None:
        self._remote, self._url, self._timeouts = remote, url, timeouts

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._remote, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def call(*args, **kwargs):
            with _translate(self._url, _WHAT.get(name, name), self._timeouts):
                return attr(*args, **kwargs)

        return call

    def close(self) -> None:
        """Give the session back to the server (quietly: it may be gone already)."""
        try:
            self._remote.close()
        except Exception:  # noqa: BLE001 - best effort, the server reaps it anyway
            pass


class NnInteractiveRemoteSession(NnInteractiveSession):
    """Interactive segmentation with nnInteractive running on an ``nninteractive-server``.

    Parameters
    ----------
    server : str
        The server's URL, e.g. ``http://gpu-box:1527`` (``nninteractive-server``'s
        default port is 1527).
    token : str, optional
        The server's API key (its ``--api-key``); default: the ``NN_INTERACTIVE_API_KEY``
        environment variable, else none (a server started without a key).
    timeout : float
        Seconds to wait for each interaction's answer.
    connect_timeout : float
        Seconds to wait for a connection.
    upload_timeout : float
        Seconds to wait for the image upload to be accepted.

    Raises
    ------
    InvalidInputError
        No URL, or one that cannot be a server URL.
    MedsegError
        nnInteractive's client is not installed (says what to run).

    Notes
    -----
    Nothing is sent before :meth:`set_volume`, which opens a session on the server and
    uploads the image; failures then raise :class:`RemoteServerError`. Call
    :meth:`close` to give the server's session back (it is reaped after its idle
    timeout otherwise).
    """

    name = "nninteractive-remote"

    def __init__(self, server: Optional[str] = None, token: Optional[str] = None, *,
                 timeout: float = 60.0, connect_timeout: float = 10.0,
                 upload_timeout: float = 600.0) -> None:
        self.server = check_server_url(server)
        if not client_available():
            raise MedsegError(CLIENT_HINT)
        super().__init__(backend_factory=lambda device: None)  # no local package or weights
        self._token = str(token).strip() if token else None
        self._timeouts = {"read": float(timeout), "connect": float(connect_timeout),
                          "upload": float(upload_timeout)}
        self._sent: Optional[Volume] = None
        self._predicting = False
        #: sessions the server dropped and this one reopened (each sent the image again)
        self.reconnects = 0

    # ------------------------------------------------------------------ connection
    def _make_backend(self) -> _Guarded:
        from nnInteractive.inference.remote import nnInteractiveRemoteInferenceSession

        t = self._timeouts
        with _translate(self.server, "opening a session (POST /claim)", t):
            remote = nnInteractiveRemoteInferenceSession(
                self.server, api_key=self._token, connect_timeout=t["connect"], read_timeout=t["read"],
                set_image_read_timeout=t["upload"], write_timeout=t["upload"], pool_timeout=t["connect"])
        return _Guarded(remote, self.server, t)

    def _new_buffer(self, shape: tuple) -> np.ndarray:
        # the client pastes each changed box into a NumPy buffer: no torch here
        return np.zeros(shape, dtype=np.uint8)

    def _prepare(self, volume: Volume, progress: Optional[ProgressCallback], cancel: Optional[CancelLike]) -> None:
        self._sent = volume
        super()._prepare(volume, progress, cancel)

    def _reconnect(self) -> None:
        """The server dropped the session: open a new one and send the image again; the
        next interaction replays the object's log onto it."""
        old, self._backend = self._backend, None
        if old is not None:
            old.close()
        self._backend = self._make_backend()
        self._upload(self._backend, self._sent)
        self._applied = ()
        self.reconnects += 1

    def _call(self, fn: Callable[[Any], Any]) -> Any:
        try:
            return super()._call(fn)
        except SessionLostError:
            if self._sent is None:
                raise
            self._reconnect()
            if self._predicting:
                raise  # _predict replays the whole log onto the new session
            return super()._call(fn)  # undo, reset, an initial mask: once more, on the new one

    def _predict(self, prompts, previous_state):
        self._predicting = True
        try:
            try:
                return super()._predict(prompts, previous_state)
            except SessionLostError:
                # reconnected, nothing applied there yet: this replays the whole log
                return super()._predict(prompts, previous_state)
        finally:
            self._predicting = False

    def close(self) -> None:
        """Give the server's session back (idempotent; quiet when the server is gone)."""
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
