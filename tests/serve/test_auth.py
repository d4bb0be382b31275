"""Token files (mode 600, length) and the constant-time token check (``serve/auth.py``)."""

from __future__ import annotations

import os
import stat

import pytest

from napari_medseg.errors import InvalidInputError
from napari_medseg.serve.auth import TokenCheck, make_token, owner_of, read_token, read_tokens

from ._helpers import TOKEN_A


# ------------------------------------------------------------------ token files
def test_token_files(tmp_path):
    path = tmp_path / "token"
    token = make_token(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_token(path) == token and len(token) >= 32
    with pytest.raises(InvalidInputError, match="refusing to overwrite"):
        make_token(path)
    os.chmod(path, 0o644)
    with pytest.raises(InvalidInputError, match="chmod 600"):
        read_tokens(path)
    os.chmod(path, 0o600)
    path.write_text("# lab tokens\n\n" + token + "\nsecond-token-0123456789\n")
    assert read_tokens(path) == [token, "second-token-0123456789"]
    path.write_text("short\n")
    with pytest.raises(InvalidInputError, match="at least 16"):
        read_tokens(path)
    path.write_text("# nothing\n")
    with pytest.raises(InvalidInputError, match="holds no token"):
        read_tokens(path)
    with pytest.raises(InvalidInputError, match="does not exist.*--new-token"):
        read_tokens(tmp_path / "missing")


def test_token_check_uses_constant_time_comparison(monkeypatch):
    import hmac

    from napari_medseg.serve import auth

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    check = TokenCheck([TOKEN_A, "other-token-0123456789"])
    assert check.owner(f"Bearer {TOKEN_A}".encode()) == owner_of(TOKEN_A)
    assert len(calls) == 2  # every token compared, whichever matched
    assert check.owner(b"Bearer nope") is None and check.owner(None) is None
    assert check.owner(f"bearer {TOKEN_A}".encode()) == owner_of(TOKEN_A)
