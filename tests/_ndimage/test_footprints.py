"""Footprints in millimetres: exact ellipsoid, offsets, decompositions."""

import numpy as np
import pytest

from napari_medseg._ndimage import (
    PLANE4,
    PLANE8,
    ball_offsets,
    ellipsoid,
    mm_to_voxels,
    octagon_disk,
    stepped_ball,
)


@pytest.mark.parametrize("radius, spacing", [(3.0, (2.5, 0.7, 0.7)), (1.0, (1, 1, 1)), (5.0, (1.0, 0.8))])
def test_ellipsoid_is_the_ball_in_millimetres(radius, spacing):
    fp = ellipsoid(radius, spacing)
    centre = np.asarray(fp.shape) // 2
    assert all(n % 2 == 1 for n in fp.shape)
    for idx in np.ndindex(*fp.shape):
        d = (np.asarray(idx) - centre) * np.asarray(spacing)
        assert fp[idx] == (float((d ** 2).sum()) <= radius ** 2 + 1e-9)
    # the extent along each axis is floor(radius / spacing) voxels each side
    assert tuple(n // 2 for n in fp.shape) == tuple(int(np.floor(radius / s + 1e-9)) for s in spacing)


def test_thick_slices_get_no_reach():
    fp = ellipsoid(2.0, (5.0, 1.0, 1.0))
    assert fp.shape[0] == 1 and fp.shape[1:] == (5, 5)


def test_ball_offsets_are_the_ellipsoid_voxels():
    spacing = (2.0, 0.7, 0.9)
    off = ball_offsets(4.0, spacing)
    fp = ellipsoid(4.0, spacing)
    assert len(off) == fp.sum()
    assert (off == 0).all(axis=1).sum() == 1
    assert np.all(((off * spacing) ** 2).sum(axis=1) <= 16 + 1e-9)
    assert ball_offsets(0.0, spacing).tolist() == [[0, 0, 0]]


def test_mm_to_voxels_ceil():
    assert mm_to_voxels(2.0, (2.5, 0.7, 1.0)) == (1, 3, 2)
    assert mm_to_voxels(0.0, (1, 1, 1)) == (0, 0, 0)


def test_stepped_ball_reach_per_axis():
    steps = stepped_ball(3.0, np.array([3.0, 1.0, 1.0]))
    # round(3/3) = 1 step along z, 3 in-plane: one full cross, then two in-plane crosses
    assert [n for _, n in steps] == [1, 2]
    assert steps[0][0][0, 1, 1] and not steps[1][0][0, 1, 1] and steps[1][0][1, 0, 1]
    assert stepped_ball(0.2, np.array([1.0, 1.0, 1.0])) == ()


def test_octagon_disk_steps():
    assert [n for _, n in octagon_disk(5.0, (1.0, 1.0))] == [2, 3]
    fp = octagon_disk(1.0, (1.0, 1.0))
    assert len(fp) == 1 and fp[0][0] is PLANE4 and fp[0][1] == 1
    assert octagon_disk(0.2, (1.0, 1.0)) == ()
    assert not PLANE8[0].any() and PLANE8[1].all() and PLANE4[1].sum() == 5
