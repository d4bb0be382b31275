"""Hole filling against hand-computed results (3D, per slice, size limit, other labels)."""

import numpy as np

from napari_medseg.editing import fill_holes


SP = (2.0, 1.0, 1.0)  # anisotropic: one voxel = 2 mm^3 = 0.002 mL


def _hollow():
    a = np.zeros((7, 7, 7), np.uint8)
    a[1:6, 1:6, 1:6] = 1
    a[2:5, 2:5, 2:5] = 0  # 27-voxel cavity
    return a


def test_fill_holes_3d():
    a = _hollow()
    out = fill_holes(a, SP)
    assert (out[1:6, 1:6, 1:6] == 1).all() and out.sum() == 125


def test_fill_holes_keeps_other_labels_unless_overwrite():
    a = _hollow()
    a[3, 3, 3] = 2
    out = fill_holes(a, SP, label=1)
    assert out[3, 3, 3] == 2 and (out == 1).sum() == 124
    out2 = fill_holes(a, SP, label=1, overwrite=True)
    assert (out2 == 1).sum() == 125


def test_fill_holes_max_volume():
    a = _hollow()  # cavity 27 voxels * 0.002 = 0.054 mL
    assert (fill_holes(a, SP, max_hole_ml=0.05) == a).all()
    assert fill_holes(a, SP, max_hole_ml=0.06).sum() == 125


def test_fill_holes_slice_by_slice_tube():
    a = np.zeros((5, 7, 7), np.uint8)
    a[:, 1:6, 1:6] = 1
    a[:, 3, 3] = 0  # a channel open at both ends: no 3D hole, a 2D hole on every slice
    assert np.array_equal(fill_holes(a, SP), a)
    out = fill_holes(a, SP, slice_by_slice=True, slice_axis=0)
    assert (out[:, 3, 3] == 1).all()
    # along the tube axis' perpendicular (sagittal) slices there is no enclosed hole
    assert np.array_equal(fill_holes(a, SP, slice_by_slice=True, slice_axis=2), a)
    # one slice only
    out1 = fill_holes(a, SP, axis=0, index=2)
    assert out1[2, 3, 3] == 1 and out1[[0, 1, 3, 4], 3, 3].sum() == 0
