"""The server application (``serve/app.py``) on loopback: job states, what it refuses
(no/wrong token, oversize and malformed bodies, fuzzed requests) and the bind warning."""

from __future__ import annotations

import json
import threading
import time

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_medseg.serve.client import Client, ServerError, remote_segment, volume_message
from napari_medseg.serve.wire import pack

from ._helpers import TOKEN_A, TOKEN_B, slow_segment


def test_job_states_through_the_raw_api(start_server, phantom):
    """GET /jobs/{id} moves queued/running -> done; the result is refused (409) before that;
    another token gets 404; DELETE cancels a running job."""
    from napari_medseg.serve.client import volume_message

    started = threading.Event()
    handle = start_server(segment_fn=slow_segment(started, steps=60))
    with Client(handle.url, TOKEN_A) as a, Client(handle.url, TOKEN_B) as b:
        job = a.json("POST", "/jobs", content=volume_message(phantom.ct, model="hu-tissue"))["job_id"]
        assert a.json("GET", f"/jobs/{job}")["state"] in ("queued", "running")
        with pytest.raises(ServerError, match="409"):
            a.request("GET", f"/jobs/{job}/result")
        with pytest.raises(ServerError, match="404"):
            b.json("GET", f"/jobs/{job}")
        fractions = []
        while (status := a.json("GET", f"/jobs/{job}"))["state"] != "done":
            fractions.append(status["progress"])
            time.sleep(0.05)
        assert fractions == sorted(fractions) and status["progress"] == 1.0
        header, arrays = a.message("GET", f"/jobs/{job}/result")
        assert arrays["labels"].shape == phantom.ct.shape and header["table"]["labels"][0]["name"] == "x"
        second = a.json("POST", "/jobs", content=volume_message(phantom.ct, model="hu-tissue"))["job_id"]
        assert a.json("DELETE", f"/jobs/{second}")["deleted"] == second
        with pytest.raises(ServerError, match="404"):
            a.json("GET", f"/jobs/{second}")


def test_the_servers_runtime_reaches_its_segmentations(start_server, phantom, monkeypatch):
    """``medseg serve --runtime`` (ServeConfig.runtime) is what the server's default
    segment function passes on; the job's labels are the local run's."""
    from napari_medseg.inference import segment as segment_module

    real, seen = segment_module.segment_with_info, []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("runtime"))
        return real(*args, **kwargs)

    monkeypatch.setattr(segment_module, "segment_with_info", spy)
    handle = start_server(runtime="torch")
    with Client(handle.url, TOKEN_A) as client:
        result = remote_segment(phantom.ct, "hu-tissue", client=client)
    assert seen == ["torch"]
    assert np.array_equal(result.labels, real(phantom.ct, "hu-tissue").labels)


def test_jobs_refuse_paths_unknown_models_and_failures_are_reported(server, phantom):
    from napari_medseg.io.volume import Volume
    from napari_medseg.serve.client import volume_message

    with Client(server.url, TOKEN_A) as a:
        for model, words in (("/etc/passwd", "looks like a path"), ("../models/x", "looks like a path"),
                             ("no-such-model", "400")):
            with pytest.raises(ServerError, match=words):
                a.json("POST", "/jobs", content=volume_message(phantom.ct, model=model))
        with pytest.raises(ServerError, match="unknown structure"):
            a.json("POST", "/jobs", content=volume_message(phantom.ct, model="hu-tissue",
                                                           roi_subset=["not_an_organ"]))
    # a label map is not a CT: the job fails on the server and the client says why
    labels = Volume(phantom.labels.astype(np.int16), spacing=phantom.ct.spacing)
    with pytest.raises(ServerError, match="label map"):
        remote_segment(labels, "hu-tissue", url=server.url, token=TOKEN_A, poll_s=0.01)


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
    def values(infinity: bool):
        return st.recursive(
            st.none() | st.booleans() | st.integers(-10**12, 10**12)
            | st.floats(allow_nan=False, allow_infinity=infinity) | st.text(max_size=20),
            lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children,
                                                                              max_size=5),
            max_leaves=20)

    # JSON bodies may hold Infinity (Python's json writes it); a message header cannot
    # (pack refuses it on the client side, before anything is sent)
    json_values = values(infinity=True)
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
                                           values(infinity=False), max_size=4))
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


def test_bind_warning():
    from napari_medseg.serve.app import bind_warning

    assert bind_warning("127.0.0.1", tls=False) is None
    assert bind_warning("localhost", tls=False) is None
    assert bind_warning("::1", tls=False) is None
    assert "without TLS" in bind_warning("0.0.0.0", tls=False)
    assert "without TLS" in bind_warning("192.168.1.10", tls=False)
    assert bind_warning("0.0.0.0", tls=True) is None
