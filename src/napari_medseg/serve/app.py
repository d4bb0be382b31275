"""The inference server: a FastAPI app over the project's prompt sessions and ``segment()``.

Endpoints (every one, the OpenAPI schema included, answers 401 without a valid
``Authorization: Bearer TOKEN`` header):

===============================  ==========================================================
``GET /info``                    backends, models, limits, version
``POST /sessions``               upload a volume once (wire message: ``image`` + geometry,
                                 ``backend``); prepares the backend; returns the session id
``POST /sessions/{id}/points``   JSON ``{"zyx": [z, y, x], "positive": true}``
``POST /sessions/{id}/boxes``    JSON ``{"zyx0": [...], "zyx1": [...]}``
``POST /sessions/{id}/masks``    wire message: ``mask`` (the initial mask's bounding box)
                                 and ``region``
``POST /sessions/{id}/undo``     revert the last interaction
``POST /sessions/{id}/reset``    forget the object's prompts
``POST /sessions/{id}/embedding`` SAM-Med3D split mode: JSON ``{"start": [z, y, x]}`` ->
                                 the image embedding of that crop (``embedding``)
``DELETE /sessions/{id}``        close the session
``POST /jobs``                   automatic segmentation (wire message: ``image`` + geometry,
                                 ``model``, ``roi_subset``); returns the job id
``GET /jobs/{id}``               state, progress fraction and text, error, notes
``GET /jobs/{id}/result``        wire message: ``labels`` + ``table`` (label table dict)
``DELETE /jobs/{id}``            cancel (a running job stops at its next check) and forget
``GET /openapi.json``            the API schema (``medseg serve --print-openapi`` prints it)
===============================  ==========================================================

Each interactive reply is a wire message whose header holds ``changed`` (the bounding box
whose voxels may differ), the object's prompts, ``can_undo``, ``voxels`` and the
backend's ``message``, and whose only array, ``mask``, is the object's mask *inside*
``changed``: a click costs bytes in proportion to the changed box, not the volume.

Errors are JSON ``{"detail": ..., "error": ...}``: 400 malformed or refused input, 401
no or wrong token, 404 unknown id (or another token's), 413 body over the upload limit,
429 session/job limit, 503 the backend cannot run here (missing weights or package).
"""

# no `from __future__ import annotations`: FastAPI resolves the routes' Request
# annotations at definition time, and Request is imported inside create_app

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from .. import __version__
from ..errors import Cancelled, InvalidInputError, MedsegError, WeightsNotFoundError
from .auth import TokenCheck
from .store import JobStore, LimitError, NotFoundError, SessionStore
from .wire import MEDIA_TYPE, WireFormatError, pack, region_from_json, region_to_json, unpack

log = logging.getLogger(__name__)


@dataclass
class ServeConfig:
    """What a server offers and what it refuses.

    Parameters
    ----------
    tokens : list of str
        Accepted bearer tokens (each token's sessions and jobs are kept apart).
    device : str
        Where network backends and models run (``auto``, ``cuda``, ``cpu``).
    runtime : str
        What runs their networks on a CPU (``auto``, ``openvino``, ``torch``; see
        :mod:`napari_medseg.inference.runtimes`), for the default factory and segment
        function.
    backends : tuple of str, optional
        Interactive backends offered (default: every backend of
        :mod:`napari_medseg.prompts.factory` whose code is installed).
    models : tuple of str, optional
        Automatic models offered (registry names; default: any registry model). Paths are
        always refused: clients never name files on the server.
    max_sessions, max_jobs : int
        Most sessions / jobs held at once.
    idle_timeout_s : float
        Sessions and finished jobs unused this long are dropped.
    max_upload_bytes : int
        Largest request body, and largest array once decompressed (x4: a CT compresses).
    session_factory : callable, optional
        ``(backend, device) -> PromptSession``; default
        :func:`~napari_medseg.prompts.factory.make_session` (tests inject networks here).
    segment_fn : callable, optional
        ``(volume, model, roi_subset, device, progress, cancel) -> SegmentResult``; default
        :func:`~napari_medseg.inference.segment.segment_with_info`.
    """

    tokens: list
    device: str = "auto"
    runtime: str = "auto"
    backends: Optional[tuple] = None
    models: Optional[tuple] = None
    max_sessions: int = 8
    max_jobs: int = 8
    idle_timeout_s: float = 1800.0
    max_upload_bytes: int = 1 << 30
    session_factory: Optional[Callable] = None
    segment_fn: Optional[Callable] = None
    reap_interval_s: Optional[float] = None
    extra: dict = field(default_factory=dict)

    @property
    def max_array_bytes(self) -> int:
        return 4 * int(self.max_upload_bytes)


