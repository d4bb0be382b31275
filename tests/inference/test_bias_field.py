"""N4 bias-field correction: it flattens the MR phantom's shading, keeps the grid, is cached."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_medseg.errors import Cancelled, InvalidInputError
from napari_medseg.inference.bias_field import (
    BiasFieldSettings, cache_info, correct_bias_field, set_cache_limit, shrink_factors,
)
from napari_medseg.phantom import mr_contrast


def _cv(array, mask) -> float:
    values = np.asarray(array, np.float64)[mask]
    return float(values.std() / values.mean())


@pytest.mark.parametrize("weighting", ["T1", "T2"])
def test_within_organ_variation_drops_on_the_mr_phantom(mr_phantom, n4_fits, weighting):
    """The phantom's smooth bias field (+-25 %) makes one tissue vary across the body; after
    N4 the coefficient of variation inside the large structures drops clearly."""
    vol = mr_contrast(mr_phantom, weighting)
    corrected = correct_bias_field(vol)
    ids = {name: i for i, name in mr_phantom.names.items()}
    before, after = {}, {}
    for name in ("liver", "subcutaneous_fat", "muscle", "visceral_fat", "spleen"):
        # eroded: partial volume at the edges is not what the bias field does
        mask = ndi.binary_erosion(mr_phantom.labels == ids[name], iterations=1)
        assert mask.sum() > 500, name
        before[name], after[name] = _cv(vol.array, mask), _cv(corrected.array, mask)
    # the widest structure (fat under the skin, all around the body) sees the most shading
    assert after["subcutaneous_fat"] < 0.7 * before["subcutaneous_fat"], (before, after)
    assert np.mean(list(after.values())) < 0.85 * np.mean(list(before.values())), (before, after)
    assert all(after[n] < before[n] * 1.02 for n in before), (before, after)
    # the image keeps its scale: tissue means move by a few per cent at most
    for name in ("liver", "muscle"):
        mask = mr_phantom.labels == ids[name]
        assert abs(corrected.array[mask].mean() / vol.array[mask].mean() - 1) < 0.08, name


def test_correction_keeps_the_grid(mr_phantom, n4_fits):
    """Same shape, spacing, origin, direction, modality: on an oblique, permuted copy too."""
    vol = mr_contrast(mr_phantom, "T1")
    theta = np.deg2rad(20)
    direction = (np.cos(theta), -np.sin(theta), 0.0, np.sin(theta), np.cos(theta), 0.0, 0.0, 0.0, 1.0)
    oblique = vol.with_array(np.ascontiguousarray(vol.array[::-1].transpose(0, 2, 1)),
                             origin=(-12.5, 40.0, 7.0), direction=direction)
    for v in (vol, oblique):
        out = correct_bias_field(v)
        assert out.shape == v.shape and out.same_grid(v)
        assert out.spacing == v.spacing and out.origin == v.origin and out.direction == v.direction
        assert out.modality == "MR" and out.metadata["bias_corrected"] == "N4"
        assert out.array.dtype == np.float32 and np.isfinite(out.array).all()
        assert not out.array.flags.writeable  # shared with the cache
    assert v.array.dtype == np.uint16


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_the_input_is_never_changed(mr_phantom, n4_fits, dtype):
    """A float32 image (what the Statistics dock passes from a layer) is corrected in a copy."""
    vol = mr_contrast(mr_phantom, "T1")
    vol = vol.with_array(vol.array.astype(dtype))
    before = vol.array.copy()
    out = correct_bias_field(vol)
    assert np.array_equal(vol.array, before) and vol.array.dtype == dtype
    assert not np.shares_memory(out.array, vol.array)


def test_second_call_is_a_cache_hit(mr_phantom, n4_fits):
    vol = mr_contrast(mr_phantom, "T1")
    first = correct_bias_field(vol)
    assert len(n4_fits) == 1
    # the same image again, even as a new Volume object around a copy of the array
    second = correct_bias_field(vol.with_array(vol.array.copy()))
    assert len(n4_fits) == 1 and cache_info()["hits"] == 1
    assert np.array_equal(first.array, second.array)
    # other content, other geometry or other settings: a new fit each
    other = vol.array.copy()
    other[0, 0, 0] += 1
    correct_bias_field(vol.with_array(other))
    correct_bias_field(vol.with_array(vol.array, spacing=(1.7, 1.6, 4.0)))
    correct_bias_field(vol, BiasFieldSettings(iterations=(20, 20)))
    assert len(n4_fits) == 4


def test_cache_is_bounded_in_memory(mr_phantom, n4_fits):
    vol = mr_contrast(mr_phantom, "T1")
    one = vol.array.size * 4  # float32 per voxel
    set_cache_limit(int(one * 1.5))
    correct_bias_field(vol)
    correct_bias_field(vol, BiasFieldSettings(iterations=(20, 20)))
    info = cache_info()
    assert info["entries"] == 1 and info["bytes"] <= info["limit"]
    correct_bias_field(vol)  # dropped to make room: computed again
    assert len(n4_fits) == 3
    set_cache_limit(0)  # caching off
    assert cache_info()["entries"] == 0
    correct_bias_field(vol)
    correct_bias_field(vol)
    assert len(n4_fits) == 5


def test_shrink_factors_bound_the_fitting_grid():
    s = BiasFieldSettings()
    assert shrink_factors((100, 256, 256), (2.5, 0.8, 0.8), s) == (3, 10, 10)
    f = shrink_factors((300, 512, 512), (1.0, 0.7, 0.7), s)
    assert np.prod([-(-n // k) for n, k in zip((300, 512, 512), f)]) <= s.max_fit_voxels
    assert shrink_factors((4, 8, 8), (10.0, 10.0, 10.0), s) == (1, 1, 1)


# --- bad input and faults

def test_ct_is_refused(mr_phantom, n4_fits):
    with pytest.raises(InvalidInputError, match="for MR images; this image is CT"):
        correct_bias_field(mr_phantom.ct)
    assert not n4_fits


def test_non_finite_and_non_3d_are_refused(mr_phantom, n4_fits):
    vol = mr_contrast(mr_phantom, "T1")
    bad = vol.array.astype(np.float32)
    bad[3, 4, 5] = np.nan
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        correct_bias_field(vol.with_array(bad))
    with pytest.raises(InvalidInputError, match="iterations"):
        BiasFieldSettings(iterations=())
    with pytest.raises(InvalidInputError, match="settings must be"):
        correct_bias_field(vol, {"iterations": 3})
    assert not n4_fits


def test_cancel_stops_before_anything_is_cached(mr_phantom, n4_fits):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        correct_bias_field(mr_contrast(mr_phantom, "T1"), cancel=cancel)
    assert cache_info()["entries"] == 0
