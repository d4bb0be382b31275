"""Helpers shared by the CLI sub-commands (progress bar, JSON output, point parsing)."""

from __future__ import annotations

import json
import sys
from typing import Any, Optional

from ..errors import InvalidInputError


def print_json(obj: Any) -> None:
    """Print one JSON document on stdout (numpy scalars and arrays converted)."""
    import numpy as np

    def _default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    json.dump(obj, sys.stdout, indent=2, default=_default)
    sys.stdout.write("\n")


def parse_triple(text: str, what: str = "point", n: int = 3) -> tuple:
    """Parse ``"z,y,x"`` (or ``n`` comma-separated numbers) into a tuple of floats."""
    parts = [p for p in text.replace(" ", "").split(",") if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != n:
        raise InvalidInputError(f"{what} must be {n} comma-separated numbers, got {text!r}")
    return values


class TqdmProgress:
    """A ``progress(fraction, text)`` callback drawing a tqdm bar on stderr (quiet if disabled)."""

    def __init__(self, desc: str = "", enabled: Optional[bool] = None) -> None:
        from tqdm import tqdm

        if enabled is None:
            enabled = sys.stderr.isatty()
        self._bar = tqdm(total=1000, desc=desc, disable=not enabled, file=sys.stderr,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

    def __call__(self, fraction: float, text: str = "") -> None:
        self._bar.n = int(round(1000 * fraction))
        if text:
            self._bar.set_postfix_str(text, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> "TqdmProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
