"""Tests of the synthetic abdominal CT phantom (napari_medseg.phantom)."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from scipy import ndimage

from napari_medseg.errors import InvalidInputError
from napari_medseg.errors import InsufficientMemoryError, InvalidInputError
from napari_medseg.phantom import HU_RANGES, LABEL_IDS, LABEL_NAMES, make_phantom


SMALL = (64, 128, 128)


AGREED_IDS = {
    "liver": 1, "liver_lesion": 2, "spleen": 3, "kidney_right": 4, "kidney_left": 5,
    "aorta": 6, "vertebrae": 7, "lung": 8, "skin": 9, "subcutaneous_fat": 10, "muscle": 11,
}


@pytest.fixture(scope="module")
def small():
    return make_phantom(seed=0, shape=SMALL)


@pytest.fixture(scope="module")
def default():
    return make_phantom(seed=1)


def test_agreed_label_ids_never_renumbered(small):
    for name, i in AGREED_IDS.items():
        assert LABEL_NAMES[i] == name
        assert small.label_ids[name] == i
        assert small.names[i] == name
    assert LABEL_IDS == {n: i for i, n in LABEL_NAMES.items()}


def test_every_structure_is_present(small):
    present = set(np.unique(small.labels).tolist())
    assert set(LABEL_NAMES) <= present, f"missing: {set(LABEL_NAMES) - present}"


def test_geometry_and_types(small):
    ct = small.ct
    assert ct.array.dtype == np.int16 and small.labels.dtype == np.uint8
    assert ct.shape == SMALL and small.labels.shape == SMALL
    assert ct.spacing == (0.8, 0.8, 2.5)  # x, y, z
    assert ct.spacing_zyx == (2.5, 0.8, 0.8)
    assert ct.modality == "CT"
    assert ct.is_axis_aligned
    # Centred grid: the physical centre of the volume is (0, 0, 0).
    centre = ct.index_to_physical([(n - 1) / 2 for n in SMALL])
    np.testing.assert_allclose(centre, 0.0, atol=1e-9)
    assert small.labels_volume.same_grid(ct)


@pytest.mark.parametrize("shape,spacing", [(SMALL, (2.5, 0.8, 0.8)), ((40, 96, 80), (3.0, 1.2, 1.5))])
def test_same_seed_same_bytes(shape, spacing):
    a = make_phantom(seed=5, shape=shape, spacing_zyx=spacing)
    b = make_phantom(seed=5, shape=shape, spacing_zyx=spacing)
    assert a.ct.array.tobytes() == b.ct.array.tobytes()
    assert a.labels.tobytes() == b.labels.tobytes()
    assert a.lesions == b.lesions


def test_different_seeds_differ(small):
    other = make_phantom(seed=1, shape=SMALL)
    assert not np.array_equal(small.ct.array, other.ct.array)
    # The anatomy itself differs, not just the noise.
    assert np.count_nonzero(small.labels != other.labels) > 0.01 * small.labels.size
    assert [l.center_xyz_mm for l in small.lesions] != [l.center_xyz_mm for l in other.lesions]
    assert [l.hu for l in small.lesions] != [l.hu for l in other.lesions]


def test_lpsside_and_craniocaudal_layout(small):
    """LPS: +x is the patient's left, +y posterior, +z superior."""
    ct = small.ct

    def centroid_xyz(name):
        zyx = np.argwhere(small.labels == small.label_ids[name]).mean(axis=0)
        return ct.index_to_physical(zyx)

    assert centroid_xyz("liver")[0] < 0 < centroid_xyz("spleen")[0]
    assert centroid_xyz("kidney_right")[0] < 0 < centroid_xyz("kidney_left")[0]
    assert centroid_xyz("vertebrae")[1] > centroid_xyz("aorta")[1]  # spine behind the aorta
    assert centroid_xyz("lung")[2] > centroid_xyz("liver")[2] > centroid_xyz("kidney_right")[2]


