"""Interactive sessions through a real server on loopback: same masks as local, small replies."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_medseg.prompts.factory import make_session
from napari_medseg.serve.client import Client, RemotePromptSession, ServerError

from .conftest import TOKEN_A, TOKEN_B, same_mask


def _step(session, step):
    kind = step[0]
    if kind == "point":
        return session.add_point(step[1], positive=step[2])
    if kind == "box":
        return session.add_box(step[1], step[2])
    if kind == "undo":
        return session.undo()
    if kind == "mask":
        return session.set_initial_mask(step[1])
    session.reset()
    return None


def test_region_growing_session_matches_local_step_by_step(server, phantom, liver_click):
    """Upload once; points, a negative click, undo, a box, reset and an initial mask give
    the local session's masks, prompts and changed boxes at every step, and each reply
    carries only the changed box."""
    volume = phantom.ct
    z, y, x = liver_click
    liver = phantom.labels == phantom.label_ids["liver"]
    spleen = phantom.labels == phantom.label_ids["spleen"]
    outside = tuple(int(v) for v in np.argwhere(phantom.labels == 0)[len(np.argwhere(phantom.labels == 0)) // 2])
    steps = [
        ("point", (z, y, x), True),
        ("point", (z, y, min(x + 3, volume.shape[2] - 1)), True),
        ("point", outside, False),
        ("undo",),
        ("box", (max(z - 6, 0), max(y - 20, 0), max(x - 20, 0)), (min(z + 6, 39), min(y + 20, 127), min(x + 20, 127))),
        ("reset",),
        ("mask", spleen),
        ("point", (z, y, x), True),
    ]
    local = make_session("region-growing")
    local.set_volume(volume)
    remote = RemotePromptSession("region-growing", url=server.url, token=TOKEN_A)
    remote.set_volume(volume)
    assert remote.session_id and len(server.app.state.sessions) == 1
    counts = []
    for step in steps:
        lu, ru = _step(local, step), _step(remote, step)
        assert same_mask(remote.mask, local.mask), step
        assert remote.prompts == local.prompts, step
        assert remote.can_undo == local.can_undo, step
        if lu is not None:
            assert ru.changed == lu.changed, step
            box_voxels = int(np.prod([s.stop - s.start for s in lu.changed]))
            # the reply holds the changed box's bits (compressed), never the volume
            assert remote.last_bytes[1] <= box_voxels // 8 + 2048, (step, remote.last_bytes)
        counts.append(int(remote.mask.sum()))
    # the numbers move the right way: a click finds the liver, undo restores the count
    # before the negative click, reset empties, the initial mask is the spleen
    assert counts[0] > 0.5 * liver.sum()
    assert counts[3] == counts[1]
    assert counts[5] == 0
    assert counts[6] == int(spleen.sum())
    assert counts[7] >= counts[6]
    remote.close()
    assert len(server.app.state.sessions) == 0


def test_a_click_sends_bytes_of_the_changed_box_not_the_volume(server, phantom):
    """A small object in a big volume: the reply is far smaller than the volume's mask."""
    from napari_medseg.io.volume import Volume

    rng = np.random.default_rng(1)
    big = rng.normal(0, 8, (80, 256, 256)).astype(np.int16)
    big[40:46, 100:110, 120:131] += 400
    volume = Volume(big, spacing=(0.8, 0.8, 2.0), modality="CT")
    with RemotePromptSession("region-growing", url=server.url, token=TOKEN_A) as remote:
        remote.set_volume(volume)
        update = remote.add_point((43, 105, 125))
        box = int(np.prod([s.stop - s.start for s in update.changed]))
        assert 0 < box < volume.array.size // 20
        sent, received = remote.last_bytes
        assert sent < 200 and received < box // 8 + 2048
        assert received < volume.array.size // 8 // 50  # << even a bit-packed full mask
        inside = remote.mask[38:48, 98:112, 118:133].sum()
        assert inside == remote.mask.sum() > 0.5 * 6 * 10 * 11  # the bright block, nothing else
    local = make_session("region-growing")
    local.set_volume(volume)
    assert same_mask(local.add_point((43, 105, 125)).mask, remote.mask)


