"""The simulated user of the click protocol: where it clicks and, with ``explain``, what
each correction did."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from napari_medseg.testing.clicker import deepest_point, error_region, interior_points, next_click, run_protocol


class _Scripted:
    """A session stand-in answering each click with the next mask of a script."""

    def __init__(self, volume, masks):
        self.volume, self._masks, self.calls = volume, list(masks), []

    def reset(self):
        self.calls.clear()

    def add_point(self, zyx, positive=True):
        self.calls.append((tuple(zyx), positive))
        return SimpleNamespace(mask=self._masks[len(self.calls) - 1])


def _scene():
    shape = (12, 20, 20)
    ref = np.zeros(shape, bool)
    ref[2:10, 4:16, 4:16] = True
    array = np.where(ref, 40.0, -100.0).astype(np.float32)
    return SimpleNamespace(array=array, spacing_zyx=(1.0, 1.0, 1.0)), ref


def test_explain_records_what_each_correction_added_and_removed():
    volume, ref = _scene()
    first = ref.copy()
    first[:, :, 10:] = False  # the right part missed
    first[5:7, 17:19, 4:8] = True  # a small leak
    second = first | ref  # the positive click adds the missed part ...
    second[5:7, 17:19, 4:6] = False  # ... and (a badly behaved session) removes half the leak
    session = _Scripted(volume, [first, second, ref])
    result = run_protocol(session, ref, n_clicks=3, explain=True)
    assert [c[1] for c in session.calls] == [True, True, False]
    assert len(result.corrections) == 2
    pos, neg = result.corrections
    missed = int((ref & ~first).sum())
    assert pos.positive and pos.target == missed and pos.value == 40.0
    assert pos.added == pos.added_in_reference == pos.added_in_target == missed
    assert pos.removed == 8 and pos.removed_in_reference == 0
    assert not neg.positive and neg.target == 8 and neg.value == -100.0
    assert neg.removed == neg.removed_in_target == 8 and neg.removed_in_reference == 0
    assert result.dice[-1] == 1.0
    assert "target" in pos.describe() and pos.describe().startswith("+")


def test_without_explain_nothing_is_recorded():
    volume, ref = _scene()
    session = _Scripted(volume, [ref])
    result = run_protocol(session, ref, n_clicks=3)
    assert result.dice == [1.0] and result.corrections == []


def test_error_region_is_the_clicked_component_only():
    volume, ref = _scene()
    pred = ref.copy()
    pred[2:4, 4:8, 4:8] = False  # two missed parts
    pred[8:10, 12:16, 12:16] = False
    click, positive = next_click(pred, ref, volume.spacing_zyx)
    region = error_region(pred, ref, click, positive)
    assert positive and region[click] and region.sum() == 32
    assert not error_region(pred, ref, (0, 0, 0), True).any()


def test_interior_points_are_deep_distinct_and_reproducible():
    """Points at least half as deep as the deepest voxel, on an anisotropic grid (mm)."""
    from scipy import ndimage as ndi

    mask = np.zeros((20, 40, 50), bool)
    mask[4:16, 5:35, 8:45] = True
    spacing = (3.0, 1.0, 1.0)
    points = interior_points(mask, spacing, 8, seed=3)
    depth = ndi.distance_transform_edt(np.pad(mask, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    deepest = depth[deepest_point(mask, spacing)]
    assert len(set(points)) == 8
    assert all(mask[p] and depth[p] >= 0.5 * deepest for p in points)
    assert points == interior_points(mask, spacing, 8, seed=3)
    assert points != interior_points(mask, spacing, 8, seed=4)
    # a one-voxel object offers one point only
    single = np.zeros_like(mask)
    single[10, 20, 20] = True
    assert interior_points(single, spacing, 5) == [(10, 20, 20)]
