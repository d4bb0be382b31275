"""The ``medseg`` command line: the same core as the widgets, headless.

Each sub-command lives in its own module in this package and defines
``register(subparsers)``, which adds a parser whose ``func`` default is the
handler ``(args) -> int``. Modules are discovered here, so adding a command never
touches this file.

Errors derived from :class:`~napari_medseg.errors.MedsegError` become one line on
stderr and exit status 2; ``--debug`` shows the traceback instead. A closed stdout
(``medseg ... --json | head``) ends the command quietly with status 141, as Unix tools
do; coordinate lists may start with a minus sign (``--point -1,52,91``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import re
import sys
from typing import Optional, Sequence

from .. import __version__
from ..errors import MedsegError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medseg",
        description="napari-medseg: CT/MRI segmentation, measurement and export, headless.",
    )
    parser.add_argument("--version", action="version", version=f"medseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


#: A comma-separated list of numbers that starts with a minus sign (``-1,52,91``).
_NEGATIVE_LIST = re.compile(r"^-\s*(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?(\s*,\s*-?\s*(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)+$")


def _attach_negative_values(argv: Sequence[str]) -> list:
    """``--point -1,52,91`` -> ``--point=-1,52,91``.

    argparse takes any token starting with ``-`` that is not a plain negative number
    for an option, so a coordinate list with a negative first value would be "expected
    one argument". Such a token is never an option, so it is attached to the long
    option before it (a flag that takes no value then gets argparse's own error).
    """
    out: list = []
    for token in argv:
        if (out and _NEGATIVE_LIST.match(token) and out[-1].startswith("--")
                and "=" not in out[-1] and out[-1] != "--"):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def _stdout_closed() -> int:
    """The reader of stdout went away (``medseg ... --json | head``): exit quietly.

    Unix tools die of SIGPIPE there, which the shell reports as 141; stdout is pointed
    at /dev/null so that Python's final flush does not print a second error.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 128 + 13


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one ``medseg`` command; returns the exit status.

    0: success; 1: usage shown; 2: a refused input or failed step (one line on stderr);
    130: interrupted; 141: stdout was closed by its reader (e.g. ``| head``).
    """
    parser = build_parser()
    args = parser.parse_args(_attach_negative_values(sys.argv[1:] if argv is None else list(argv)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        return _stdout_closed()
    except MedsegError as exc:
        if args.debug:
            raise
        print(f"medseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"medseg {args.command}: interrupted; no output was written", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
