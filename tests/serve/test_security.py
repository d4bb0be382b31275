"""What the server refuses: no/wrong token, oversize and malformed bodies, fuzzed requests."""

from __future__ import annotations

import json
import os
import stat

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_medseg.errors import InvalidInputError
from napari_medseg.serve.auth import TokenCheck, make_token, owner_of, read_token, read_tokens
from napari_medseg.serve.client import Client, ServerError, volume_message
from napari_medseg.serve.wire import pack

from .conftest import TOKEN_A

ENDPOINTS = [
    ("GET", "/info"), ("POST", "/sessions"), ("POST", "/sessions/x/points"),
    ("POST", "/sessions/x/boxes"), ("POST", "/sessions/x/masks"), ("POST", "/sessions/x/undo"),
    ("POST", "/sessions/x/reset"), ("POST", "/sessions/x/embedding"), ("DELETE", "/sessions/x"),
    ("POST", "/jobs"), ("GET", "/jobs/x"), ("GET", "/jobs/x/result"), ("DELETE", "/jobs/x"),
    ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/no/such/path"),
]


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-token-wrong-token-wrong"}, {"Authorization": TOKEN_A},
    {"Authorization": f"Basic {TOKEN_A}"}, {"Authorization": f"Bearer {TOKEN_A}x"},
    {"Authorization": "Bearer x"},
], ids=["none", "wrong", "no-scheme", "basic", "longer", "short"])
def test_every_endpoint_refuses_without_the_token(server, headers):
    for method, path in ENDPOINTS:
        r = httpx.request(method, server.url + path, headers=headers, content=b"x" * 10)
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.headers["www-authenticate"] == "Bearer"
        assert "token" in r.json()["detail"]
    assert len(server.app.state.sessions) == 0


def test_the_right_token_opens_the_schema(server):
    r = httpx.get(server.url + "/openapi.json", headers={"Authorization": f"Bearer {TOKEN_A}"})
    assert r.status_code == 200 and "/sessions/{session_id}/points" in r.json()["paths"]


def test_oversized_uploads_are_refused_before_they_are_read(start_server, phantom):
    handle = start_server(max_upload_bytes=200_000)
    body = volume_message(phantom.ct, backend="region-growing")
    assert len(body) > 200_000
    with Client(handle.url, TOKEN_A) as a:
        with pytest.raises(ServerError, match="413.*over this server's limit"):
            a.json("POST", "/sessions", content=body)

    # without Content-Length (chunked): refused once the stream passes the limit
    def chunks():
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    r = httpx.post(handle.url + "/sessions", content=chunks(),
                   headers={"Authorization": f"Bearer {TOKEN_A}"})
    assert r.status_code == 413
    assert len(handle.app.state.sessions) == 0


