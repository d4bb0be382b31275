"""Connected components against hand-computed results: islands in mm, largest, split."""

import numpy as np
import pytest

from napari_medseg.editing import keep_largest_component, remove_small_islands, split_components


SP = (2.0, 1.0, 1.0)  # anisotropic: one voxel = 2 mm^3 = 0.002 mL


def _islands():
    a = np.zeros((6, 12, 12), np.uint8)
    a[1:3, 1:4, 1:3] = 1  # 12 voxels = 0.024 mL
    a[4, 8, 8:11] = 1  # 3 voxels = 0.006 mL
    a[4, 1, 10] = 1  # 1 voxel = 0.002 mL
    a[1, 8:10, 8:10] = 2  # 4 voxels of another label = 0.008 mL
    return a


def test_remove_small_islands_uses_physical_volume():
    a = _islands()
    out = remove_small_islands(a, SP, 0.007, label=1)
    expected = a.copy()
    expected[4, 8, 8:11] = 0
    expected[4, 1, 10] = 0
    np.testing.assert_array_equal(out, expected)
    # the threshold is strict: a 0.006 mL island survives a 0.006 mL minimum
    out2 = remove_small_islands(a, SP, 0.006, label=1)
    assert out2[4, 8, 8:11].tolist() == [1, 1, 1] and out2[4, 1, 10] == 0
    # with isotropic 1 mm voxels the same islands are half as big
    out3 = remove_small_islands(a, (1, 1, 1), 0.007, label=1)
    assert out3[1:3, 1:4, 1:3].sum() == 12 and out3[4].sum() == 0


def test_remove_small_islands_all_labels_and_input_untouched():
    a = _islands()
    before = a.copy()
    out = remove_small_islands(a, SP, 0.01)
    np.testing.assert_array_equal(a, before)
    assert out is not a
    assert (out == 2).sum() == 0  # label 2 (0.008 mL) removed too
    assert (out == 1).sum() == 12


def test_connectivity_faces_vs_corners():
    a = np.zeros((3, 3, 3), np.uint8)
    a[0, 0, 0] = a[1, 1, 1] = 1
    a[2, 2, 2] = 1
    assert keep_largest_component(a, (1, 1, 1), connectivity=1).sum() == 1
    assert keep_largest_component(a, (1, 1, 1), connectivity=3).sum() == 3


def test_keep_largest_component():
    a = _islands()
    out = keep_largest_component(a, SP, label=1)
    assert (out == 1).sum() == 12 and (out == 2).sum() == 4
    assert out[4].sum() == 0


def test_split_components_new_ids_by_size():
    a = _islands()
    out, new_ids = split_components(a, SP, 1)
    assert new_ids == [3, 4]  # above the largest id (2), largest piece keeps id 1
    assert (out == 1).sum() == 12
    assert (out == 3).sum() == 3 and (out[4, 8, 8:11] == 3).all()
    assert (out == 4).sum() == 1 and out[4, 1, 10] == 4
    assert (out == 2).sum() == 4
    out_b, ids_b = split_components(a, SP, 2)
    assert ids_b == [] and np.array_equal(out_b, a)


def test_split_widens_dtype_when_needed():
    a = np.zeros((1, 3, 5), np.uint8)
    a[0, 1, 0] = a[0, 1, 2] = a[0, 1, 4] = 255
    out, ids = split_components(a, (1, 1, 1), 255)
    assert ids == [256, 257] and out.dtype == np.uint16


def test_single_slice_only_touches_that_slice():
    a = _islands()
    out = remove_small_islands(a, SP, 0.01, label=1, axis=0, index=4)
    assert out[4].sum() == 0
    np.testing.assert_array_equal(out[:4], a[:4])


@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_remove_small_islands_equals_direct_labelling(connectivity):
    """The SimpleITK path (faces / full connectivity) and the SciPy path (edges) give
    what labelling with SciPy and counting voxels gives, threshold included."""
    from scipy import ndimage

    from napari_medseg.editing import remove_small_islands

    rng = np.random.default_rng(connectivity)
    lab = (rng.random((14, 30, 28)) < 0.35).astype(np.uint8)
    lab[rng.random(lab.shape) < 0.1] = 2
    sp = (2.0, 0.5, 0.5)  # 0.5 uL per voxel
    min_ml = 0.0025  # exactly 5 voxels: a 5-voxel island stays, 4 go
    got = remove_small_islands(lab, sp, min_ml, connectivity=connectivity)
    expected = lab.copy()
    structure = ndimage.generate_binary_structure(3, connectivity)
    for i in (1, 2):
        comp, n = ndimage.label(lab == i, structure=structure)
        sizes = np.bincount(comp.ravel())
        small = (sizes < 5)
        small[0] = False
        expected[small[comp]] = 0
    assert (expected != lab).any() and (expected == lab).any()
    np.testing.assert_array_equal(got, expected)
    # one axial slice, 2D connectivity
    got2d = remove_small_islands(lab, sp, min_ml, axis=0, index=3, connectivity=min(connectivity, 2))
    exp2d = lab.copy()
    for i in (1, 2):
        comp, n = ndimage.label(lab[3] == i, structure=ndimage.generate_binary_structure(2, min(connectivity, 2)))
        sizes = np.bincount(comp.ravel())
        small = (sizes < 5)
        small[0] = False
        exp2d[3][small[comp]] = 0
    np.testing.assert_array_equal(got2d, exp2d)
