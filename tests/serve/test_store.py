"""Sessions kept per token and id (``serve/store.py``), through a real loopback server:
two clients at once stay isolated, the session limit holds, idle sessions are reaped."""

from __future__ import annotations

import threading

import pytest

from napari_medseg.prompts.factory import make_session
from napari_medseg.serve.client import Client, RemotePromptSession, ServerError

from ._helpers import TOKEN_A, TOKEN_B, same_mask


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
