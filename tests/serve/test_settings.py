"""Where a widget's work runs (``serve/settings.py``): remembered choice, what it builds, what it refuses."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from napari_medseg.errors import InvalidInputError, user_message
from napari_medseg.serve.client import AuthenticationError, RemotePromptSession, ServerError
from napari_medseg.serve.settings import (
    ServerSetting,
    close_session,
    load_setting,
    prompt_session,
    run_segment,
    save_setting,
    session_lost,
    settings_path,
)

from ._helpers import TOKEN_A, same_mask


@pytest.fixture(autouse=True)
def _config(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture
def token_file(tmp_path) -> Path:
    path = tmp_path / "token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(TOKEN_A + "\n")
    return path


def test_the_choice_is_remembered_without_the_token(tmp_path, token_file):
    assert load_setting() == ServerSetting()  # nothing saved: this computer
    assert not load_setting().remote and load_setting().where == "this computer"
    setting = ServerSetting(remote=True, url="http://gpu-box:8765", token_file=str(token_file))
    path = save_setting(setting)
    assert path == settings_path() == tmp_path / "config" / "server.json"
    assert load_setting() == setting and load_setting().where == "the server http://gpu-box:8765"
    text = path.read_text()
    assert TOKEN_A not in text and str(token_file) in text  # the path, never the token
    # switching back to this computer keeps the URL for next time
    save_setting(ServerSetting(remote=False, url=setting.url, token_file=setting.token_file))
    again = load_setting()
    assert not again.remote and again.url == setting.url


# --- bad input and faults
@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"remote": "yes", "url": 5}', "\xff\xfe"])
def test_a_broken_settings_file_means_this_computer(text):
    settings_path().parent.mkdir(parents=True)
    settings_path().write_bytes(text.encode("latin-1"))
    setting = load_setting()
    assert not setting.remote and setting.url == "" and setting.token_file == ""


def test_an_incomplete_server_setting_says_which_field_to_fill(token_file):
    with pytest.raises(InvalidInputError) as info:
        ServerSetting(remote=True, url="", token_file=str(token_file)).client()
    assert "Server URL" in user_message(info.value, "gui") and "--server" in str(info.value)
    with pytest.raises(InvalidInputError) as info:
        ServerSetting(remote=True, url="http://127.0.0.1:8765").client()
    assert "Token file" in user_message(info.value, "gui")
    with pytest.raises(InvalidInputError, match="does not exist"):
        ServerSetting(remote=True, url="http://127.0.0.1:8765", token_file=str(token_file) + "x").client()
    os.chmod(token_file, 0o644)
    with pytest.raises(InvalidInputError, match="chmod 600"):
        ServerSetting(remote=True, url="http://127.0.0.1:8765", token_file=str(token_file)).client()


def test_local_only_options_are_refused_with_a_server(phantom, token_file):
    setting = ServerSetting(remote=True, url="http://127.0.0.1:1", token_file=str(token_file))
    with pytest.raises(InvalidInputError) as info:
        prompt_session("sam-med3d", setting, weights="/tmp/sam.pth")
    assert "Weights field" in user_message(info.value, "gui")
    for kwargs, words in (({"weights": "/w"}, "Weights field"), ({"device": "cuda"}, "Device to auto"),
                          ({"runtime": "openvino"}, "CPU runtime to auto")):
        with pytest.raises(InvalidInputError) as info:
            run_segment(phantom.ct, "hu-tissue", setting, **kwargs)
        assert words in user_message(info.value, "gui")
    with pytest.raises(InvalidInputError, match="paths are never sent"):
        run_segment(phantom.ct, Path("/models/Dataset001"), setting)


def test_server_errors_have_widget_wording(token_file):
    from napari_medseg.serve.client import Client

    with pytest.raises(ServerError) as info:  # nothing listens on port 1
        Client("http://127.0.0.1:1", TOKEN_A, timeout=2).info()
    gui, cli = user_message(info.value, "gui"), str(info.value)
    assert "cannot reach" in gui and "Server URL" in gui and "--server" not in gui
    assert "--server" in cli and info.value.status is None and not session_lost(info.value)
    assert session_lost(ServerError("gone", status=404)) and not session_lost(ServerError("x", status=400))
    assert not session_lost(ValueError("x"))


def test_settings_build_local_or_remote_work_with_the_same_results(server, phantom, liver_click, token_file):
    """Local and remote sessions/runs from settings agree; a replaced remote session is freed."""
    local, remote_setting = ServerSetting(), ServerSetting(remote=True, url=server.url, token_file=str(token_file))
    here = prompt_session("region-growing", local)
    there = prompt_session("region-growing", remote_setting)
    assert not isinstance(here, RemotePromptSession) and isinstance(there, RemotePromptSession)
    here.set_volume(phantom.ct)
    there.set_volume(phantom.ct)
    assert len(server.app.state.sessions) == 1
    a, b = here.add_point(liver_click), there.add_point(liver_click)
    assert a.mask.sum() > 1000 and same_mask(a.mask, b.mask)
    close_session(there)
    assert len(server.app.state.sessions) == 0
    close_session(here)  # a local session: nothing to free, no error

    mine = run_segment(phantom.ct, "hu-tissue", local)
    theirs = run_segment(phantom.ct, "hu-tissue", remote_setting, poll_s=0.01)
    assert np.array_equal(mine.labels, theirs.labels) and len(np.unique(mine.labels)) > 2
    assert mine.table.to_dict() == theirs.table.to_dict()
    assert "upload_s" in theirs.timings and "upload_s" not in mine.timings


def test_a_wrong_token_is_refused_with_widget_wording(server, phantom, tmp_path):
    wrong = tmp_path / "wrong"
    fd = os.open(wrong, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("not-the-servers-token-0123456789\n")
    session = prompt_session("region-growing", ServerSetting(remote=True, url=server.url, token_file=str(wrong)))
    with pytest.raises(AuthenticationError) as info:
        session.set_volume(phantom.ct)
    assert info.value.status == 401
    gui = user_message(info.value, "gui")
    assert "refused the token (401)" in gui and "Token file" in gui and "--token-file" not in gui
    assert len(server.app.state.sessions) == 0 and session.session_id is None
    assert json.loads(json.dumps(ServerSetting().to_dict())) == {"remote": False, "url": "", "token_file": ""}
