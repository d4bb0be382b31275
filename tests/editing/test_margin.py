"""Margins (grow, shrink) in millimetres with anisotropic voxels; tiled transforms against a plain scipy reference."""

import importlib

import numpy as np
import pytest
from scipy import ndimage

from napari_medseg.editing import grow, margin, shrink, smooth


margin_mod = importlib.import_module("napari_medseg.editing.margin")


def _ref_grow(lab, sp, d, label=None, overwrite=False):
    ids = [label] if label is not None else [int(i) for i in np.unique(lab) if i]
    out = lab.copy()
    best = np.full(lab.shape, np.inf)
    growing = np.isin(lab, ids)
    tol = 1e-4 + 1e-5 * d
    for i in ids:
        mask = lab == i
        if not mask.any():
            continue
        dist = ndimage.distance_transform_edt(~mask, sampling=sp)
        cand = (dist <= d + tol) & ~mask
        cand &= ~growing if overwrite else (lab == 0)
        cand &= dist < best * (1 - 1e-5)
        best[cand] = dist[cand]
        out[cand] = i
    return out


def _ref_shrink(lab, sp, d, label=None):
    ids = [label] if label is not None else [int(i) for i in np.unique(lab) if i]
    out = lab.copy()
    tol = 1e-4 + 1e-5 * d
    for i in ids:
        mask = lab == i
        if mask.all() or not mask.any():
            continue
        dist = ndimage.distance_transform_edt(mask, sampling=sp)
        out[mask & (dist <= d + tol)] = 0
    return out


def _random_map(rng):
    shape = tuple(int(v) for v in rng.integers(5, 26, 3))
    lab = np.zeros(shape, np.uint8)
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    for _ in range(int(rng.integers(1, 6))):
        c = [int(rng.integers(0, s)) for s in shape]
        r = int(rng.integers(1, 6))
        lab[(zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r] = rng.integers(1, 4)
    lab[rng.random(shape) < 0.01] = rng.integers(1, 4)
    lab[0, 0, 0], lab[-1, -1, -1] = 1, 2  # both labels the tests select are present
    return lab


@pytest.mark.parametrize("seed", range(12))
def test_tiled_margins_match_reference(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    lab = _random_map(rng)
    sp = tuple(float(v) for v in rng.choice([0.5, 0.8, 1.0, 2.5, 3.0], 3))
    d = float(rng.choice([0.7, 1.0, 2.0, 3.3, 5.0]))
    # tiny tiles: many tile boundaries (and halos clipped by the box) on a small array
    monkeypatch.setattr(margin_mod, "TILE", tuple(int(v) for v in rng.integers(1, 8, 3)))
    for kw in ({}, {"label": 1}, {"overwrite": True}, {"label": 2, "overwrite": True}):
        got = margin_mod.grow(lab, sp, d, **kw)
        assert np.array_equal(got, _ref_grow(lab, sp, d, **kw)), kw
    for kw in ({}, {"label": 1}):
        got = margin_mod.shrink(lab, sp, d, **kw)
        assert np.array_equal(got, _ref_shrink(lab, sp, d, **kw)), kw


def test_tile_size_does_not_change_result(monkeypatch):
    rng = np.random.default_rng(99)
    lab = _random_map(rng)
    sp, d = (2.5, 0.8, 0.8), 3.0
    monkeypatch.setattr(margin_mod, "TILE", (1000, 1000, 1000))
    one = (margin_mod.grow(lab, sp, d), margin_mod.shrink(lab, sp, d))
    monkeypatch.setattr(margin_mod, "TILE", (2, 3, 4))
    many = (margin_mod.grow(lab, sp, d), margin_mod.shrink(lab, sp, d))
    for a, b in zip(one, many):
        assert np.array_equal(a, b)


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
