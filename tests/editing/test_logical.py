"""Logical operations between labels (merge, subtract, intersect, add, copy), one slice or 3D."""

import numpy as np

from napari_medseg.editing import add_mask, copy_label, intersect_mask, mask_of, merge_labels, subtract_mask


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
