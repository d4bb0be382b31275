"""Smoothing and margins in millimetres, with anisotropic voxels."""

import numpy as np
import pytest

from napari_medseg.editing import grow, margin, shrink, smooth
from napari_medseg.editing._common import ellipsoid


def test_ellipsoid_is_round_in_mm():
    assert ellipsoid(1.5, (3.0, 1.0, 1.0)).shape == (1, 3, 3)
    fp = ellipsoid(2.0, (1.0, 0.5, 0.5))
    assert fp.shape == (5, 9, 9)
    assert fp[2, 4, 0] and fp[0, 4, 4] and not fp[0, 4, 3]  # reaches 2 mm on each axis only


def _cube_with_spike():
    a = np.zeros((11, 11, 11), np.uint8)
    a[3:8, 3:8, 3:8] = 1
    a[5, 5, 8:10] = 1  # a thin 2-voxel spike
    return a


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


def _brute_grow(a, sp, d):
    pts = np.argwhere(a == 1) * np.asarray(sp)
    grid = np.stack(np.indices(a.shape), -1) * np.asarray(sp)
    dist = np.min(np.linalg.norm(grid[..., None, :] - pts[None, None, None], axis=-1), axis=-1)
    return dist <= d + 1e-9


def test_grow_single_voxel_anisotropic_hand_count():
    a = np.zeros((5, 7, 7), np.uint8)
    a[2, 3, 3] = 1
    out = grow(a, (2.0, 1.0, 1.0), 2.0)
    # in-plane: |(dy, dx)| <= 2 -> 13 voxels; along z: +-1 slice (2 mm) at the centre -> 2
    assert (out == 1).sum() == 15
    assert out[1, 3, 3] == 1 and out[1, 3, 4] == 0 and out[2, 3, 5] == 1


def test_grow_matches_brute_force():
    rng = np.random.default_rng(1)
    a = np.zeros((6, 8, 8), np.uint8)
    a[rng.integers(0, 6, 5), rng.integers(0, 8, 5), rng.integers(0, 8, 5)] = 1
    sp = (2.5, 0.7, 0.9)
    out = grow(a, sp, 2.6)
    np.testing.assert_array_equal(out == 1, _brute_grow(a, sp, 2.6))


def test_grow_respects_other_labels_and_nearest_wins():
    a = np.zeros((1, 1, 11), np.uint8)
    a[0, 0, 0] = 1
    a[0, 0, 10] = 2
    out = grow(a, (1, 1, 1), 6.0)  # both grow; each background voxel goes to the nearest
    # voxel 5 is equidistant: it goes to the label processed first (1)
    assert out[0, 0].tolist() == [1] * 6 + [2] * 5
    assert out[0, 0, 4] == 1 and out[0, 0, 6] == 2
    b = np.zeros((1, 1, 7), np.uint8)
    b[0, 0, 0] = 1
    b[0, 0, 2] = 2
    # distances are straight-line (not geodesic): label 1 reaches past label 2
    # without overwriting it
    assert grow(b, (1, 1, 1), 3.0, label=1)[0, 0].tolist() == [1, 1, 2, 1, 0, 0, 0]
    assert grow(b, (1, 1, 1), 3.0, label=1, overwrite=True)[0, 0].tolist() == [1, 1, 1, 1, 0, 0, 0]


def test_shrink_anisotropic_cube():
    a = np.zeros((7, 7, 7), np.uint8)
    a[1:6, 1:6, 1:6] = 1
    out = shrink(a, (1, 1, 1), 1.0)
    assert (out == 1).sum() == 27 and out[2:5, 2:5, 2:5].all()
    # 2 mm slices: the nearest background along z is 2 mm away, so z is not eroded by 1 mm
    out2 = shrink(a, (2.0, 1.0, 1.0), 1.0)
    assert (out2 == 1).sum() == 5 * 3 * 3 and out2[1:6, 2:5, 2:5].all()
    np.testing.assert_array_equal(margin(a, (2.0, 1.0, 1.0), -1.0), out2)


def test_shrink_against_other_label_surface():
    a = np.zeros((1, 1, 8), np.uint8)
    a[0, 0, 1:7] = 1
    a[0, 0, 7] = 2
    out = shrink(a, (1, 1, 1), 1.0, label=1)
    assert out[0, 0].tolist() == [0, 0, 1, 1, 1, 1, 0, 2]


