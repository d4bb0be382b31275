"""``medseg serve`` and ``--server`` on ``medseg prompt``/``segment``, in subprocesses as users run them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from ._run import medseg

pytest.importorskip("fastapi", reason="the [serve] extra is not installed")
pytest.importorskip("uvicorn", reason="the [serve] extra is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(token_file, *extra):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "napari_medseg.cli", "serve", "--token-file",
                             str(token_file), "--port", str(port), *map(str, extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("medseg serve did not start")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    token = folder / "token"
    res = medseg("serve", "--new-token", token)
    assert res.returncode == 0 and oct(token.stat().st_mode & 0o777) == "0o600", res.stderr
    proc, url = _start(token)
    yield url, token
    proc.kill()
    proc.wait(10)


def _array(path):
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def test_segment_and_prompt_with_server_write_the_same_files(served, sample, tmp_path):
    url, token = served
    ct = sample["ct"]
    for name, args in (("segment", ["segment", ct]),
                       ("prompt", ["prompt", ct, "--point", "12,40,40", "--point", "12,42,38",
                                   "--negative", "2,5,5"])):
        local = tmp_path / f"{name}_local.nii.gz"
        remote = tmp_path / f"{name}_remote.nii.gz"
        a = medseg(*args, "-o", local, "--json")
        b = medseg(*args, "-o", remote, "--json", "--server", url, "--token-file", token)
        assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
        la, lb = _array(local), _array(remote)
        assert np.array_equal(la[0], lb[0]) and la[1:] == lb[1:]
        assert la[0].any()
        ja, jb = json.loads(a.stdout), json.loads(b.stdout)
        key = "labels" if name == "segment" else "voxels"
        assert ja[key] == jb[key]
        sidecar = lambda p: p.with_name(p.name.replace(".nii.gz", ".json"))  # noqa: E731
        assert sidecar(local).read_text() == sidecar(remote).read_text()


def test_remote_mistakes_are_refused_and_write_nothing(served, sample, tmp_path):
    url, token = served
    ct = sample["ct"]
    loose = tmp_path / "loose"
    loose.write_text(token.read_text())
    os.chmod(loose, 0o644)
    wrong = tmp_path / "wrong"
    wrong.write_text("wrong-token-0123456789abcdef\n")
    os.chmod(wrong, 0o600)
    out = tmp_path / "out.nii.gz"
    cases = [
        (["--server", url], "needs --token-file"),
        (["--token-file", token], "goes with --server"),
        (["--server", url, "--token-file", loose], "chmod 600"),
        (["--server", url, "--token-file", wrong], "refused the token (401)"),
        (["--server", f"http://127.0.0.1:{_free_port()}", "--token-file", token], "cannot reach"),
        (["--server", url, "--token-file", token, "--device", "cuda"], "--device cuda does not apply"),
        (["--server", url, "--token-file", token, "--runtime", "openvino"],
         "--runtime openvino does not apply"),
        (["--server", url, "--token-file", token, "--model", "no-such-model"], "no-such-model"),
    ]
    for extra, words in cases:
        res = medseg("segment", ct, "-o", out, *extra)
        assert res.returncode == 2, (extra, res.stderr)
        assert words in res.stderr and res.stderr.count("\n") == 1, (words, res.stderr)
        assert not out.exists()
    res = medseg("prompt", ct, "-o", out, "--point", "12,40,40", "--server", url, "--token-file",
                 token, "--weights", tmp_path)
    assert res.returncode == 2 and "--weights does not apply" in res.stderr and not out.exists()
    res = medseg("prompt", ct, "-o", out, "--point", "12,40,400", "--server", url, "--token-file", token)
    assert res.returncode == 2 and "outside the image" in res.stderr and not out.exists()


def test_serve_refuses_to_run_without_a_private_token(tmp_path):
    res = medseg("serve")
    assert res.returncode == 2 and "needs --token-file" in res.stderr
    loose = tmp_path / "token"
    loose.write_text("x" * 40)
    os.chmod(loose, 0o644)
    res = medseg("serve", "--token-file", loose)
    assert res.returncode == 2 and "chmod 600" in res.stderr
    os.chmod(loose, 0o600)
    res = medseg("serve", "--token-file", loose, "--backends", "region-growing,magic")
    assert res.returncode == 2 and "unknown --backends magic" in res.stderr
    res = medseg("serve", "--print-openapi")
    assert res.returncode == 0 and "/jobs/{job_id}" in json.loads(res.stdout)["paths"]


def test_serve_warns_loudly_off_loopback_without_tls(tmp_path):
    token = tmp_path / "token"
    assert medseg("serve", "--new-token", token).returncode == 0
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "napari_medseg.cli", "serve", "--token-file",
                             str(token), "--host", "0.0.0.0", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()
        assert first.startswith("!!!")
        assert "WARNING: listening on 0.0.0.0 without TLS" in proc.stderr.readline()
    finally:
        proc.kill()
        proc.wait(10)