def test_two_clients_at_once_are_isolated(server, phantom, liver_click):
    """Two tokens click concurrently: both get the local result; neither sees the other's session."""
    volume = phantom.ct
    local = make_session("region-growing")
    local.set_volume(volume)
    expected = local.add_point(liver_click).mask.copy()
    sessions = {}
    for name, token in (("a", TOKEN_A), ("b", TOKEN_B)):
        sessions[name] = RemotePromptSession("region-growing", url=server.url, token=token)
        sessions[name].set_volume(volume)
    results, errors = {}, []

    def click(name):
        try:
            results[name] = sessions[name].add_point(liver_click).mask.copy()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=click, args=(n,)) for n in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert same_mask(results["a"], expected) and same_mask(results["b"], expected)
    # B's token cannot touch A's session: the same 404 as an unknown id
    with Client(server.url, TOKEN_B) as b:
        with pytest.raises(ServerError, match="404"):
            b.request("POST", f"/sessions/{sessions['a'].session_id}/undo")
        with pytest.raises(ServerError, match="404"):
            b.request("DELETE", f"/sessions/{sessions['a'].session_id}")
    assert sessions["a"].undo().mask.sum() == 0  # A's session is still there, intact
    for s in sessions.values():
        s.close()


def test_session_limit_and_idle_expiry(start_server, phantom):
    """The (max+1)-th session is refused with 429; an idle session expires and says so."""
    from napari_medseg.io.volume import Volume

    volume = Volume(phantom.ct.array[:20, :64, :64].copy(), spacing=phantom.ct.spacing, modality="CT")
    handle = start_server(max_sessions=2, idle_timeout_s=1.0, reap_interval_s=0.1)
    first = RemotePromptSession("region-growing", url=handle.url, token=TOKEN_A)
    first.set_volume(volume)
    second = RemotePromptSession("region-growing", url=handle.url, token=TOKEN_B)
    second.set_volume(volume)
    third = RemotePromptSession("region-growing", url=handle.url, token=TOKEN_A)
    with pytest.raises(ServerError, match="429.*maximum of 2 sessions"):
        third.set_volume(volume)
    assert third.session_id is None
    import time

    deadline = time.monotonic() + 10
    while len(handle.app.state.sessions) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(handle.app.state.sessions) == 0
    with pytest.raises(ServerError, match="404.*expired"):
        first.add_point((10, 32, 32))
    assert first.mask.sum() == 0  # the local mask was not touched
    third.set_volume(volume)  # slots are free again
    assert third.add_point((10, 32, 32)).mask.shape == volume.shape
    third.close()


def test_lost_server_leaves_the_mask_and_prompts_intact(tmp_path, phantom, liver_click):
    """`medseg serve` killed between clicks: the next click raises a clear ServerError and
    the session's mask and prompts (what a widget shows) are unchanged."""
    import os
    import socket
    import subprocess
    import sys
    import time

    from napari_medseg.serve.auth import make_token

    token_file = tmp_path / "token"
    token = make_token(token_file)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "napari_medseg.cli", "serve", "--token-file",
                             str(token_file), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(url, token, timeout=2) as c:
                    c.info()
                break
            except ServerError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "medseg serve did not start"
                time.sleep(0.2)
        session = RemotePromptSession("region-growing", url=url, token=token)
        session.set_volume(phantom.ct)
        session.add_point(liver_click)
        mask, prompts = session.mask.copy(), session.prompts
        assert mask.sum() > 0
    finally:
        proc.kill()
        proc.wait(10)
    with pytest.raises(ServerError, match="cannot reach|lost the medseg server"):
        session.add_point((liver_click[0], liver_click[1], liver_click[2] + 2))
    assert same_mask(session.mask, mask) and session.prompts == prompts


def test_connection_dropped_mid_reply_raises_and_changes_nothing(phantom, liver_click, server):
    """A server that dies while answering (connection closed mid-reply) is a ServerError."""
    import socket

    session = RemotePromptSession("region-growing", url=server.url, token=TOKEN_A)
    session.set_volume(phantom.ct)
    session.add_point(liver_click)
    mask, prompts = session.mask.copy(), session.prompts

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def half_answer():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-medseg\r\n"
                     b"Content-Length: 100000\r\n\r\nMEDSEG1\n")
        conn.close()  # killed mid-reply

    t = threading.Thread(target=half_answer, daemon=True)
    t.start()
    session.client = Client(f"http://127.0.0.1:{listener.getsockname()[1]}", TOKEN_A)
    with pytest.raises(ServerError):
        session.add_point((liver_click[0], liver_click[1], liver_click[2] + 2))
    t.join(5)
    listener.close()
    assert same_mask(session.mask, mask) and session.prompts == prompts
