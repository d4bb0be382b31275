"""Tiled margin transforms against a plain scipy reference (float64, whole array)."""

import importlib

import numpy as np
import pytest
from scipy import ndimage

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