def test_margin_zero_is_identity_copy():
    a = np.zeros((3, 3, 3), np.uint8)
    a[1, 1, 1] = 1
    out = margin(a, (1, 1, 1), 0)
    assert out is not a and np.array_equal(out, a)


def test_grow_on_one_slice():
    a = np.zeros((3, 5, 5), np.uint8)
    a[:, 2, 2] = 1
    out = grow(a, (1, 1, 1), 1.0, axis=0, index=1)
    assert (out[1] == 1).sum() == 5 and (out[0] == 1).sum() == 1 and (out[2] == 1).sum() == 1


@pytest.mark.parametrize("op", ["grow", "grow_all", "shrink", "median", "opening", "closing"])
def test_island_boxes_give_the_same_result_as_one_box(monkeypatch, op):
    """Processing scattered islands box by box is exact (same as one bounding box)."""
    from napari_medseg.editing import _common

    rng = np.random.default_rng(3)
    a = np.zeros((30, 120, 120), np.uint8)
    a[5:12, 10:25, 8:20] = 1
    idx = rng.integers(0, [30, 120, 120], size=(25, 3))
    a[tuple(idx.T)] = 1
    a[tuple(rng.integers(0, [30, 120, 120], size=(15, 3)).T)] = 2
    a[15:18, 30:36, 30:37] = 1
    a[16, 33, 38:40] = 1  # two islands close enough to be merged into one box
    sp = (2.0, 0.9, 0.7)
    run = {
        "grow": lambda: grow(a, sp, 2.5, label=1),
        "grow_all": lambda: grow(a, sp, 1.9),
        "shrink": lambda: shrink(a, sp, 1.0, label=1),
        "median": lambda: smooth(a, sp, 1.6, "median", label=1),
        "opening": lambda: smooth(a, sp, 1.6, "opening"),
        "closing": lambda: smooth(a, sp, 1.6, "closing", label=1),
    }[op]
    monkeypatch.setattr(_common, "CLUSTER_MIN_VOXELS", 10**12)
    one_box = run()
    monkeypatch.setattr(_common, "CLUSTER_MIN_VOXELS", 0)
    calls = []
    real = _common.clustered_boxes

    def spy(mask, pad):
        out = real(mask, pad)
        calls.append(len(out))
        return out

    monkeypatch.setattr(_common, "clustered_boxes", spy)
    pieces = run()
    assert max(calls) > 1  # really split into several boxes
    np.testing.assert_array_equal(pieces, one_box)


@pytest.mark.parametrize("radius,sp", [(1.0, (1, 1, 1)), (3.0, (2.5, 0.8, 0.8)), (2.2, (0.7, 1.3, 0.9))])
def test_footprint_count_equals_convolution(radius, sp):
    from scipy import ndimage

    from napari_medseg.editing.smoothing import footprint_count

    rng = np.random.default_rng(0)
    mask = rng.random((9, 17, 15)) < 0.4
    fp = ellipsoid(radius, sp)
    ref = ndimage.correlate(mask.astype(np.int32), fp.astype(np.int32), mode="constant")
    np.testing.assert_array_equal(footprint_count(mask, fp), ref)
    np.testing.assert_array_equal(footprint_count(mask[3], fp[fp.shape[0] // 2]), ndimage.correlate(
        mask[3].astype(np.int32), fp[fp.shape[0] // 2].astype(np.int32), mode="constant"))
    # and the binary median equals scipy's median filter on the same footprint
    med = ndimage.median_filter(mask.astype(np.uint8), footprint=fp, mode="constant")
    np.testing.assert_array_equal(smooth(mask.astype(np.uint8), sp, radius, "median") == 1, med == 1)


def test_footprint_count_exact_when_prefix_sums_wrap():
    """int16 prefix sums wrap around on rows longer than 32767 voxels; the counts
    (differences of prefix sums) stay exact."""
    from napari_medseg.editing.smoothing import footprint_count

    mask = np.ones((3, 2, 70_000), bool)
    mask[1, 0, 50_000:50_003] = False
    fp = ellipsoid(1.0, (1.0, 1.0, 1.0))  # 7-voxel cross
    counts = footprint_count(mask, fp)
    from scipy import ndimage

    ref = ndimage.correlate(mask.astype(np.int32), fp.astype(np.int32), mode="constant")
    np.testing.assert_array_equal(counts, ref)
