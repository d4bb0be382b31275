"""Clients of ``medseg serve``: a remote :class:`PromptSession` and a remote ``segment``.

:class:`RemotePromptSession` is a :class:`~napari_medseg.prompts.base.PromptSession`: the
widget and ``medseg prompt`` drive it exactly like a local backend. ``set_volume`` uploads
the volume once (compressed, with its geometry); each click then sends a few bytes of
JSON and receives only the changed bounding box's mask, which is pasted into the
session's local full-grid mask. A reply is applied only once it has fully arrived, so a
lost server raises :class:`ServerError` and leaves the mask (and the caller's layers) as
they were.

:func:`remote_segment` submits an automatic segmentation, reports the server's progress,
cancels the job when ``cancel`` is set, and returns the same
:class:`~napari_medseg.inference.segment.SegmentResult` as a local run.

:class:`~napari_medseg.serve.split.SplitSamMed3DSession` is SAM-Med3D split between machines: the server encodes
each 128³ crop, this machine fetches the embedding once per crop and runs the light
decoder locally, so clicks inside a crop never cross the network.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence

import numpy as np

from .._ndimage import bbox
from ..errors import Cancelled, InvalidInputError, MedsegError
from ..io.volume import Volume
from ..progress import CancelLike, ProgressCallback, check_cancel, report
from ..prompts.base import PromptSession, Prompts, Update
from .wire import MEDIA_TYPE, pack, region_from_json, region_to_json, unpack


class ServerError(MedsegError):
    """The server could not be reached, or answered with an error (the message says which).

    ``status`` is the HTTP status of a refusal (``None`` when no answer came): 404 means
    the server no longer holds the session or job (expired, deleted, restarted).
    """

    def __init__(self, *args, status: Optional[int] = None, hints=None) -> None:
        super().__init__(*args, hints=hints)
        self.status = status


#: what to do when the server cannot be reached or was lost, per interface
_REACH_HINTS = {
    "cli": "check that `medseg serve` runs there, the URL and the port (--server).",
    "gui": "check that `medseg serve` runs there and the Server URL under Options "
           "(Where it runs); your layers were not changed.",
}


class AuthenticationError(ServerError):
    """The server refused the token (401)."""


def _normalise_url(url: str) -> str:
    text = str(url or "").strip().rstrip("/")
    if not text:
        raise InvalidInputError("no server URL given; use e.g. http://127.0.0.1:8765")
    if "://" not in text:
        text = "http://" + text
    if not text.startswith(("http://", "https://")):
        raise InvalidInputError(f"server URL {url!r} must start with http:// or https://")
    return text


class Client:
    """A connection to one ``medseg serve`` (HTTP keep-alive, bearer token).

    Parameters
    ----------
    url : str
        ``http://host:port`` or ``https://host:port`` (a reverse proxy's URL works too).
    token : str
        One line of the server's token file.
    timeout : float
        Seconds to wait for connecting and for each reply (uploads and preparation of a
        network backend can take longer: they get ``long_timeout``).
    """

    def __init__(self, url: str, token: str, timeout: float = 30.0, long_timeout: float = 600.0,
                 verify: Any = True) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise MedsegError("a medseg server client needs httpx: pip install "
                              "'napari-medseg[serve]'") from exc

        self.url = _normalise_url(url)
        if not token or not str(token).strip():
            raise InvalidInputError("no token given; pass the server's token (--token-file FILE)")
        self.timeout = float(timeout)
        self.long_timeout = float(long_timeout)
        self._http = httpx.Client(base_url=self.url, timeout=self.timeout, verify=verify,
                                  headers={"Authorization": f"Bearer {str(token).strip()}"})
        #: bytes sent and received by the last request (body only)
        self.last_bytes = (0, 0)

    @classmethod
    def from_token_file(cls, url: str, token_file, **kwargs) -> "Client":
        """A client with the first token of ``token_file`` (refused if world-readable)."""
        from .auth import read_token

        return cls(url, read_token(token_file), **kwargs)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ transport
    def request(self, method: str, path: str, *, content: Optional[bytes] = None,
                json_body: Any = None, long: bool = False):
        """One request; returns the httpx response, or raises :class:`ServerError`."""
        import httpx

        headers = {"Content-Type": MEDIA_TYPE} if content is not None else None
        timeout = self.long_timeout if long else self.timeout
        try:
            response = self._http.request(method, path, content=content, json=json_body,
                                          headers=headers, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise ServerError(
                f"the medseg server at {self.url} did not answer {method} {path} within "
                f"{timeout:g} s; nothing was changed here;", hints=_REACH_HINTS) from exc
        except httpx.ConnectError as exc:
            raise ServerError(
                f"cannot reach the medseg server at {self.url} ({exc}); nothing was changed "
                "here;", hints=_REACH_HINTS) from exc
        except httpx.HTTPError as exc:
            raise ServerError(
                f"lost the medseg server at {self.url} ({type(exc).__name__}: {exc}); nothing "
                "was changed here;", hints=_REACH_HINTS) from exc
        sent = len(content) if content is not None else len(response.request.content or b"")
        self.last_bytes = (sent, len(response.content))
        if response.status_code == 401:
            raise AuthenticationError(
                f"the medseg server at {self.url} refused the token (401);", status=401,
                hints={"cli": "use a token from its --token-file (pass that file with --token-file).",
                       "gui": "under Options > Token file, choose a copy of the token file "
                              "`medseg serve` was started with."})
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text[:500]
            hints = None
            if response.status_code == 404:
                hints = {"gui": "run it again: the image is uploaded anew."}
            raise ServerError(f"the medseg server refused {method} {path} "
                              f"({response.status_code}): {detail}",
                              status=response.status_code, hints=hints)
        return response

    def json(self, method: str, path: str, **kwargs) -> Any:
        return self.request(method, path, **kwargs).json()

    def message(self, method: str, path: str, **kwargs) -> tuple:
        """``(header, arrays)`` of a wire-format reply."""
        response = self.request(method, path, **kwargs)
        return unpack(response.content)

    def info(self) -> dict:
        """The server's backends, models and limits (``GET /info``)."""
        return self.json("GET", "/info")