def test_a_small_body_that_decompresses_to_a_huge_array_is_refused(start_server):
    """A zlib bomb: 1 MB of compressed zeros declared as a 4 GB volume."""
    import struct
    import zlib

    handle = start_server(max_upload_bytes=1_000_000)
    payload = zlib.compress(b"\0" * 5_000_000, 9)
    header = {"backend": "region-growing", "geometry": {"spacing_xyz": [1, 1, 1], "origin_xyz": [0, 0, 0],
                                                        "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1]},
              "arrays": [{"name": "image", "dtype": "int16", "shape": [1000, 1000, 2000],
                          "codec": "zlib", "offset": 0, "length": len(payload)}]}
    text = json.dumps(header).encode()
    body = b"MEDSEG1\n" + struct.pack(">I", len(text)) + text + payload
    r = httpx.post(handle.url + "/sessions", content=body, headers={"Authorization": f"Bearer {TOKEN_A}"})
    assert r.status_code == 400 and "over this server's limit" in r.json()["detail"]


def test_malformed_requests_get_4xx_with_a_message(server, phantom):
    from napari_medseg.io.volume import Volume

    small = Volume(phantom.ct.array[:10, :32, :32].copy(), spacing=phantom.ct.spacing, modality="CT")
    auth = {"Authorization": f"Bearer {TOKEN_A}"}
    url = server.url
    with Client(url, TOKEN_A) as a:
        sid = a.json("POST", "/sessions", content=volume_message(small, backend="region-growing"))["session_id"]
    cases = [
        ("POST", "/sessions", b"not a message", 400, "not a medseg message"),
        ("POST", "/sessions", pack({"backend": "region-growing"}, {"image": small.array}), 400, "geometry"),
        ("POST", "/sessions", pack({"backend": "nope", "geometry": small.geometry_dict()},
                                   {"image": small.array}), 400, "not offered"),
        ("POST", "/sessions", pack({"geometry": dict(small.geometry_dict(), spacing_xyz=[0, 1, 1])},
                                   {"image": small.array}), 400, "spacing"),
        ("POST", "/sessions", pack({"geometry": small.geometry_dict()}, {"image": small.array[0]}), 400, "3D"),
        ("POST", f"/sessions/{sid}/points", b"{not json", 400, "not valid JSON"),
        ("POST", f"/sessions/{sid}/points", b"[1, 2, 3]", 400, "JSON object"),
        ("POST", f"/sessions/{sid}/points", json.dumps({"zyx": [1, 2]}).encode(), 400, "[z, y, x]"),
        ("POST", f"/sessions/{sid}/points", json.dumps({"zyx": ["a", 2, 3]}).encode(), 400, "numbers"),
        ("POST", f"/sessions/{sid}/points", b'{"zyx": [1, 2, NaN]}', 400, "finite"),
        ("POST", f"/sessions/{sid}/points", json.dumps({"zyx": [99, 2, 3]}).encode(), 400, "outside the volume"),
        ("POST", f"/sessions/{sid}/points", json.dumps({"zyx": [1, 2, 3], "positive": "yes"}).encode(), 400, "true or false"),
        ("POST", f"/sessions/{sid}/boxes", json.dumps({"zyx0": [1, 2, 3]}).encode(), 400, "zyx1"),
        ("POST", f"/sessions/{sid}/masks", pack({"region": [[0, 2], [0, 2], [0, 2]]},
                                                {"mask": np.ones((3, 3, 3), bool)}), 400, "does not match"),
        ("POST", f"/sessions/{sid}/masks", pack({"region": [[0, 99], [0, 2], [0, 2]]},
                                                {"mask": np.ones((99, 2, 2), bool)}), 400, "does not fit"),
        ("POST", f"/sessions/{sid}/embedding", json.dumps({"start": [0, 0, 0]}).encode(), 400, "split mode"),
        ("POST", "/sessions/unknown/points", json.dumps({"zyx": [1, 2, 3]}).encode(), 404, "no session"),
        ("POST", "/jobs", pack({"geometry": small.geometry_dict()}, {"image": small.array}), 400, "model"),
    ]
    for method, path, body, status, words in cases:
        r = httpx.request(method, url + path, content=body, headers=auth)
        assert r.status_code == status, (path, words, r.status_code, r.text)
        assert words in r.json()["detail"], (words, r.json())
    # the server is still up and the session still works
    with Client(url, TOKEN_A) as a:
        assert a.info()["backends"][0] == "region-growing"
        header, arrays = a.message("POST", f"/sessions/{sid}/points", json_body={"zyx": [5, 16, 16]})
        assert arrays["mask"].dtype == bool


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzed_request_bodies_never_crash_the_server(fuzz_server, data):
    url, sid = fuzz_server
    auth = {"Authorization": f"Bearer {TOKEN_A}"}
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False)
        | st.text(max_size=20),
        lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
        max_leaves=20)
    path = data.draw(st.sampled_from([f"/sessions/{sid}/points", f"/sessions/{sid}/boxes",
                                      f"/sessions/{sid}/masks", f"/sessions/{sid}/embedding",
                                      "/sessions", "/jobs", f"/sessions/{sid}/undo"]))
    kind = data.draw(st.sampled_from(["json", "bytes", "message"]))
    if kind == "json":
        value = data.draw(st.dictionaries(st.sampled_from(["zyx", "zyx0", "zyx1", "positive", "start", "x"]),
                                          json_values, max_size=4) | json_values)
        body = json.dumps(value).encode()
    elif kind == "bytes":
        body = data.draw(st.binary(max_size=300))
    else:  # a well-framed message with a fuzzed header
        header = data.draw(st.dictionaries(st.sampled_from(["backend", "geometry", "model", "region", "roi_subset"]),
                                           json_values, max_size=4))
        arrays = data.draw(st.dictionaries(st.sampled_from(["image", "mask"]),
                                           st.sampled_from([np.zeros((2, 3, 4), np.int16), np.ones((1, 1, 1), bool),
                                                            np.zeros((0, 3, 3), np.float32), np.zeros(5, np.uint8)]),
                                           max_size=2))
        body = pack(header, arrays)
    r = httpx.post(url + path, content=body, headers=auth, timeout=30)
    assert r.status_code < 500, (path, body[:200], r.status_code, r.text)
    assert r.status_code in (200, 202) or r.json()["detail"]
    assert httpx.get(url + "/info", headers=auth).status_code == 200


@pytest.fixture(scope="module")
def fuzz_server(phantom):
    from napari_medseg.io.volume import Volume
    from napari_medseg.serve.app import ServeConfig, serve_in_thread

    handle = serve_in_thread(ServeConfig(tokens=[TOKEN_A], max_sessions=1000, max_jobs=1000,
                                         max_upload_bytes=2_000_000))
    small = Volume(phantom.ct.array[:10, :32, :32].copy(), spacing=phantom.ct.spacing, modality="CT")
    with Client(handle.url, TOKEN_A) as a:
        sid = a.json("POST", "/sessions", content=volume_message(small, backend="region-growing"))["session_id"]
    yield handle.url, sid
    handle.stop()


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


def test_bind_warning():
    from napari_medseg.serve.app import bind_warning

    assert bind_warning("127.0.0.1", tls=False) is None
    assert bind_warning("localhost", tls=False) is None
    assert bind_warning("::1", tls=False) is None
    assert "without TLS" in bind_warning("0.0.0.0", tls=False)
    assert "without TLS" in bind_warning("192.168.1.10", tls=False)
    assert bind_warning("0.0.0.0", tls=True) is None
