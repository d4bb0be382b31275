"""nnInteractive backend: clear error when unavailable; wiring checked with a stand-in."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.errors import MedsegError
from napari_medseg.io.volume import Volume
from napari_medseg.prompts import nninteractive_session as nni
from napari_medseg.prompts.nninteractive_session import NnInteractiveSession


class FakeBackend:
    """Records calls; the "prediction" is a cube around every positive point."""

    def __init__(self, device):
        self.device = device
        self.calls = []
        self.points = []

    def set_image(self, img):
        self.calls.append(("set_image", img.shape))
        self.shape = img.shape[1:]

    def set_target_buffer(self, buf):
        self.target_buffer = buf

    def reset_interactions(self):
        self.calls.append(("reset",))
        self.points = []
        self.target_buffer.zero_()

    def _render(self):
        self.target_buffer.zero_()
        for p, inc in self.points:
            if inc:
                sl = tuple(slice(max(c - 2, 0), c + 3) for c in p)
                self.target_buffer[sl] = 1
        for p, inc in self.points:
            if not inc:
                self.target_buffer[p] = 0

    def add_point_interaction(self, coords, include_interaction=True):
        self.calls.append(("point", coords, include_interaction))
        self.points.append((coords, include_interaction))
        self._render()

    def add_bbox_interaction(self, bbox, include_interaction=True):
        self.calls.append(("bbox", bbox, include_interaction))


def test_unavailable_package_gives_install_instructions(monkeypatch):
    monkeypatch.setattr(nni, "package_available", lambda: False)
    with pytest.raises(MedsegError) as info:
        NnInteractiveSession()
    msg = str(info.value)
    assert "pip install nninteractive" in msg and "medseg weights download nninteractive" in msg
    assert not nni.nninteractive_available()


def test_package_missing_is_detected(monkeypatch):
    # The test environment installs nninteractive (requirements/parity.txt); a user's
    # may not: detection follows importlib's answer, without importing the package.
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "nnInteractive" else real(name, *a))
    assert nni.package_available() is False
    monkeypatch.setattr(importlib.util, "find_spec", real)
    try:
        import nnInteractive  # noqa: F401
    except ImportError:
        assert nni.package_available() is False
    else:
        assert nni.package_available() is True


def test_wiring_points_undo_and_box():
    backends = []

    def factory(device):
        backends.append(FakeBackend(device))
        return backends[-1]

    vol = Volume(np.zeros((10, 20, 30), np.int16), spacing=(1.0, 1.0, 2.0))
    s = NnInteractiveSession(backend_factory=factory, device="cpu")
    s.set_volume(vol)
    b = backends[0]
    assert b.calls[0] == ("set_image", (1, 10, 20, 30))
    assert b.device == torch.device("cpu")
    up = s.add_point((5, 10, 15))
    assert up.mask[5, 10, 15] and up.mask.sum() == 125
    assert ("point", (5, 10, 15), True) in b.calls  # array (z, y, x) order
    n_resets = b.calls.count(("reset",))
    s.add_point((5, 11, 15), positive=False)
    assert b.calls[-1] == ("point", (5, 11, 15), False)
    assert b.calls.count(("reset",)) == n_resets  # incremental: no replay
    assert not s.mask[5, 11, 15]
    s.undo()  # the backend is ahead: the next interaction replays everything
    s.add_point((2, 3, 4))
    assert b.calls.count(("reset",)) == n_resets + 1
    assert [c for c in b.calls[-2:]] == [("point", (5, 10, 15), True), ("point", (2, 3, 4), True)]
    s.add_box((2, 4, 6), (6, 8, 12))
    bbox = [c for c in b.calls if c[0] == "bbox"][-1]
    assert bbox[1] == [[4, 5], [4, 9], [6, 13]]  # 2D box on the middle axial slice, half-open


# --- bad input and faults


def test_nninteractive_missing(monkeypatch):
    from napari_medseg.prompts import nninteractive_session as nni

    monkeypatch.setattr(nni, "package_available", lambda: False)
    with pytest.raises(MedsegError, match="pip install nninteractive"):
        nni.NnInteractiveSession(device="cpu")
