"""Bearer tokens: read from a private file, compared in constant time.

A token file holds one token per line (blank lines and ``#`` comments are skipped); the
server accepts any of them and keeps each token's sessions and jobs apart, so one file
line per person or machine gives per-client isolation. The file must not be readable by
other users (``chmod 600``): a token is a password.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Iterable, Optional

from ..errors import InvalidInputError

#: shortest token accepted (characters); ``make_token`` writes 43
MIN_TOKEN_CHARS = 16


def read_tokens(path) -> list:
    """The tokens of a token file, refusing files other users can read.

    Raises
    ------
    InvalidInputError
        The file is missing, world-readable, empty, or holds a token shorter than
        :data:`MIN_TOKEN_CHARS` (the message says which and what to do).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise InvalidInputError(
            f"token file {p} does not exist; create one with `medseg serve --new-token {p}` "
            "(on the server) and copy it to the client with permissions 600")
    mode = p.stat().st_mode
    if os.name == "posix" and mode & (stat.S_IROTH | stat.S_IWOTH):
        raise InvalidInputError(
            f"token file {p} is readable or writable by every user on this machine "
            f"(mode {stat.filemode(mode)}); a token is a password: run `chmod 600 {p}`")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"token file {p} cannot be read ({exc})") from exc
    tokens = [line.strip() for line in text.splitlines()
              if line.strip() and not line.strip().startswith("#")]
    if not tokens:
        raise InvalidInputError(f"token file {p} holds no token; write one with `medseg serve --new-token {p}`")
    for token in tokens:
        if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
            raise InvalidInputError(
                f"token file {p} holds a token of {len(token)} characters or with spaces; use at "
                f"least {MIN_TOKEN_CHARS} characters without spaces (`medseg serve --new-token FILE` "
                "makes a good one)")
    return tokens


def read_token(path) -> str:
    """The first token of a token file (what a client sends)."""
    return read_tokens(path)[0]


def make_token(path) -> str:
    """Write a new random token to ``path`` (created with mode 600); refuse to overwrite."""
    p = Path(path).expanduser()
    if p.exists():
        raise InvalidInputError(f"{p} exists; refusing to overwrite a token file (delete it first)")
    token = secrets.token_urlsafe(32)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return token


def owner_of(token: str) -> str:
    """A stable, non-secret name of a token (its sessions and jobs are keyed by it)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:32]


class TokenCheck:
    """Checks ``Authorization: Bearer ...`` headers against the configured tokens."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = [t.encode("utf-8") for t in tokens]
        if not self._tokens:
            raise InvalidInputError("the server needs at least one token")

    def owner(self, authorization: Optional[bytes]) -> Optional[str]:
        """The owner of a valid header value, or None.

        Every configured token is compared, each with :func:`hmac.compare_digest`, so the
        time taken says nothing about which token or how much of it matched.
        """
        if not authorization:
            return None
        scheme, _, value = authorization.partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        value = value.strip()
        match = None
        for token in self._tokens:
            if hmac.compare_digest(value, token):
                match = token
        return owner_of(match.decode("utf-8")) if match is not None else None
