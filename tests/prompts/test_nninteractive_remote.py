"""nninteractive-remote: our session on the real ``nninteractive-server`` (the nnInteractive
package's own server, loopback, CPU) gives what our local nnInteractive backend gives.

The server is the package's ``python -m nnInteractive.inference.server.main`` serving the
random-weight model folder of :mod:`napari_medseg.testing.nninteractive`; the client is
``nninteractive-client`` (requirements/parity.txt). Faults (nothing listening, a web
server that is not nnInteractive, a server failure, a timeout, a wrong key, a dropped
session) are checked for what the user is told.
"""

from __future__ import annotations

import http.server
import threading
import time

import numpy as np
import pytest

from napari_medseg.errors import InvalidInputError, MedsegError
from napari_medseg.io.volume import Volume

API_KEY = "nninteractive-test-key-0123456789"


@pytest.fixture(scope="module")
def nni_folder(tmp_path_factory):
    pytest.importorskip("nnInteractive.inference.server.main",
                        reason="the nninteractive package is not installed (requirements/parity.txt)")
    pytest.importorskip("nnInteractive.inference.remote",
                        reason="nninteractive-client is not installed (requirements/parity.txt)")
    from napari_medseg.testing.nninteractive import make_random_nninteractive_folder

    return make_random_nninteractive_folder(tmp_path_factory.mktemp("nni"))


@pytest.fixture(scope="module")
def nni_server(nni_folder, tmp_path_factory):
    """The real nninteractive-server on a free loopback port, with an API key."""
    from napari_medseg.testing.nninteractive import run_nninteractive_server

    with run_nninteractive_server(nni_folder, tmp_path_factory.mktemp("server"), api_key=API_KEY) as server:
        yield server


def _scan(seed=0, shape=(40, 80, 80)):
    """A textured bright object (with a dark notch) in noise; larger than the 64^3 patch
    in-plane, so that the changed boxes are parts of the volume."""
    rng = np.random.default_rng(seed)
    img = rng.normal(40, 25, shape)
    img[10:30, 20:52, 24:56] += 150
    img[16:24, 44:60, 30:40] -= 120
    img[30:38, 60:72, 8:20] += 200  # a second object
    return Volume(img.astype(np.int16), spacing=(0.8, 0.8, 1.0))


