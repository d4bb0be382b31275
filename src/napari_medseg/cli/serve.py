"""``medseg serve --token-file FILE``: serve the project's backends to napari on other machines.

Also the options every remote-capable command shares (``--server URL --token-file FILE``,
used by ``medseg prompt`` and ``medseg segment``): :func:`add_remote_options` and
:func:`remote_client`.
"""

from __future__ import annotations

import argparse

_SERVE_HINT = "install the server extra: pip install 'napari-medseg[serve]'"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve interactive backends and automatic models to napari on other machines",
        description=(
            "Run the medseg server (FastAPI on uvicorn): clients upload a volume once, then "
            "send clicks and get back only the changed box; automatic jobs report progress and "
            "can be cancelled. Every request needs a bearer token from --token-file. Binds "
            "127.0.0.1 unless --host says otherwise; for other machines use TLS "
            "(--ssl-certfile/--ssl-keyfile), a TLS reverse proxy or an SSH tunnel. "
            "See docs/serve.md."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    parser.add_argument("--token-file", default=None,
                        help="file of accepted tokens, one per line (mode 600); each token's "
                             "sessions and jobs are kept apart")
    parser.add_argument("--new-token", default=None, metavar="FILE",
                        help="write a new random token to FILE (mode 600) and exit")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu", "mps"),
                        help="where network backends and models run (default: auto)")
    parser.add_argument("--runtime", default="auto", choices=("auto", "openvino", "torch"),
                        help="what runs the networks on a CPU (default: auto; GPUs use PyTorch)")
    parser.add_argument("--backends", default=None,
                        help="comma-separated interactive backends to offer (default: every "
                             "installed one)")
    parser.add_argument("--models", default=None,
                        help="comma-separated automatic models to offer (default: any "
                             "registry model; paths are never accepted)")
    parser.add_argument("--max-sessions", type=int, default=8,
                        help="most interactive sessions at once (default 8)")
    parser.add_argument("--max-jobs", type=int, default=8,
                        help="most automatic jobs held at once (default 8)")
    parser.add_argument("--idle-timeout", type=float, default=1800.0, metavar="S",
                        help="drop sessions and finished jobs unused for S seconds (default 1800)")
    parser.add_argument("--max-upload-mb", type=float, default=1024.0, metavar="M",
                        help="largest request body in MB (default 1024)")
    parser.add_argument("--ssl-certfile", default=None, help="TLS certificate (PEM), with --ssl-keyfile")
    parser.add_argument("--ssl-keyfile", default=None, help="TLS private key (PEM)")
    parser.add_argument("--print-openapi", action="store_true",
                        help="print the API's OpenAPI schema (JSON) and exit")
    parser.set_defaults(func=run)


def _names(text, what: str, known) -> tuple:
    from ..errors import InvalidInputError

    names = tuple(s.strip() for s in str(text).split(",") if s.strip())
    if not names:
        raise InvalidInputError(f"{what} is empty; name at least one")
    if known is not None:
        unknown = [n for n in names if n not in known]
        if unknown:
            raise InvalidInputError(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(known)}")
    return names