def _default_factory(backend: str, device: str, runtime: str = "auto"):
    from ..prompts.factory import BACKENDS, make_session

    spec = BACKENDS.get(backend)
    # weights-free backends run on the CPU and refuse a GPU device: give them "auto"
    dev = device if spec is not None and spec.weights_card is not None else "auto"
    return make_session(backend, device=dev, runtime=runtime)


def _default_segment(volume, model, roi_subset, device, progress, cancel, runtime: str = "auto"):
    from ..inference.segment import segment_with_info

    return segment_with_info(volume, model, device=device, roi_subset=roi_subset,
                             progress=progress, cancel=cancel, runtime=runtime)


class _Refused(Exception):
    """A request refused with an HTTP status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, _Refused):
        return exc.status
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, LimitError):
        return 429
    if isinstance(exc, WeightsNotFoundError):
        return 503
    if isinstance(exc, Cancelled):
        return 409
    if isinstance(exc, (InvalidInputError, WireFormatError)):
        return 400
    if isinstance(exc, MedsegError):
        # a backend whose package or module is missing on the server
        return 503 if "not available" in str(exc) or "could not be loaded" in str(exc) else 400
    return 500


def _json_error(status: int, message: str, kind: str):
    from starlette.responses import JSONResponse

    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": message, "error": kind}, status_code=status, headers=headers)


class _Guard:
    """ASGI middleware: the bearer token on every request, the upload limit before reading.

    Runs before routing, so unknown paths, the OpenAPI schema and malformed requests are
    all refused without a token, and a too-large ``Content-Length`` is refused before one
    byte of the body is read.
    """

    def __init__(self, app, check: TokenCheck, max_body: int) -> None:
        self.app = app
        self.check = check
        self.max_body = int(max_body)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        owner = self.check.owner(headers.get(b"authorization"))
        if owner is None:
            response = _json_error(
                401, "missing or wrong bearer token: send 'Authorization: Bearer TOKEN' with a "
                     "token from the server's --token-file", "unauthorized")
            await response(scope, receive, send)
            return
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                n = -1
            if n < 0:
                await _json_error(400, "invalid Content-Length header", "bad_request")(scope, receive, send)
                return
            if n > self.max_body:
                await _json_error(
                    413, f"the request body of {n / 1e6:.1f} MB is over this server's limit of "
                         f"{self.max_body / 1e6:.1f} MB (medseg serve --max-upload-mb)",
                    "too_large")(scope, receive, send)
                return
        scope.setdefault("state", {})["owner"] = owner
        await self.app(scope, receive, send)


def create_app(config: ServeConfig):
    """The FastAPI application serving ``config`` (run it with uvicorn).

    Parameters
    ----------
    config : ServeConfig
        Tokens, limits and what is offered.

    Returns
    -------
    fastapi.FastAPI
        With ``app.state.sessions`` (:class:`SessionStore`) and ``app.state.jobs``
        (:class:`JobStore`).
    """
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, Response

    from functools import partial

    factory = config.session_factory or partial(_default_factory, runtime=config.runtime)
    segment_fn = config.segment_fn or partial(_default_segment, runtime=config.runtime)
    sessions = SessionStore(config.max_sessions, config.idle_timeout_s)

    def run_job(volume, model, roi, progress, cancel):
        result = segment_fn(volume, model, roi, config.device, progress, cancel)
        return result.labels, result.table.to_dict(), list(result.notes), dict(result.timings)

    jobs = JobStore(run_job, config.max_jobs, config.idle_timeout_s)
    interval = config.reap_interval_s or max(0.2, min(30.0, config.idle_timeout_s / 4))
    stop = threading.Event()

    def reaper() -> None:
        while not stop.wait(interval):
            for sid in sessions.reap():
                log.info("session %s expired (idle)", sid[:6])
            jobs.reap()

    @asynccontextmanager
    async def lifespan(app):
        thread = threading.Thread(target=reaper, name="medseg-reaper", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            jobs.shutdown()

    app = FastAPI(title="napari-medseg server", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="Interactive (click) and automatic segmentation for a napari "
                              "on another machine. Bodies of volume uploads and replies use "
                              f"the {MEDIA_TYPE} wire format (napari_medseg.serve.wire).")
    app.state.sessions = sessions
    app.state.jobs = jobs
    app.state.config = config
    app.add_middleware(_Guard, check=TokenCheck(config.tokens), max_body=config.max_upload_bytes)

    @app.exception_handler(Exception)
    async def _any_error(request: Request, exc: Exception):
        status = _status_of(exc)
        if status >= 500 and not isinstance(exc, MedsegError):
            log.exception("request %s %s failed", request.method, request.url.path)
            return _json_error(500, f"internal server error ({type(exc).__name__}); see the "
                                    "server's log", "internal")
        return _json_error(status, getattr(exc, "message", None) or str(exc), type(exc).__name__)

    for kind in (MedsegError, _Refused, WireFormatError):
        app.add_exception_handler(kind, _any_error)

    def owner(request: Request) -> str:
        return request.scope["state"]["owner"]

    async def body(request: Request) -> bytes:
        """The whole body, refused as soon as it passes the limit (chunked uploads too)."""
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > config.max_upload_bytes:
                raise _Refused(413, f"the request body is over this server's limit of "
                                    f"{config.max_upload_bytes / 1e6:.1f} MB (medseg serve --max-upload-mb)")
            chunks.append(chunk)
        return b"".join(chunks)

    async def json_body(request: Request) -> dict:
        raw = await body(request)
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise _Refused(400, f"the body is not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise _Refused(400, "the body must be a JSON object")
        return data

    def volume_from(header: dict, arrays: dict):
        from ..io.volume import Volume

        image = arrays.get("image")
        if image is None:
            raise _Refused(400, "the message holds no 'image' array")
        geometry = header.get("geometry")
        if not isinstance(geometry, dict):
            raise _Refused(400, "the message needs a 'geometry' object (Volume.geometry_dict())")
        if image.dtype == bool:
            raise _Refused(400, "the image is boolean; send the scan's intensities")
        try:
            return Volume.from_geometry_dict(image, geometry)
        except (KeyError, TypeError, ValueError) as exc:
            raise _Refused(400, f"the geometry is invalid ({exc})") from exc

    def offered_backends() -> list:
        from ..prompts.factory import available_backends

        names = available_backends()
        return [n for n in names if config.backends is None or n in config.backends]

    def point(value, what: str) -> tuple:
        if not isinstance(value, (list, tuple)) or len(value) != 3:
            raise _Refused(400, f"'{what}' must be [z, y, x], got {value!r}")
        try:
            out = tuple(float(v) for v in value)
        except (TypeError, ValueError) as exc:
            raise _Refused(400, f"'{what}' must hold numbers, got {value!r}") from exc
        if not all(np.isfinite(out)):
            raise _Refused(400, f"'{what}' must hold finite numbers, got {value!r}")
        return out

    def reply(entry, update) -> Response:
        session = entry.session
        changed = update.changed if update is not None else (slice(0, 0),) * 3
        p = session.prompts
        header = {
            "changed": region_to_json(changed),
            "prompts": {"points": [list(q) for q in p.points], "labels": list(p.labels),
                        "box": [list(c) for c in p.box] if p.box is not None else None,
                        "initial_mask": p.initial_mask is not None},
            "can_undo": bool(session.can_undo),
            "timing_s": float(getattr(update, "timing_s", 0.0) or 0.0),
            "message": str(getattr(session, "message", "") or ""),
        }
        arrays = {"mask": np.ascontiguousarray(session.mask[changed])}
        return Response(pack(header, arrays), media_type=MEDIA_TYPE)

    async def interact(request: Request, session_id: str, action: Callable) -> Response:
        entry = sessions.get(owner(request), session_id)

        def work():
            with entry.lock:  # one interaction of a session at a time
                return reply(entry, action(entry.session))

        return await run_in_threadpool(work)

    # ---------------------------------------------------------------- routes
    @app.get("/info")
    async def info() -> dict:
        """Backends, models and limits of this server."""
        return {"version": __version__, "backends": offered_backends(),
                "models": list(config.models) if config.models is not None else None,
                "split": ["sam-med3d"], "device": config.device,
                "limits": {"max_sessions": config.max_sessions, "max_jobs": config.max_jobs,
                           "idle_timeout_s": config.idle_timeout_s,
                           "max_upload_bytes": config.max_upload_bytes}}

    @app.post("/sessions")
    async def create_session(request: Request) -> JSONResponse:
        """Upload a volume (wire message) and prepare an interactive backend on it."""
        who = owner(request)
        sessions.reserve()  # a full server refuses before the upload is decoded
        raw = await body(request)
        header, arrays = await run_in_threadpool(unpack, raw, config.max_array_bytes)
        backend = str(header.get("backend") or "region-growing").strip().lower()
        if backend not in offered_backends():
            raise _Refused(400, f"backend {backend!r} is not offered by this server; it offers: "
                                f"{', '.join(offered_backends())}")
        volume = volume_from(header, arrays)

        def prepare():
            import time

            t0 = time.perf_counter()
            session = factory(backend, config.device)
            session.set_volume(volume)
            return session, time.perf_counter() - t0

        session, seconds = await run_in_threadpool(prepare)
        entry = sessions.add(who, backend, session)
        return JSONResponse({"session_id": entry.id, "backend": backend,
                             "shape": list(volume.shape), "setup_s": round(seconds, 4)})

    @app.post("/sessions/{session_id}/points")
    async def add_point(session_id: str, request: Request) -> Response:
        """One click: ``{"zyx": [z, y, x], "positive": true}``."""
        data = await json_body(request)
        zyx = point(data.get("zyx"), "zyx")
        positive = data.get("positive", True)
        if not isinstance(positive, bool):
            raise _Refused(400, f"'positive' must be true or false, got {positive!r}")
        return await interact(request, session_id, lambda s: s.add_point(zyx, positive=positive))

    @app.post("/sessions/{session_id}/boxes")
    async def add_box(session_id: str, request: Request) -> Response:
        """A box: ``{"zyx0": [...], "zyx1": [...]}`` (opposite corners, voxel indices)."""
        data = await json_body(request)
        a, b = point(data.get("zyx0"), "zyx0"), point(data.get("zyx1"), "zyx1")
        return await interact(request, session_id, lambda s: s.add_box(a, b))

    @app.post("/sessions/{session_id}/masks")
    async def set_mask(session_id: str, request: Request) -> Response:
        """An initial mask: wire message with ``mask`` (inside ``region``) and ``region``."""
        entry = sessions.get(owner(request), session_id)
        raw = await body(request)
        header, arrays = await run_in_threadpool(unpack, raw, config.max_array_bytes)
        sub = arrays.get("mask")
        if sub is None:
            raise _Refused(400, "the message holds no 'mask' array")
        shape = entry.session.volume.shape
        region = region_from_json(header.get("region"), shape)
        if tuple(sub.shape) != tuple(r.stop - r.start for r in region):
            raise _Refused(400, f"the mask's shape {list(sub.shape)} does not match its region "
                                f"{region_to_json(region)}")

        def action(session):
            full = np.zeros(shape, dtype=bool)
            full[region] = sub.astype(bool)
            return session.set_initial_mask(full)

        return await interact(request, session_id, action)

    @app.post("/sessions/{session_id}/undo")
    async def undo(session_id: str, request: Request) -> Response:
        """Revert the last interaction."""
        return await interact(request, session_id, lambda s: s.undo())

    @app.post("/sessions/{session_id}/reset")
    async def reset(session_id: str, request: Request) -> Response:
        """Forget the object's prompts (the changed box covers the old mask)."""
        def action(session):
            from .._ndimage import bbox

            before = bbox(session.mask) if session._mask is not None else None
            session.reset()
            from ..prompts.base import Update

            return Update(session.mask, before or (slice(0, 0),) * 3)

        return await interact(request, session_id, action)

    @app.post("/sessions/{session_id}/embedding")
    async def embedding(session_id: str, request: Request) -> Response:
        """SAM-Med3D split mode: the image embedding of the crop starting at ``start``."""
        data = await json_body(request)
        entry = sessions.get(owner(request), session_id)
        if not hasattr(entry.session, "_embedding"):
            raise _Refused(400, f"backend {entry.backend!r} has no image embedding to fetch; "
                                "split mode is for sam-med3d")
        start = data.get("start")
        if not isinstance(start, list) or len(start) != 3 or not all(isinstance(v, int) for v in start):
            raise _Refused(400, f"'start' must be three integers (the crop's corner), got {start!r}")

        def work():
            with entry.lock:
                emb = entry.session._embedding(tuple(start))
                arr = emb.detach().float().cpu().numpy()
            return Response(pack({"start": start}, {"embedding": arr}), media_type=MEDIA_TYPE)

        return await run_in_threadpool(work)

    @app.delete("/sessions/{session_id}")
    async def close_session(session_id: str, request: Request) -> dict:
        """Close a session and free its memory."""
        sessions.remove(owner(request), session_id)
        return {"deleted": session_id}

    @app.post("/jobs")
    async def submit(request: Request) -> JSONResponse:
        """Automatic segmentation of an uploaded volume (wire message)."""
        who = owner(request)
        raw = await body(request)
        header, arrays = await run_in_threadpool(unpack, raw, config.max_array_bytes)
        model = header.get("model")
        if not isinstance(model, str) or not model.strip():
            raise _Refused(400, "the message needs 'model' (a registry name, e.g. hu-tissue)")
        model = model.strip()
        if "/" in model or "\\" in model or model.startswith("."):
            raise _Refused(400, f"model {model!r} looks like a path; a server runs registry "
                                "models only (clients never name files on the server)")
        if config.models is not None and model not in config.models:
            raise _Refused(400, f"model {model!r} is not offered by this server; it offers: "
                                f"{', '.join(config.models)}")
        roi = header.get("roi_subset")
        if roi is not None and (not isinstance(roi, list) or not all(isinstance(s, str) for s in roi)):
            raise _Refused(400, "'roi_subset' must be a list of structure names")
        volume = volume_from(header, arrays)
        from ..inference.segment import check_segment_options

        # unknown models and structure names are refused now, not in the job
        await run_in_threadpool(check_segment_options, model, device="auto", roi_subset=roi)
        job = jobs.submit(who, volume, model, roi)
        return JSONResponse({"job_id": job.id, "model": model}, status_code=202)

    @app.get("/jobs/{job_id}")
    async def job_status(job_id: str, request: Request) -> dict:
        """State (queued, running, done, failed, cancelled), progress and messages."""
        return jobs.get(owner(request), job_id).status()

    @app.get("/jobs/{job_id}/result")
    async def job_result(job_id: str, request: Request) -> Response:
        """The label map and its class table (wire message); 409 until the job is done."""
        job = jobs.get(owner(request), job_id)
        if job.state != "done":
            detail = job.error or f"the job is {job.state}"
            raise _Refused(409, f"no result: {detail}")
        data = await run_in_threadpool(
            pack, {"model": job.model, "table": job.table, "notes": job.notes,
                   "timings": job.timings}, {"labels": job.labels})
        return Response(data, media_type=MEDIA_TYPE)

    @app.delete("/jobs/{job_id}")
    async def cancel_job(job_id: str, request: Request) -> dict:
        """Cancel a job (a running one stops at its next check) and forget it."""
        job = jobs.cancel(owner(request), job_id)
        return {"deleted": job_id, "state": job.state}

    return app


