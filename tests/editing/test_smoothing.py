"""Smoothing, opening and closing in millimetres, with anisotropic voxels."""

import numpy as np
import pytest

from napari_medseg.editing import smooth
from napari_medseg.editing._common import ellipsoid


def _cube_with_spike():
    a = np.zeros((11, 11, 11), np.uint8)
    a[3:8, 3:8, 3:8] = 1
    a[5, 5, 8:10] = 1  # a thin 2-voxel spike
    return a


def test_ellipsoid_is_round_in_mm():
    assert ellipsoid(1.5, (3.0, 1.0, 1.0)).shape == (1, 3, 3)
    fp = ellipsoid(2.0, (1.0, 0.5, 0.5))
    assert fp.shape == (5, 9, 9)
    assert fp[2, 4, 0] and fp[0, 4, 4] and not fp[0, 4, 3]  # reaches 2 mm on each axis only


@pytest.mark.parametrize("method", ["median", "opening"])
def test_smoothing_removes_spike(method):
    a = _cube_with_spike()
    # radius 1.5 mm: faces and edges, not corners (a face-only cross would keep the
    # spike's root, which lies on a face voxel that survives the erosion)
    out = smooth(a, (1, 1, 1), 1.5, method)
    assert out[5, 5, 8:10].sum() == 0
    assert out[5, 5, 5] == 1


def test_opening_radius_1_on_cube_removes_edges_and_corners():
    a = np.zeros((9, 9, 9), np.uint8)
    a[2:7, 2:7, 2:7] = 1
    out = smooth(a, (1, 1, 1), 1.0, "opening")
    # opening with a 6-neighbour cross: erosion leaves the inner 3^3 cube, dilation
    # adds back the 6 face centres (3x3 each) -> 27 + 54 = 81; the 12 edges (3 voxels
    # each) and 8 corners are gone
    assert out.sum() == 81
    assert out[2, 2, 2] == 0 and out[2, 2, 3] == 0 and out[2, 3, 3] == 1


def test_closing_fills_narrow_dent_and_keeps_other_label():
    a = np.zeros((7, 9, 9), np.uint8)
    a[1:6, 2:7, 2:7] = 1
    a[3, 4, 6] = 0  # a one-voxel dent at the surface
    out = smooth(a, (1, 1, 1), 1.5, "closing")
    assert out[3, 4, 6] == 1
    b = a.copy()
    b[3, 4, 6] = 2
    out_b = smooth(b, (1, 1, 1), 1.5, "closing", label=1)
    assert out_b[3, 4, 6] == 2  # never overwrites another label


def test_smoothing_does_not_cross_thick_slices():
    a = np.zeros((5, 9, 9), np.uint8)
    a[2, 2:7, 2:7] = 1  # a single axial slice
    # 3 mm slices, radius 1.5 mm: the kernel is 2D, so the slab survives a median
    out = smooth(a, (3.0, 1.0, 1.0), 1.5, "median")
    assert out[2, 3:6, 3:6].all() and out[[1, 3]].sum() == 0
    # with 1 mm slices the same slab is thinner than the kernel and vanishes
    assert smooth(a, (1.0, 1.0, 1.0), 1.5, "median").sum() == 0
