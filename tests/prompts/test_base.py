"""The PromptSession base: prompts, changed boxes, undo (bounded), reset, errors."""

import numpy as np
import pytest

from napari_medseg.errors import InvalidInputError
from napari_medseg.io.volume import Volume
from napari_medseg.prompts.base import Prediction, PromptSession


class CubeSession(PromptSession):
    """Marks a 3x3x3 cube around every positive point, minus cubes around negatives."""

    name = "cube"

    def _prepare(self, volume, progress, cancel):
        self.prepared = getattr(self, "prepared", 0) + 1

    def _predict(self, prompts, previous_state):
        mask = np.zeros(self.volume.shape, dtype=bool)
        for (z, y, x), positive in zip(prompts.points, prompts.labels):
            z, y, x = int(z), int(y), int(x)
            mask[max(z - 1, 0):z + 2, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2] = positive
        region = (slice(0, mask.shape[0]), slice(0, mask.shape[1]), slice(0, mask.shape[2]))
        return Prediction(mask, region, state=len(prompts.points))


@pytest.fixture
def session():
    s = CubeSession()
    s.set_volume(Volume(np.zeros((20, 20, 20), dtype=np.int16)))
    return s


def test_points_undo_and_changed_box(session):
    first = session.add_point((5, 5, 5)).mask.copy()
    assert first.sum() == 27
    update = session.add_point((15, 15, 15))
    assert update.mask.sum() == 54
    assert session.prompts.points == ((5.0, 5.0, 5.0), (15.0, 15.0, 15.0))
    undone = session.undo()
    np.testing.assert_array_equal(undone.mask, first)
    # the changed box covers the removed cube at (15, 15, 15)
    assert all(s.start <= 14 and s.stop >= 17 for s in undone.changed)
    assert session.prompts.points == ((5.0, 5.0, 5.0),)


def test_negative_point_and_reset(session):
    session.add_point((5, 5, 5))
    session.add_point((5, 5, 5), positive=False)
    assert session.mask.sum() == 0
    session.reset()
    assert not session.can_undo and session.mask.sum() == 0 and session.prompts.points == ()


def test_undo_history_is_bounded(session):
    session.max_undo = 5
    for i in range(12):
        session.add_point((1 + i, 10, 10))
    undos = 0
    while session.can_undo:
        session.undo()
        undos += 1
    assert undos == 5
    # the oldest reachable state still holds the first 7 clicks' cubes
    assert len(session.prompts.points) == 7


def test_bad_prompts_raise_clear_errors(session):
    with pytest.raises(InvalidInputError, match="outside the volume"):
        session.add_point((25, 0, 0))
    with pytest.raises(InvalidInputError, match="3 voxel indices"):
        session.add_point((1, 2))
    with pytest.raises(InvalidInputError, match="does not match the volume"):
        session.set_initial_mask(np.zeros((2, 2, 2), bool))
    assert session.mask.sum() == 0 and not session.can_undo


def test_volume_required_first():
    with pytest.raises(InvalidInputError, match="set_volume"):
        CubeSession().add_point((0, 0, 0))


class BoxedCubeSession(CubeSession):
    """CubeSession whose predictions carry their box (as the SAM sessions' do): the tight
    region of the cubes, with the mask cut to it, and its box in the mask's coordinates."""

    def _predict(self, prompts, previous_state):
        from napari_medseg._ndimage import bbox

        full = super()._predict(prompts, previous_state)
        box = bbox(full.mask)
        if box is None:
            return full
        return Prediction(np.ascontiguousarray(full.mask[box]), box, full.state,
                          box=tuple(slice(0, s.stop - s.start) for s in box))


def test_prediction_box_is_trusted_and_undo_restores_every_state(monkeypatch):
    """A prediction that carries its box is pasted without a pass over the mask; the undo
    copies (packed from the prediction's array, or the restored entry after an undo) give
    back every earlier mask and box exactly, as the session without boxes does."""
    import napari_medseg.prompts.base as base

    clicks = [((5, 5, 5), True), ((5, 6, 7), True), ((15, 15, 15), True), ((5, 5, 5), False),
              ((10, 3, 12), True)]
    states = {}
    for cls in (CubeSession, BoxedCubeSession):
        s = cls()
        s.set_volume(Volume(np.zeros((20, 20, 20), dtype=np.int16)))
        if cls is BoxedCubeSession:  # the box is given: the session never scans the mask
            monkeypatch.setattr(base, "bbox", lambda *a: pytest.fail("bbox of a boxed prediction"))
        seen = []
        before = np.zeros((20, 20, 20), bool)
        for zyx, positive in clicks:
            update = s.add_point(zyx, positive=positive)
            outside = np.ones_like(before)
            outside[update.changed] = False
            assert not (outside & (update.mask != before)).any()  # the changed box holds every change
            before = update.mask.copy()
            seen.append((before, s._mask_box))
        s.undo()
        s.undo()
        s.add_point((2, 2, 2))  # an undo copy pushed right after an undo
        while s.can_undo:
            seen.append((s.undo().mask.copy(), s._mask_box))
        states[cls] = seen
        monkeypatch.undo()
    for (a, *rest_a), (b, *rest_b) in zip(states[CubeSession], states[BoxedCubeSession]):
        np.testing.assert_array_equal(a, b)
        assert rest_a == rest_b
    assert not states[CubeSession][-1][0].any()  # back to the empty object


def test_undo_copies_of_contiguous_boxes_and_box_views_round_trip():
    from napari_medseg.prompts.base import _pack, _pack_box, _unpack

    rng = np.random.default_rng(0)
    full = np.zeros((9, 11, 13), bool)
    region = (slice(1, 8), slice(2, 11), slice(3, 12))
    full[region] = rng.random((7, 9, 9)) > 0.5
    for packed in (_pack(full, region), _pack_box(np.ascontiguousarray(full[region]), full.shape, region)):
        np.testing.assert_array_equal(_unpack(packed), full)
    assert _pack_box(np.ascontiguousarray(full[region]), full.shape, region)[2][1].ndim == 1  # flat bits
    assert _unpack(_pack(full, None)).sum() == 0