@pytest.mark.parametrize("seed", [0, 3, 7])
def test_lesions_lie_inside_the_liver_and_never_touch(seed):
    p = make_phantom(seed=seed, shape=SMALL)
    assert len(p.lesions) == 3
    liver_or_lesion = np.isin(p.labels, (1, 2))
    union = np.zeros(p.labels.shape, dtype=bool)
    for i, lesion in enumerate(p.lesions):
        mask = p.lesion_mask(i)
        assert mask.any()
        assert np.all(p.labels[mask] == 2)
        # One voxel all around the lesion is liver (or lesion): fully inside the liver.
        grown = ndimage.binary_dilation(mask, iterations=1)
        assert np.all(liver_or_lesion[grown])
        assert np.all(p.labels[grown & ~mask] == 1)
        assert not (union & grown).any(), "lesions touch"
        union |= mask
        np.testing.assert_allclose(p.ct.physical_to_index(lesion.center_xyz_mm),
                                   lesion.center_zyx_vox, atol=1e-6)
    assert np.array_equal(union, p.labels == 2)
    _, n = ndimage.label(p.labels == 2)
    assert n == 3


def test_lesions_have_different_sizes_largest_first(default):
    volumes = [l.volume_ml for l in default.lesions]
    assert volumes == sorted(volumes, reverse=True)
    assert volumes[0] > 2.5 * volumes[-1]
    for lesion in default.lesions:
        a = lesion.semi_axes_xyz_mm
        assert lesion.longest_axial_diameter_mm == pytest.approx(2 * max(a[0], a[1]))
        assert lesion.diameters_xyz_mm == pytest.approx(tuple(2 * x for x in a))
        assert lesion.volume_ml == pytest.approx(4 / 3 * math.pi * a[0] * a[1] * a[2] / 1000)


@pytest.mark.parametrize("fixture,tol", [("default", 0.03), ("small", 0.06)])
def test_lesion_voxel_volume_matches_analytic(fixture, tol, request):
    p = request.getfixturevalue(fixture)
    for i, lesion in enumerate(p.lesions):
        counted = np.count_nonzero(p.lesion_mask(i)) * p.ct.voxel_volume_ml
        assert counted == pytest.approx(lesion.volume_ml, rel=tol), f"lesion {i}"


def test_median_hu_per_label_is_realistic(default):
    ct = default.ct.array
    for name, (lo, hi) in HU_RANGES.items():
        mask = default.labels == default.label_ids[name]
        median = float(np.median(ct[mask]))
        assert lo <= median <= hi, f"{name}: median {median} HU not in [{lo}, {hi}]"
    assert np.median(ct[default.labels == 0]) < -950  # air around the body


def test_lesions_are_hypodense_with_their_own_attenuation(default):
    ct = default.ct.array
    liver = float(np.median(ct[default.labels == 1]))
    for i, lesion in enumerate(default.lesions):
        core = ndimage.binary_erosion(default.lesion_mask(i), iterations=1)
        median = float(np.median(ct[core]))
        assert 20 <= lesion.hu <= 50
        assert median == pytest.approx(lesion.hu, abs=8)
        assert liver - median > 35


def test_noise_level(default):
    # Inside the liver, away from edges and lesions: std ~ noise_hu (12 HU default).
    core = ndimage.binary_erosion(default.labels == 1, iterations=3)
    std = float(np.std(default.ct.array[core]))
    assert 8 <= std <= 18
    quiet = make_phantom(seed=1, shape=SMALL, noise_hu=0.0, blur_mm=0.0)
    core = ndimage.binary_erosion(quiet.lesion_mask(0), iterations=1)
    assert np.ptp(quiet.ct.array[core]) == 0  # no noise, no blur: a flat lesion
    assert quiet.ct.array[core][0] == round(quiet.lesions[0].hu)