def volume_message(volume: Volume, **header) -> bytes:
    """A volume upload: the array (compressed) and its geometry, plus ``header``."""
    return pack(dict(header, geometry=volume.geometry_dict()), {"image": volume.array})


def _client_from(client: Optional[Client], url: Optional[str], token: Optional[str],
                 token_file) -> Client:
    if client is not None:
        return client
    if url is None:
        raise InvalidInputError("give a server URL (or a Client)")
    if token is None and token_file is None:
        raise InvalidInputError("give the server's token or --token-file")
    if token is None:
        return Client.from_token_file(url, token_file)
    return Client(url, token)


class RemotePromptSession(PromptSession):
    """An interactive backend running on a ``medseg serve`` server.

    Parameters
    ----------
    backend : str
        A backend the server offers (``GET /info``), e.g. ``"region-growing"``.
    url, token, token_file
        The server and its token (or pass ``client``).
    client : Client, optional
        An existing connection (several sessions may share one).

    Notes
    -----
    The session keeps the full-grid mask here; the server sends the changed box only.
    :meth:`close` (or the context manager) frees the server's copy; the server also drops
    sessions idle for longer than its ``--idle-timeout``.
    """

    def __init__(self, backend: str = "region-growing", *, url: Optional[str] = None,
                 token: Optional[str] = None, token_file=None,
                 client: Optional[Client] = None) -> None:
        super().__init__()
        self.client = _client_from(client, url, token, token_file)
        self.name = str(backend)
        self.session_id: Optional[str] = None
        self.message = ""
        self._can_undo = False
        #: (bytes sent, bytes received) of the last interaction
        self.last_bytes = (0, 0)
        self.last_server_s = 0.0

    # the server does the work: these are never called
    def _prepare(self, volume, progress, cancel) -> None:  # pragma: no cover - see set_volume
        raise NotImplementedError

    def _predict(self, prompts, previous_state):  # pragma: no cover - see _send
        raise NotImplementedError

    def set_volume(self, volume: Volume, progress: Optional[ProgressCallback] = None,
                   cancel: Optional[CancelLike] = None) -> None:
        """Upload ``volume`` once and have the server prepare the backend on it."""
        if not isinstance(volume, Volume):
            raise InvalidInputError(f"set_volume needs a Volume, got {type(volume).__name__}")
        check_cancel(cancel)
        report(progress, 0.0, f"uploading the volume to {self.client.url}")
        body = volume_message(volume, backend=self.name)
        check_cancel(cancel)
        report(progress, 0.3, f"preparing {self.name} on the server")
        reply = self.client.json("POST", "/sessions", content=body, long=True)
        old = self.session_id
        self.session_id = str(reply["session_id"])
        if old is not None:
            self._close_quietly(old)
        self._volume = volume
        super().reset()
        self._can_undo = False
        if cancel is not None and cancel.is_set():
            self.close()
            raise Cancelled("cancelled by the user; nothing was changed")
        report(progress, 1.0, f"{self.name} ready on the server")

    # ------------------------------------------------------------------ interactions
    def _path(self, verb: str) -> str:
        if self.session_id is None:
            raise InvalidInputError("no volume set: call set_volume(volume) first")
        return f"/sessions/{self.session_id}/{verb}"

    def _apply_reply(self, header: dict, arrays: dict) -> Update:
        shape = self.volume.shape
        changed = region_from_json(header.get("changed"), shape)
        sub = arrays.get("mask")
        if sub is None or tuple(sub.shape) != tuple(r.stop - r.start for r in changed):
            raise ServerError("the server's reply holds no mask for its changed box")
        # Everything is checked before the local mask is touched.
        p = header.get("prompts") or {}
        points = tuple(tuple(float(c) for c in q) for q in p.get("points", []))
        labels = tuple(bool(v) for v in p.get("labels", []))
        box = p.get("box")
        box = (tuple(float(c) for c in box[0]), tuple(float(c) for c in box[1])) if box else None
        initial = self._prompts.initial_mask if p.get("initial_mask") else None
        if self._mask is None:
            self._mask = np.zeros(shape, dtype=bool)
        self._mask[changed] = sub
        self._prompts = Prompts(points, labels, box, initial)
        self._can_undo = bool(header.get("can_undo"))
        self.message = str(header.get("message", ""))
        self._mask_box = None  # the server owns the history; the box is not needed here
        return Update(self._mask, changed, float(header.get("timing_s", 0.0)))

    def _send(self, verb: str, **kwargs) -> Update:
        t0 = time.perf_counter()
        header, arrays = self.client.message("POST", self._path(verb), **kwargs)
        self.last_bytes = self.client.last_bytes
        update = self._apply_reply(header, arrays)
        #: seconds the server spent on the last interaction (the rest of the round trip
        #: is transport: compression, HTTP, pasting the changed box)
        self.last_server_s = update.timing_s
        return Update(update.mask, update.changed, time.perf_counter() - t0)

    def add_point(self, zyx: Sequence[float], positive: bool = True) -> Update:
        """Add a click; the server segments, the changed box comes back."""
        point = self._check_point(zyx)
        return self._send("points", json_body={"zyx": list(point), "positive": bool(positive)})

    def add_box(self, zyx0: Sequence[float], zyx1: Sequence[float]) -> Update:
        """Set the box (two opposite corners, voxel indices)."""
        a, b = self._check_point(zyx0), self._check_point(zyx1)
        return self._send("boxes", json_body={"zyx0": list(a), "zyx1": list(b)})

    def set_initial_mask(self, mask: np.ndarray) -> Update:
        """Start from an existing mask; only its bounding box is sent."""
        mask = np.asarray(mask).astype(bool)
        if mask.shape != self.volume.shape:
            raise InvalidInputError(
                f"initial mask shape {mask.shape} does not match the volume {self.volume.shape}")
        region = bbox(mask) or (slice(0, 0),) * 3
        body = pack({"region": region_to_json(region)}, {"mask": mask[region]})
        old = self._prompts
        self._prompts = Prompts(old.points, old.labels, old.box, mask.copy())
        try:
            return self._send("masks", content=body)
        except BaseException:
            self._prompts = old
            raise

    def undo(self) -> Update:
        """Revert the last interaction (on the server)."""
        return self._send("undo")

    def reset(self) -> None:
        """Forget the object's prompts (here and on the server)."""
        if self.session_id is not None and self._volume is not None:
            self._send("reset")
        super().reset()
        self._can_undo = False

    @property
    def can_undo(self) -> bool:
        return self._can_undo

    # ------------------------------------------------------------------ lifetime
    def _close_quietly(self, session_id: str) -> None:
        try:
            self.client.request("DELETE", f"/sessions/{session_id}")
        except MedsegError:
            pass  # expired or unreachable: the server reaps it anyway

    def close(self) -> None:
        """Free the session on the server (the local mask stays readable)."""
        if self.session_id is not None:
            self._close_quietly(self.session_id)
            self.session_id = None

    def __enter__(self) -> "RemotePromptSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def remote_segment(volume: Volume, model: str = "hu-tissue", *, url: Optional[str] = None,
                   token: Optional[str] = None, token_file=None, client: Optional[Client] = None,
                   roi_subset: Optional[Sequence[str]] = None,
                   progress: Optional[ProgressCallback] = None,
                   cancel: Optional[CancelLike] = None, poll_s: float = 0.25):
    """Automatic segmentation on a server; the same result as a local ``segment_with_info``.

    Parameters
    ----------
    volume : Volume
        The image (sent compressed with its geometry).
    model : str
        A registry model the server offers (e.g. ``"hu-tissue"``, ``"total"``).
    url, token, token_file, client
        The server (see :class:`Client`).
    roi_subset : list of str, optional
        Structures to keep (as for ``segment``).
    progress : callable, optional
        ``(fraction, text)``: upload, then the server's own progress.
    cancel : CancelLike, optional
        When set, the job is cancelled on the server and :class:`Cancelled` is raised.
    poll_s : float
        Seconds between progress polls.

    Returns
    -------
    SegmentResult
        Labels on the volume's grid, label table, model name, timings (the server's, plus
        ``upload_s`` and ``download_s``) and notes.

    Raises
    ------
    ServerError
        Server unreachable, lost, or the job failed there (its message is passed on).
    Cancelled
        ``cancel`` was set; the job was cancelled on the server.
    """
    from ..inference.segment import SegmentResult
    from ..io.label_table import LabelTable

    if not isinstance(volume, Volume):
        raise InvalidInputError(f"remote_segment needs a Volume, got {type(volume).__name__}")
    own = client is None
    client = _client_from(client, url, token, token_file)
    try:
        check_cancel(cancel)
        t0 = time.perf_counter()
        report(progress, 0.0, f"uploading to {client.url}")
        roi = list(roi_subset) if roi_subset is not None else None
        body = volume_message(volume, model=str(model), roi_subset=roi)
        job_id = client.json("POST", "/jobs", content=body, long=True)["job_id"]
        upload_s = time.perf_counter() - t0
        try:
            while True:
                status = client.json("GET", f"/jobs/{job_id}")
                state = status.get("state")
                if state in ("done", "failed", "cancelled"):
                    break
                report(progress, 0.05 + 0.9 * float(status.get("progress", 0.0)),
                       str(status.get("text") or state))
                if cancel is not None and cancel.is_set():
                    raise Cancelled("cancelled by the user; nothing was changed")
                time.sleep(poll_s)
            if state == "failed":
                raise ServerError(f"the server's {model} run failed: {status.get('error')}")
            if state == "cancelled":
                raise Cancelled("the job was cancelled on the server; nothing was changed")
            t1 = time.perf_counter()
            header, arrays = client.message("GET", f"/jobs/{job_id}/result", long=True)
            download_s = time.perf_counter() - t1
        except BaseException:
            try:  # cancel and forget the job; a lost server reaps it itself
                client.request("DELETE", f"/jobs/{job_id}")
            except MedsegError:
                pass
            raise
        client.request("DELETE", f"/jobs/{job_id}")
        labels = arrays.get("labels")
        if labels is None or tuple(labels.shape) != tuple(volume.shape):
            raise ServerError("the server's result holds no label map of the volume's shape")
        timings = dict(header.get("timings") or {})
        timings.update(upload_s=round(upload_s, 4), download_s=round(download_s, 4))
        report(progress, 1.0, f"{model}: done on the server")
        return SegmentResult(np.array(labels), LabelTable.from_dict(header.get("table") or {}),
                             str(header.get("model", model)), timings, list(header.get("notes") or []))
    finally:
        if own:
            client.close()
