"""Fill between slices, logical operations, threshold painting and class bookkeeping."""

import numpy as np
import pytest

from napari_medseg.editing import (
    add_mask,
    copy_label,
    delete_class,
    fill_between_slices,
    grow,
    intensity_mask,
    intersect_mask,
    mask_of,
    merge_labels,
    next_free_id,
    paint_mask,
    recolor_class,
    relabel,
    rename_class,
    restrict_edit,
    subtract_mask,
    threshold_fill,
)
from napari_medseg.errors import InvalidInputError
from napari_medseg.io.label_table import LabelTable


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


def test_merge_subtract_intersect_add_copy():
    a = np.zeros((2, 4, 4), np.uint8)
    a[0, :2] = 1
    a[0, 2:] = 2
    a[1, :2] = 3
    m = merge_labels(a, [2, 3], 1)
    assert set(np.unique(m)) == {0, 1} and (m == 1).sum() == 16 + 8
    operand = np.zeros(a.shape, bool)
    operand[0, :, :2] = True
    s = subtract_mask(a, 1, operand)
    assert (s == 1).sum() == 4 and (s[0, :2, :2] == 0).all() and (s == 2).sum() == 8
    i = intersect_mask(a, 1, operand)
    assert (i == 1).sum() == 4 and (i[0, :2, :2] == 1).all()
    u = add_mask(a, 3, operand)
    np.testing.assert_array_equal(u, a)  # operand covers labelled voxels only: nothing added
    bg = np.zeros(a.shape, bool)
    bg[1, 3, :] = True
    assert (add_mask(a, 3, bg) == 3).sum() == 12
    u2 = add_mask(a, 3, operand, overwrite=True)
    assert (u2[0, :, :2] == 3).all() and (u2 == 1).sum() == 4
    other = np.zeros_like(a)
    other[1, 0, 0] = 5
    dest, new_id = copy_label(a, 1, other)
    assert new_id == 6 and (dest == 6).sum() == 8 and dest[1, 0, 0] == 5
    assert mask_of(a, [1, 2]).sum() == 16


def test_logical_single_slice():
    a = np.ones((3, 2, 2), np.uint8)
    out = subtract_mask(a, 1, np.ones(a.shape, bool), axis=0, index=1)
    assert out[1].sum() == 0 and out[0].sum() == 4 and out[2].sum() == 4


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


def test_relabel_rename_delete_with_table():
    a = np.zeros((1, 2, 2), np.uint8)
    a[0, 0] = 1
    a[0, 1, 0] = 2
    t = LabelTable.from_names({1: "liver", 2: "spleen"})
    out, t2 = relabel(a, 1, 7, t)
    assert (out == 7).sum() == 2 and t2.name_of(7) == "liver" and 1 not in t2
    assert t2.color_of(7) == t.color_of(1)
    with pytest.raises(InvalidInputError, match="label 2 is already in use .spleen"):
        relabel(a, 1, 2, t)
    merged, t3 = relabel(a, 1, 2, t, merge=True)
    assert (merged == 2).sum() == 3 and t3.name_of(2) == "spleen" and 1 not in t3
    assert rename_class(t, 2, " Spleen ").name_of(2) == "Spleen"
    assert recolor_class(t, 2, (1, 0, 0)).color_of(2) == (1.0, 0.0, 0.0, 1.0)
    d, t4 = delete_class(a, 2, t)
    assert (d == 2).sum() == 0 and 2 not in t4 and t4.name_of(1) == "liver"
    assert next_free_id(a, t.with_label(9, "x")) == 10