def test_no_lesions_and_many_lesions():
    none = make_phantom(seed=2, shape=SMALL, n_lesions=0)
    assert none.lesions == [] and not np.any(none.labels == 2)
    five = make_phantom(seed=2, shape=(100, 256, 256), n_lesions=5)
    assert len(five.lesions) == 5
    _, n = ndimage.label(five.labels == 2)
    assert n == 5


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"shape": (100, 256)}, "3 sizes"),
        ({"shape": (4, 64, 64)}, "at least 8"),
        ({"spacing_zyx": (2.5, 0.0, 0.8)}, "positive"),
        ({"spacing_zyx": (2.5, float("nan"), 0.8)}, "positive"),
        ({"n_lesions": 9}, "between 0 and 8"),
        ({"n_lesions": -1}, "between 0 and 8"),
        ({"noise_hu": -1.0}, "must not be negative"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        make_phantom(**kwargs)


def test_lesion_mask_index_error(small):
    with pytest.raises(IndexError, match="3 lesions"):
        small.lesion_mask(3)


def test_memory_stays_below_twice_a_float32_volume():
    make_phantom(seed=0, shape=(16, 64, 64), n_lesions=0)  # warm up imports (tracemalloc counts them)
    shape = (80, 192, 192)
    tracemalloc.start()
    try:
        p = make_phantom(seed=0, shape=shape, spacing_zyx=(3.0, 1.0, 1.0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    float32_bytes = 4 * int(np.prod(shape))
    assert peak < 2.0 * float32_bytes, f"peak {peak / float32_bytes:.2f}x the float32 volume"
    assert p.ct.array.nbytes + p.labels.nbytes == 0.75 * float32_bytes


# --- bad input and faults


PHANTOM_CASES = [
    # (id, kwargs, error, message fragment)
    ("negative seed", {"seed": -1}, InvalidInputError, "seed must be a whole number >= 0"),
    ("fractional seed", {"seed": 1.5}, InvalidInputError, "seed must be a whole number"),
    ("2D shape", {"shape": (256, 256)}, InvalidInputError, "3 sizes (z, y, x)"),
    ("tiny shape", {"shape": (4, 64, 64)}, InvalidInputError, "at least 8 voxels"),
    ("zero spacing", {"spacing_zyx": (2.5, 0.0, 0.8)}, InvalidInputError, "positive"),
    ("negative spacing", {"spacing_zyx": (-2.5, 0.8, 0.8)}, InvalidInputError, "positive"),
    ("nan spacing", {"spacing_zyx": (2.5, float("nan"), 0.8)}, InvalidInputError, "positive"),
    ("too many lesions", {"n_lesions": 9}, InvalidInputError, "between 0 and 8"),
    ("negative noise", {"noise_hu": -5.0}, InvalidInputError, "must not be negative"),
    ("grid too small for the lesions", {"shape": (16, 48, 48)}, InvalidInputError,
     "could not fit liver lesion"),
]


@pytest.mark.parametrize("kwargs,error,message", [c[1:] for c in PHANTOM_CASES],
                         ids=[c[0] for c in PHANTOM_CASES])
def test_make_phantom_bad_input(kwargs, error, message):
    with pytest.raises(error) as info:
        make_phantom(**kwargs)
    assert message in str(info.value)


def test_make_phantom_refuses_what_does_not_fit_in_memory(monkeypatch):
    monkeypatch.setenv("MEDSEG_AVAILABLE_MEMORY", str(10 * 2**20))  # 10 MiB
    with pytest.raises(InsufficientMemoryError, match=r"256 x 256 x 100 phantom needs about"):
        make_phantom()


def test_mr_contrast_is_deterministic_and_shares_the_bias_field():
    from napari_medseg.errors import InvalidInputError
    from napari_medseg.phantom import MR_SIGNAL, make_phantom, mr_contrast

    ph = make_phantom(seed=3, shape=(24, 64, 64), spacing_zyx=(6.0, 3.0, 3.0), n_lesions=1)
    t1, t1b = mr_contrast(ph, "T1"), mr_contrast(ph, "t1")
    assert t1.modality == "MR" and t1.array.dtype == np.uint16 and t1.same_grid(ph.ct)
    assert np.array_equal(t1.array, t1b.array)
    assert not np.array_equal(t1.array, mr_contrast(ph, "T1", seed=4).array)
    # no noise, no blur: the ratio T1/T2 inside one structure is constant (shared bias field)
    a = mr_contrast(ph, "T1", noise=0, blur_mm=0).array.astype(float)
    b = mr_contrast(ph, "T2", noise=0, blur_mm=0).array.astype(float)
    liver = ph.labels == ph.label_ids["liver"]
    ratio = a[liver] / b[liver]
    expected = MR_SIGNAL["T1"]["liver"] / MR_SIGNAL["T2"]["liver"]
    assert np.allclose(ratio, expected, rtol=0.01)
    assert a[liver].std() / a[liver].mean() > 0.01  # and the field does vary
    with pytest.raises(InvalidInputError, match="T1 or T2"):
        mr_contrast(ph, "FLAIR")
