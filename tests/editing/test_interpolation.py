"""Fill between slices: copies, morphs linearly, respects other labels and the axis."""

import numpy as np

from napari_medseg.editing import fill_between_slices


def _disc(shape, center, r):
    yy, xx = np.indices(shape)
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= r * r


def test_fill_between_identical_outlines_copies_them():
    a = np.zeros((7, 20, 20), np.uint8)
    d = _disc((20, 20), (10, 10), 5)
    a[1][d] = 3
    a[5][d] = 3
    out = fill_between_slices(a, (2.5, 0.8, 0.8))
    for k in range(1, 6):
        np.testing.assert_array_equal(out[k] == 3, d)
    assert out[0].sum() == 0 and out[6].sum() == 0  # no extrapolation
    np.testing.assert_array_equal(out[[1, 5]], a[[1, 5]])


def test_fill_between_morphs_radius_linearly():
    a = np.zeros((5, 40, 40), np.uint8)
    a[0][_disc((40, 40), (20, 20), 4)] = 1
    a[4][_disc((40, 40), (20, 20), 12)] = 1
    out = fill_between_slices(a, (1, 1, 1), label=1)
    for k, r in [(1, 6), (2, 8), (3, 10)]:
        ref = _disc((40, 40), (20, 20), r)
        got = out[k] == 1
        # same area within the discretisation of one ring of voxels
        assert abs(int(got.sum()) - int(ref.sum())) <= 2 * np.pi * r * 0.6 + 4
        assert got[20, 20] and not got[20, 20 + r + 2]


def test_fill_between_respects_other_labels_and_axis():
    a = np.zeros((10, 5, 12), np.uint8)
    a[:, 1:4, 2] = 1  # sagittal slices x=2 and x=8 annotated
    a[:, 1:4, 8] = 1
    a[4, 2, 5] = 2
    out = fill_between_slices(a, (1, 1, 1), label=1, axis=2)
    assert (out[:, 1:4, 3:8] == 1).sum() == 10 * 3 * 5 - 1
    assert out[4, 2, 5] == 2
    out2 = fill_between_slices(a, (1, 1, 1), label=1, axis=2, overwrite=True)
    assert out2[4, 2, 5] == 1
