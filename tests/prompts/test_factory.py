"""Backend factory and the ``medseg prompt`` command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from napari_medseg.errors import MedsegError
from napari_medseg.errors import InvalidInputError
from napari_medseg.errors import WeightsNotFoundError
from napari_medseg.prompts import factory
from napari_medseg.prompts.base import PromptSession
from napari_medseg.prompts.factory import make_session
from napari_medseg.prompts.region_growing import RegionGrowingSession


def test_default_backend_is_weights_free_and_listed_first():
    names = factory.available_backends()
    assert names[0] == "region-growing"
    session = factory.make_session()
    assert isinstance(session, RegionGrowingSession) and isinstance(session, PromptSession)
    status = {s.name: s for s in factory.backend_statuses()}
    assert set(status) == {"region-growing", "sam-med3d", "3dsam-adapter", "nninteractive",
                           "nninteractive-remote"}
    # on its own server: no weights here; usable as soon as nnInteractive's client is installed
    assert not status["nninteractive-remote"].needs_weights
    assert "nninteractive-remote" not in names  # not offered by a medseg server: it runs on its own
    assert status["region-growing"].ready and not status["region-growing"].needs_weights
    for name in ("sam-med3d", "3dsam-adapter", "nninteractive"):
        assert status[name].needs_weights
        if not status[name].ready:
            assert status[name].reason  # says why (module missing / weights missing)


def test_listing_backends_does_not_import_torch():
    code = (
        "import sys; from napari_medseg.prompts.factory import backend_statuses, available_backends;"
        "backend_statuses(); available_backends(); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_sam_backends_need_weights_with_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_WEIGHTS_DIR", str(tmp_path))
    for name in ("sam-med3d", "3dsam-adapter"):
        if name not in factory.available_backends():
            continue
        with pytest.raises(MedsegError) as info:
            factory.make_session(name)
        assert "weights" in str(info.value).lower()


def test_missing_backend_module_is_reported(monkeypatch):
    spec = factory.BackendSpec("ghost", "no_such_module", "Nope", "test", weights_card="x")
    monkeypatch.setitem(factory.BACKENDS, "ghost", spec)
    assert "ghost" not in factory.available_backends()
    with pytest.raises(MedsegError, match="not available: its module napari_medseg.prompts.no_such_module"):
        factory.make_session("ghost")


# --- bad input and faults


def test_unknown_backend_and_weights_for_weights_free():
    with pytest.raises(InvalidInputError, match="choose one of: region-growing"):
        make_session("sam")
    with pytest.raises(InvalidInputError, match="needs no weights"):
        make_session("region-growing", weights="/tmp/x.pth")


# --- bad input and faults


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "ts"))
    return tmp_path


def _sam():
    from napari_medseg.prompts.sam_med3d_session import SamMed3DSession

    return SamMed3DSession


def _adapter():
    from napari_medseg.prompts.sam3d_adapter_session import Sam3DAdapterSession

    return Sam3DAdapterSession


@pytest.mark.parametrize(
    "factory, fragment",
    [(_sam, "medseg weights download sam-med3d-turbo"), (_adapter, "medseg weights import 3dsam-adapter-kits")],
)
def test_missing_weights_say_what_to_run(empty_cache, factory, fragment):
    with pytest.raises(WeightsNotFoundError) as info:
        factory()(device="cpu")
    assert fragment in str(info.value)


# --- nninteractive-remote: a backend on a server of its own


def test_remote_backend_refuses_options_that_do_not_apply():
    pytest.importorskip("nnInteractive.inference.remote")
    with pytest.raises(InvalidInputError, match="uses the model its server loaded"):
        make_session("nninteractive-remote", server="http://127.0.0.1:1527", weights="/some/folder")
    with pytest.raises(InvalidInputError, match="server's --device"):
        make_session("nninteractive-remote", server="http://127.0.0.1:1527", device="cuda")
    with pytest.raises(InvalidInputError, match="applies only to nninteractive-remote"):
        make_session("region-growing", server="http://127.0.0.1:1527")


def test_remote_backend_without_its_client_says_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "nnInteractive.inference.remote" else real(name, *a))
    status = factory.backend_status("nninteractive-remote")
    assert not status.available and "pip install nninteractive-client" in status.reason
    with pytest.raises(MedsegError, match="pip install nninteractive-client"):
        factory.make_session("nninteractive-remote", server="http://127.0.0.1:1527")
