"""The clients (``serve/client.py``) against a real loopback server: remote sessions and
automatic runs give the local results, replies hold the changed box, a lost server changes nothing."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_medseg.errors import Cancelled
from napari_medseg.progress import CancelToken
from napari_medseg.prompts.factory import make_session
from napari_medseg.serve.client import Client, RemotePromptSession, ServerError, remote_segment

from ._helpers import TOKEN_A, same_mask, slow_segment


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


def test_remote_hu_tissue_equals_local_segment(server, phantom):
    """Submit, poll (progress only grows), fetch: labels, class table and notes equal a local run."""
    from napari_medseg.inference.segment import segment_with_info

    reports = []
    remote = remote_segment(phantom.ct, "hu-tissue", url=server.url, token=TOKEN_A,
                            progress=lambda f, t: reports.append(f), poll_s=0.01)
    local = segment_with_info(phantom.ct, "hu-tissue")
    assert remote.labels.dtype == local.labels.dtype
    assert np.array_equal(remote.labels, local.labels)
    assert remote.table.to_dict() == local.table.to_dict()
    assert remote.notes == local.notes and remote.model == local.model
    assert len(np.unique(remote.labels)) > 2  # several tissues, not an empty map
    assert reports[0] == 0.0 and reports[-1] == 1.0 and reports == sorted(reports)
    assert "upload_s" in remote.timings and "download_s" in remote.timings
    assert len(server.app.state.jobs._jobs) == 0  # the client deleted its finished job


def test_progress_is_reported_and_cancel_stops_the_job(start_server, phantom):
    """Cancelling from the client stops the running job on the server (it leaves the store)."""
    started = threading.Event()
    handle = start_server(segment_fn=slow_segment(started))
    cancel = CancelToken()
    seen = []

    def progress(fraction, text):
        seen.append(fraction)
        if fraction > 0.2:
            cancel.cancel()

    with pytest.raises(Cancelled):
        remote_segment(phantom.ct, "hu-tissue", url=handle.url, token=TOKEN_A, progress=progress,
                       cancel=cancel, poll_s=0.02)
    assert started.is_set() and 0.2 < max(seen) < 0.9  # it ran, then stopped part-way
    assert seen == sorted(seen)
    assert len(handle.app.state.jobs._jobs) == 0


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