def openapi_schema(config: Optional[ServeConfig] = None) -> dict:
    """The server's OpenAPI schema (for ``medseg serve --print-openapi``)."""
    app = create_app(config or ServeConfig(tokens=["x" * 16]))
    return app.openapi()


def bind_warning(host: str, tls: bool) -> Optional[str]:
    """A loud warning for a server reachable from other machines without TLS, else None."""
    import ipaddress

    name = str(host).strip().strip("[]")
    try:
        loopback = ipaddress.ip_address(name).is_loopback
    except ValueError:
        loopback = name == "localhost"
    if loopback or tls:
        return None
    return (f"WARNING: listening on {host} without TLS: tokens and patient images cross the "
            "network in clear text. Use --ssl-certfile/--ssl-keyfile, a TLS reverse proxy, "
            "or an SSH tunnel to a server bound to 127.0.0.1.")


def run_server(config: ServeConfig, host: str = "127.0.0.1", port: int = 8765, *,
               ssl_certfile: Optional[str] = None, ssl_keyfile: Optional[str] = None,
               log_level: str = "info") -> None:
    """Serve ``config`` with uvicorn until interrupted (what ``medseg serve`` runs)."""
    import uvicorn

    uvicorn.run(create_app(config), host=host, port=int(port), ssl_certfile=ssl_certfile,
                ssl_keyfile=ssl_keyfile, log_level=log_level, access_log=False,
                timeout_keep_alive=30)


def serve_in_thread(config: ServeConfig, host: str = "127.0.0.1", port: int = 0) -> Any:
    """Start a real uvicorn server in a daemon thread (tests, benchmarks, notebooks).

    Returns an object with ``url``, ``app`` and ``stop()``; ``port=0`` picks a free port.
    """
    import socket
    import time

    import uvicorn

    if not port:
        # a free port, released again for uvicorn to bind: handing uvicorn the bound socket
        # itself (``sockets=``) made every loopback request ~40 ms slower
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=int(port), log_level="warning",
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True, name="medseg-serve")
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the medseg server did not start on {host}:{port}")
        time.sleep(0.02)

    class Handle:
        url = f"http://{host}:{port}"

        def __init__(self) -> None:
            self.app = app
            self.server = server
            self.thread = thread

        def stop(self) -> None:
            server.should_exit = True
            thread.join(10)

    return Handle()