def _need_server_packages() -> None:
    from ..errors import MedsegError

    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise MedsegError(f"medseg serve needs {' and '.join(missing)}: {_SERVE_HINT}")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from ..errors import InvalidInputError

    if args.new_token:
        from ..serve.auth import make_token

        make_token(args.new_token)
        print(f"wrote a new token to {args.new_token} (mode 600); copy it to each client "
              "(also mode 600) and start the server with --token-file")
        return 0
    _need_server_packages()
    from ..serve.app import ServeConfig, bind_warning, openapi_schema, run_server

    if args.print_openapi:
        print(json.dumps(openapi_schema(), indent=2))
        return 0
    if not args.token_file:
        raise InvalidInputError("medseg serve needs --token-file FILE (make one with "
                                "`medseg serve --new-token FILE`); it never runs without a token")
    from ..serve.auth import read_tokens

    tokens = read_tokens(args.token_file)
    if not 1 <= args.port <= 65535:
        raise InvalidInputError(f"--port must be 1..65535, got {args.port}")
    if args.max_sessions < 1 or args.max_jobs < 1:
        raise InvalidInputError("--max-sessions and --max-jobs must be at least 1")
    if not args.idle_timeout > 0:
        raise InvalidInputError(f"--idle-timeout must be positive seconds, got {args.idle_timeout:g}")
    if not args.max_upload_mb > 0:
        raise InvalidInputError(f"--max-upload-mb must be positive, got {args.max_upload_mb:g}")
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise InvalidInputError("TLS needs both --ssl-certfile and --ssl-keyfile")
    from ..prompts.factory import BACKENDS

    backends = _names(args.backends, "--backends", list(BACKENDS)) if args.backends else None
    models = _names(args.models, "--models", None) if args.models else None
    if models:
        from ..inference.segment import check_segment_options

        for model in models:
            if "/" in model or "\\" in model:
                raise InvalidInputError(f"--models takes registry names, not paths ({model})")
            check_segment_options(model)
    config = ServeConfig(tokens=tokens, device=args.device, runtime=args.runtime,
                         backends=backends, models=models,
                         max_sessions=args.max_sessions, max_jobs=args.max_jobs,
                         idle_timeout_s=args.idle_timeout,
                         max_upload_bytes=int(args.max_upload_mb * 1e6))
    warning = bind_warning(args.host, tls=bool(args.ssl_certfile))
    if warning:
        bar = "!" * min(100, len(warning))
        print(f"{bar}\n{warning}\n{bar}", file=sys.stderr)
    scheme = "https" if args.ssl_certfile else "http"
    print(f"medseg serve: {scheme}://{args.host}:{args.port} ({len(tokens)} token(s), device "
          f"{args.device}, runtime {args.runtime}, at most {args.max_sessions} sessions, idle timeout {args.idle_timeout:g} s)",
          file=sys.stderr)
    run_server(config, args.host, args.port, ssl_certfile=args.ssl_certfile,
               ssl_keyfile=args.ssl_keyfile)
    return 0


# --------------------------------------------------------------- remote options
def add_remote_options(parser: argparse.ArgumentParser) -> None:
    """``--server URL`` and ``--token-file FILE`` (run on a ``medseg serve`` machine)."""
    parser.add_argument("--server", default=None, metavar="URL",
                        help="run on a medseg server (e.g. http://gpu-box:8765) instead of here; "
                             "writes the same files")
    parser.add_argument("--token-file", default=None, metavar="FILE",
                        help="the server's token (a file of mode 600), with --server")


def remote_client(args: argparse.Namespace):
    """A :class:`~napari_medseg.serve.client.Client` for ``--server``, or None without it.

    Refuses ``--token-file`` without ``--server`` and the reverse, and options that only
    apply to local runs (``--weights``, a ``--device``, a ``--runtime``): the server uses its own.
    """
    from ..errors import InvalidInputError, MedsegError

    server, token_file = getattr(args, "server", None), getattr(args, "token_file", None)
    if server is None:
        if token_file is not None:
            raise InvalidInputError("--token-file goes with --server URL; without --server the "
                                    "command runs here and needs no token")
        return None
    if token_file is None:
        raise InvalidInputError(f"--server {server} needs --token-file FILE (the server's token)")
    if getattr(args, "weights", None):
        raise InvalidInputError("--weights does not apply with --server: the server uses its "
                                "own installed weights; drop --weights")
    if getattr(args, "device", "auto") not in (None, "auto"):
        raise InvalidInputError(f"--device {args.device} does not apply with --server: the "
                                "server's --device decides; drop --device")
    if getattr(args, "runtime", "auto") not in (None, "auto"):
        raise InvalidInputError(f"--runtime {args.runtime} does not apply with --server: the "
                                "server's `medseg serve --runtime` decides; drop --runtime")
    import importlib.util

    if importlib.util.find_spec("httpx") is None:
        raise MedsegError(f"--server needs httpx: {_SERVE_HINT}")
    from ..serve.client import Client

    return Client.from_token_file(server, token_file)
