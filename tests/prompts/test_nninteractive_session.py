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


# --- the real package (nninteractive 2.6, requirements/parity.txt) on a random-weight model


@pytest.fixture(scope="module")
def nni_folder(tmp_path_factory):
    pytest.importorskip("nnInteractive.inference.inference_session",
                        reason="the nninteractive package is not installed (requirements/parity.txt)")
    from napari_medseg.testing.nninteractive import make_random_nninteractive_folder

    return make_random_nninteractive_folder(tmp_path_factory.mktemp("nni"))


def _scan(seed=0, shape=(36, 44, 44)):
    rng = np.random.default_rng(seed)
    img = rng.normal(40, 25, shape)
    img[8:28, 10:34, 10:34] += 150  # a bright object, with texture
    img[14:22, 30:40, 16:26] -= 120
    return img.astype(np.int16)


def _reference(folder):
    from nnInteractive.inference.inference_session import nnInteractiveInferenceSession

    ref = nnInteractiveInferenceSession(device=torch.device("cpu"), use_torch_compile=False, verbose=False,
                                        torch_n_threads=1, do_autozoom=True)
    ref.initialize_from_trained_model_folder(str(folder))
    return ref


def assert_true(value):
    assert value


def test_real_package_equals_calling_it_directly(nni_folder):
    """A multi-step session through NnInteractiveSession gives, at every step, exactly the
    mask that nnInteractive's own session gives for the same interactions."""
    img = _scan()
    vol = Volume(img, spacing=(0.8, 0.8, 1.0))
    s = NnInteractiveSession(weights=nni_folder, device="cpu")
    s.set_volume(vol)
    assert s.message == ""  # near-isotropic: nothing to say
    ref = _reference(nni_folder)
    ref.set_image(img[None])
    buf = torch.zeros(img.shape, dtype=torch.uint8)
    ref.set_target_buffer(buf)
    seen = []

    def same(update, what):
        want = buf.numpy().astype(bool)
        assert np.array_equal(s.mask, want), f"{what}: {np.count_nonzero(s.mask ^ want)} voxels differ"
        assert np.array_equal(update.mask, want)
        # the changed box covers every voxel that changed
        if seen:
            diff = seen[-1] ^ want
            outside = diff.copy()
            outside[update.changed] = False
            assert not outside.any(), what
        seen.append(want.copy())

    def step(ours, theirs, what):
        # nnInteractive draws refinement boxes with NumPy's global RNG: equal inputs give
        # equal masks from equal RNG states
        np.random.seed(len(seen))
        up = ours()
        np.random.seed(len(seen))
        theirs()
        same(up, what)

    p1, p2, p3, p4, p5 = (18, 22, 22), (18, 30, 30), (12, 16, 16), (20, 14, 28), (24, 26, 18)
    step(lambda: s.add_point(p1), lambda: ref.add_point_interaction(p1, include_interaction=True), "positive click")
    assert seen[-1].any()
    step(lambda: s.add_point(p2, positive=False),
         lambda: ref.add_point_interaction(p2, include_interaction=False), "negative click")
    step(lambda: s.add_box((10, 12, 12), (26, 32, 32)),
         lambda: ref.add_bbox_interaction([[18, 19], [12, 33], [12, 33]], include_interaction=True), "box")
    # one level of undo: nnInteractive's own undo
    step(s.undo, lambda: assert_true(ref.undo()), "undo (one level)")
    step(lambda: s.add_point(p3), lambda: ref.add_point_interaction(p3, include_interaction=True),
         "click after undo")
    # an initial mask starts the interactions afresh, as in the package
    init = np.zeros(img.shape, bool)
    init[10:26, 12:30, 12:30] = True
    step(lambda: s.set_initial_mask(init),
         lambda: ref.add_initial_seg_interaction(init.astype(np.uint8), run_prediction=False), "initial mask")
    step(lambda: s.add_point(p4, positive=False),
         lambda: ref.add_point_interaction(p4, include_interaction=False), "negative click on the initial mask")
    # two levels of undo: beyond the package's single level, the session replays
    s.undo()
    up = s.undo()
    assert np.array_equal(up.mask, seen[-3])  # back to the state after p3

    def replay():
        ref.reset_interactions()
        for p, inc in ((p1, True), (p2, False), (p3, True), (p5, True)):
            ref.add_point_interaction(p, include_interaction=inc)

    step(lambda: s.add_point(p5), replay, "click after a two-level undo")
    s.reset()
    assert not s.mask.any()
    step(lambda: s.add_point(p2), lambda: (ref.reset_interactions(), ref.add_point_interaction(p2, True)),
         "click after reset")
    # the steps did different things: the comparison is not between constant masks
    assert len({m.tobytes() for m in seen}) >= 5


def test_real_package_anisotropic_volume_is_sent_as_acquired(nni_folder):
    img = _scan(seed=1, shape=(20, 44, 44))
    s = NnInteractiveSession(weights=nni_folder, device="cpu")
    s.set_volume(Volume(img, spacing=(0.7, 0.7, 5.0)))
    assert "ignores voxel spacing" in s.message and "5 x 0.7 x 0.7" in s.message
    np.random.seed(0)
    up = s.add_point((10, 22, 22))
    assert up.mask.shape == img.shape  # the acquired grid, not resampled
    ref = _reference(nni_folder)
    ref.set_image(img[None])
    buf = torch.zeros(img.shape, dtype=torch.uint8)
    ref.set_target_buffer(buf)
    np.random.seed(0)
    ref.add_point_interaction((10, 22, 22), include_interaction=True)
    assert np.array_equal(up.mask, buf.numpy().astype(bool))


def test_real_package_refuses_pickle_payload_checkpoint(tmp_path, nni_folder):
    import shutil

    from napari_medseg.errors import UnsafeCheckpointError

    bad = tmp_path / "bad"
    shutil.copytree(nni_folder, bad)
    ckpt = bad / "fold_0" / "checkpoint_final.pth"
    payload = torch.load(ckpt, weights_only=False)
    payload["trainer_name"] = Volume  # a global outside the allow-list
    torch.save(payload, ckpt)
    s = NnInteractiveSession(weights=bad, device="cpu")
    with pytest.raises(UnsafeCheckpointError):
        s.set_volume(Volume(_scan(), spacing=(1.0, 1.0, 1.0)))
