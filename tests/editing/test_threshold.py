"""Threshold painting, restricted to a label."""

import numpy as np

from napari_medseg.editing import grow, intensity_mask, paint_mask, restrict_edit, threshold_fill


def test_threshold_restrict_and_paint():
    img = np.arange(27, dtype=np.int16).reshape(3, 3, 3) * 10 - 100  # -100 .. 160 HU
    a = np.zeros((3, 3, 3), np.uint8)
    a[1, 1, 1] = 1
    grown = grow(a, (1, 1, 1), 1.0)
    out = restrict_edit(a, grown, img, -20, 50)
    in_range = (img >= -20) & (img <= 50)
    expected = np.where(in_range, grown, a)
    np.testing.assert_array_equal(out, expected)
    assert intensity_mask(img, -20, 50).sum() == 8
    painted = paint_mask(a, np.ones(a.shape, bool), 2, image=img, low=100, high=1000)
    assert (painted == 2).sum() == (img >= 100).sum()
    filled = threshold_fill(a, img, 0, 1000, 4)
    assert filled[1, 1, 1] == 1 and (filled == 4).sum() == (img >= 0).sum() - 1
