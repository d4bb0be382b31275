"""``napari_medseg.remote``: the client API in one place, light to import, and working."""

from __future__ import annotations

import subprocess
import sys

import numpy as np


def test_the_client_api_is_the_servers_own_wire_partner():
    from napari_medseg import remote
    from napari_medseg.serve import client, split

    assert remote.Client is client.Client and remote.RemotePromptSession is client.RemotePromptSession
    assert remote.remote_segment is client.remote_segment and remote.ServerError is client.ServerError
    assert remote.SplitSamMed3DSession is split.SplitSamMed3DSession
    assert issubclass(remote.ServerError, Exception)


def test_importing_the_client_needs_no_server_stack_or_torch():
    code = ("import sys, napari_medseg.remote\n"
            "heavy = [m for m in ('fastapi', 'uvicorn', 'torch', 'napari') if m in sys.modules]\n"
            "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"importing napari_medseg.remote imported {out.stdout.strip()}"


def test_a_remote_session_through_this_module_equals_a_local_one(tmp_path):
    """A real server on loopback: click, negative click and undo through ``remote`` give the
    masks of the same session run here."""
    import pytest

    pytest.importorskip("fastapi", reason="the [serve] extra is not installed")
    from napari_medseg.phantom import make_phantom
    from napari_medseg.prompts.factory import make_session
    from napari_medseg.remote import Client, RemotePromptSession
    from napari_medseg.serve.app import ServeConfig, serve_in_thread

    token = "remote-test-" + "t" * 32
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    ct = make_phantom(shape=(32, 96, 96), spacing_zyx=(2.5, 2.0, 2.0), n_lesions=0).ct
    handle = serve_in_thread(ServeConfig(tokens=[token]))
    try:
        remote = RemotePromptSession("region-growing", client=Client.from_token_file(handle.url, token_file))
        local = make_session("region-growing")
        for session in (remote, local):
            session.set_volume(ct)
        click = (16, 40, 40)
        other = (16, 70, 48)
        steps = (lambda s: s.add_point(click), lambda s: s.add_point(other, positive=False),
                 lambda s: s.undo())
        for step in steps:
            step(remote)
            step(local)
            np.testing.assert_array_equal(remote.mask, local.mask)
        assert remote.mask.any()
    finally:
        handle.stop()