@pytest.fixture
def no_rng_dependence(monkeypatch):
    """Counts nnInteractive's random refinement-box sampling (NumPy's global RNG) here.

    The server's RNG cannot be seeded from the test: the comparison is exact only while
    no step draws random boxes, which the local run proves by leaving this at 0."""
    import nnInteractive.utils.bboxes as bboxes

    calls = []
    real = bboxes.random_sampling_fallback
    monkeypatch.setattr(bboxes, "random_sampling_fallback", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def _remote(server, **kwargs):
    from napari_medseg.prompts.nninteractive_remote import NnInteractiveRemoteSession

    return NnInteractiveRemoteSession(server.url, token=API_KEY, **kwargs)


def _traffic(session):
    """Record the size of every request body and answer of the session's HTTP client."""
    sizes = []
    http = session._backend._remote._http
    http.event_hooks["request"].append(lambda r: sizes.append((r.url.path, len(r.content), None)))

    def answered(response):
        path, sent, _ = sizes[-1]
        sizes[-1] = (path, sent, int(response.headers.get("content-length", 0)))

    http.event_hooks["response"].append(answered)
    return sizes


def test_remote_session_equals_the_local_backend(nni_folder, nni_server, no_rng_dependence):
    """Positive and negative clicks, a box, undo (the server's one level, then deeper by
    replay), an initial mask, reset and a next object: at every step the remote mask is
    the local backend's mask, and the changed box covers every voxel that changed. The
    image goes over the wire once; each click is a small request."""
    from napari_medseg.prompts.nninteractive_session import NnInteractiveSession

    vol = _scan()
    uploads = nni_server.requests("/set_image")
    remote = _remote(nni_server)
    local = NnInteractiveSession(weights=nni_folder, device="cpu")
    remote.set_volume(vol)
    local.set_volume(vol)
    traffic = _traffic(remote)
    seen, boxes = [], []

    def step(what, call):
        up_r, up_l = call(remote), call(local)
        boxes.append(getattr(up_r, "changed", None))
        assert no_rng_dependence == [], f"{what}: nnInteractive drew random refinement boxes"
        if up_l is None:  # reset: no update, an empty object
            assert up_r is None and not remote.mask.any() and not local.mask.any()
            seen.append(np.zeros(vol.shape, bool))
            return
        want = local.mask
        assert np.array_equal(remote.mask, want), \
            f"{what}: {np.count_nonzero(remote.mask ^ want)} voxels differ"
        assert np.array_equal(up_r.mask, up_l.mask), what
        if seen:
            outside = seen[-1] ^ want
            outside[up_r.changed] = False
            assert not outside.any(), f"{what}: a voxel changed outside the changed box"
        seen.append(want.copy())

    init = np.zeros(vol.shape, bool)
    init[12:28, 22:50, 26:54] = True
    step("positive click", lambda s: s.add_point((20, 36, 40)))
    assert seen[-1].any() and not seen[-1].all()
    step("negative click", lambda s: s.add_point((20, 50, 34), positive=False))
    step("box", lambda s: s.add_box((12, 22, 26), (28, 50, 54)))
    step("undo (the server's own)", lambda s: s.undo())
    step("click after undo", lambda s: s.add_point((14, 28, 30)))
    step("initial mask", lambda s: s.set_initial_mask(init))
    step("negative click on it", lambda s: s.add_point((26, 46, 50), positive=False))
    step("undo", lambda s: s.undo())
    step("second undo (replayed)", lambda s: s.undo())
    step("click after a two-level undo", lambda s: s.add_point((24, 30, 46)))
    step("reset", lambda s: s.reset())
    step("next object", lambda s: s.add_point((14, 28, 30)))
    # the steps did different things: not a comparison of constant masks
    assert len({m.tobytes() for m in seen}) >= 6
    # some answers were parts of the volume, mapped back onto the full grid
    full = tuple(slice(0, n) for n in vol.shape)
    assert any(b is not None and tuple(b) != full for b in boxes)
    assert no_rng_dependence == [], "a step drew random refinement boxes: the comparison depends on the RNG"
    # the image went over the wire once; clicks are small requests, answers the changed box
    assert nni_server.requests("/set_image") == uploads + 1
    clicks = [t for t in traffic if t[0] == "/add_point_interaction"]
    assert clicks and max(sent for _, sent, _ in clicks) < 300
    assert not [t for t in traffic if t[0] == "/set_image"]
    assert remote.reconnects == 0
    remote.close()


def test_a_dropped_session_is_reopened_and_replayed(nni_folder, nni_server, no_rng_dependence):
    """The server reaps the session (idle timeout, restart): the next click opens a new one,
    sends the image again and replays the object's clicks: the same mask as locally."""
    import httpx

    from napari_medseg.prompts.nninteractive_session import NnInteractiveSession

    vol = _scan(seed=1)
    remote = _remote(nni_server)
    local = NnInteractiveSession(weights=nni_folder, device="cpu")
    remote.set_volume(vol)
    local.set_volume(vol)
    for s in (remote, local):
        s.add_point((20, 36, 40))
        s.add_point((20, 50, 34), positive=False)
    uploads = nni_server.requests("/set_image")
    lease = remote._backend._remote._lease_token
    r = httpx.post(nni_server.url + "/release",
                   headers={"X-Lease-Token": lease, "Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 200
    up = remote.add_point((14, 28, 30))
    want = local.add_point((14, 28, 30))
    assert np.array_equal(up.mask, want.mask) and np.array_equal(remote.mask, local.mask)
    assert remote.reconnects == 1 and nni_server.requests("/set_image") == uploads + 1
    assert no_rng_dependence == []
    remote.close()


def test_wrong_api_key_is_a_clear_error(nni_server):
    from napari_medseg.prompts.nninteractive_remote import NnInteractiveRemoteSession, RemoteServerError

    s = NnInteractiveRemoteSession(nni_server.url, token="not-the-key-0123456789")
    with pytest.raises(RemoteServerError) as info:
        s.set_volume(_scan())
    msg = str(info.value)
    assert info.value.status == 401 and nni_server.url in msg and "--api-key" in msg


def test_unreachable_server_says_what_and_where():
    pytest.importorskip("nnInteractive.inference.remote")
    from napari_medseg.prompts.nninteractive_remote import NnInteractiveRemoteSession, RemoteServerError
    from napari_medseg.testing.nninteractive import _free_port

    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    s = NnInteractiveRemoteSession(url)
    with pytest.raises(RemoteServerError) as info:
        s.set_volume(_scan())
    msg = str(info.value)
    assert "cannot reach the nnInteractive server" in msg and url in msg
    assert "nninteractive-server" in msg and "--server" in msg and "1527" in msg
    assert "Server field" in info.value.message_for("gui")


class _Stub(http.server.BaseHTTPRequestHandler):
    """A web server that is not nnInteractive: answers by ``server.mode``."""

    def _answer(self):
        mode = self.server.mode
        if mode == "slow":
            time.sleep(3.0)
        code, body, kind = {
            "missing": (404, b'{"detail":"Not Found"}', "application/json"),
            "page": (200, b"<html>a login page</html>", "text/html"),
            "broken": (500, b"Internal Server Error", "text/plain"),
            "slow": (200, b"{}", "application/json"),
        }[mode]
        try:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (the timeout case)
            pass

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("mode, expected", [
    ("missing", "does not answer like an nnInteractive server (404 for POST /claim)"),
    ("page", "does not answer like an nnInteractive server"),
    ("broken", "failed while opening a session (POST /claim) (500"),
])
def test_a_server_that_is_not_nninteractive_or_fails(stub, mode, expected):
    pytest.importorskip("nnInteractive.inference.remote")
    from napari_medseg.prompts.nninteractive_remote import NnInteractiveRemoteSession, RemoteServerError

    stub.mode = mode
    url = f"http://127.0.0.1:{stub.server_address[1]}"
    s = NnInteractiveRemoteSession(url)
    with pytest.raises(RemoteServerError) as info:
        s.set_volume(_scan())
    assert expected in str(info.value) and url in str(info.value)


def test_a_server_that_does_not_answer_in_time(stub):
    pytest.importorskip("nnInteractive.inference.remote")
    from napari_medseg.prompts.nninteractive_remote import NnInteractiveRemoteSession, RemoteServerError

    stub.mode = "slow"
    url = f"http://127.0.0.1:{stub.server_address[1]}"
    s = NnInteractiveRemoteSession(url, timeout=0.5)
    t = time.perf_counter()
    with pytest.raises(RemoteServerError) as info:
        s.set_volume(_scan())
    assert time.perf_counter() - t < 2.5  # the timeout, not the server's 3 s
    msg = str(info.value)
    assert "did not answer within 0.5 s while opening a session" in msg and url in msg


# --- the user's mistakes


@pytest.mark.parametrize("url, expected", [
    (None, "needs the URL of a running nninteractive-server"),
    ("", "needs the URL of a running nninteractive-server"),
    ("gpu-box:1527", "must start with http:// or https:// (e.g. http://gpu-box:1527)"),
    ("ftp://gpu-box", "must start with http://"),
    ("http://gpu-box:port", "nnInteractive server URL"),
])
def test_bad_server_urls_are_refused_before_any_connection(url, expected):
    pytest.importorskip("nnInteractive.inference.remote")
    from napari_medseg.prompts.nninteractive_remote import NnInteractiveRemoteSession

    with pytest.raises(InvalidInputError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        NnInteractiveRemoteSession(url)


def test_missing_client_says_what_to_install(monkeypatch):
    import importlib.util

    from napari_medseg.prompts.nninteractive_remote import NnInteractiveRemoteSession

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "nnInteractive.inference.remote" else real(name, *a))
    with pytest.raises(MedsegError, match="pip install nninteractive-client"):
        NnInteractiveRemoteSession("http://127.0.0.1:1527")


# --- how users reach it: `medseg prompt` and the Interactive segmentation dock


def _local_mask(folder, vol, clicks):
    from napari_medseg.prompts.nninteractive_session import NnInteractiveSession

    local = NnInteractiveSession(weights=folder, device="cpu")
    local.set_volume(vol)
    for zyx, positive in clicks:
        local.add_point(zyx, positive=positive)
    return local.mask


def test_cli_prompt_on_the_server_writes_the_local_backends_mask(nni_folder, nni_server, tmp_path,
                                                                 no_rng_dependence):
    import json

    from napari_medseg.io import read_volume, write_volume
    from tests.cli._run import medseg

    img, out, key = tmp_path / "ct.nii.gz", tmp_path / "object.nii.gz", tmp_path / "api-key"
    write_volume(_scan(), img)
    key.write_text(API_KEY + "\n")
    key.chmod(0o600)
    res = medseg("prompt", img, "-o", out, "--model", "nninteractive-remote", "--server", nni_server.url,
                 "--token-file", key, "--point", "20,36,40", "--negative", "20,50,34", "--json")
    assert res.returncode == 0, res.stderr
    want = _local_mask(nni_folder, read_volume(img), [((20, 36, 40), True), ((20, 50, 34), False)])
    got = np.asarray(read_volume(out).array) > 0
    assert want.any() and np.array_equal(got, want)
    assert json.loads(res.stdout)["voxels"] == int(want.sum())
    assert no_rng_dependence == []


def test_cli_mistakes_are_clear_and_write_nothing(tmp_path):
    pytest.importorskip("nnInteractive.inference.remote")
    from napari_medseg.io import write_volume
    from napari_medseg.testing.nninteractive import _free_port
    from tests.cli._run import medseg

    img, out = tmp_path / "ct.nii.gz", tmp_path / "object.nii.gz"
    write_volume(_scan(shape=(8, 16, 16)), img)
    base = ("prompt", img, "-o", out, "--model", "nninteractive-remote", "--point", "4,8,8")
    nowhere = f"http://127.0.0.1:{_free_port()}"
    for extra, expected in [
        ((), "needs the URL of a running nninteractive-server (e.g. http://gpu-box:1527); pass --server URL"),
        (("--server", "gpu-box:1527"), "must start with http:// or https://"),
        (("--server", nowhere, "--weights", str(tmp_path)), "uses the model its server loaded"),
        (("--server", nowhere), f"cannot reach the nnInteractive server at {nowhere}"),
    ]:
        res = medseg(*base, *extra)
        assert res.returncode != 0 and expected in res.stderr, (extra, res.stderr)
        assert "Traceback" not in res.stderr and not out.exists()


@pytest.mark.gui
def test_the_dock_drives_the_remote_backend(make_napari_viewer, qtbot, nni_folder, nni_server, monkeypatch,
                                            tmp_path, no_rng_dependence):
    """Docked as users dock it: pick nninteractive-remote, the Server row appears; without a
    URL a click is a message; with the server's URL (key from NN_INTERACTIVE_API_KEY) one
    click writes the local backend's mask into the labels layer."""
    from napari_medseg.io.layer_data import image_layer_tuple

    monkeypatch.setenv("MEDSEG_CONFIG_DIR", str(tmp_path / "config"))  # never the user's settings
    monkeypatch.setenv("NN_INTERACTIVE_API_KEY", API_KEY)
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-medseg", "Interactive segmentation")
    vol = _scan()
    data, kwargs, _ = image_layer_tuple(vol, "ct")
    viewer.add_image(data, **kwargs)
    assert widget.nni_server_row.isHidden()  # compact: only for the backend that needs it
    widget.backend_combo.setCurrentIndex(widget.backend_combo.findData("nninteractive-remote"))
    assert not widget.nni_server_row.isHidden()
    labels = widget.create_labels_layer()
    with qtbot.waitSignal(widget.finished, timeout=120000):
        widget.add_point_voxel((20, 36, 40))
    assert "needs the URL of a running nninteractive-server" in widget.last_error
    assert "Server field" in widget.last_error and not np.asarray(labels.data).any()
    widget.nni_server_edit.setText(nni_server.url)
    with qtbot.waitSignal(widget.finished, timeout=120000):
        widget.add_point_voxel((20, 36, 40))
    assert not widget.busy, widget.last_error
    want = _local_mask(nni_folder, vol, [((20, 36, 40), True)])
    assert want.any() and np.array_equal(np.asarray(labels.data) == widget.label_id, want)
    assert no_rng_dependence == []
