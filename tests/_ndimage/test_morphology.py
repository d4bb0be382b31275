"""Morphology: the counting path equals SciPy's binary operations; decompositions chain."""

import numpy as np
import pytest
from scipy import ndimage

from napari_medseg._ndimage import (
    closing,
    dilate,
    ellipsoid,
    erode,
    fill_holes,
    footprint_count,
    majority,
    octagon_disk,
    opening,
    stepped_ball,
)
from napari_medseg.editing import smooth


@pytest.fixture
def blobs():
    rng = np.random.default_rng(3)
    return ndimage.gaussian_filter(rng.random((14, 30, 28)), 1.5) > 0.52


@pytest.mark.parametrize("radius, spacing", [(2.0, (2.5, 0.7, 0.8)), (3.0, (1, 1, 1)), (0.5, (1, 1, 1))])
def test_exact_footprint_equals_scipy(blobs, radius, spacing):
    fp = ellipsoid(radius, spacing)
    assert blobs.any() and not blobs.all()
    np.testing.assert_array_equal(dilate(blobs, fp), ndimage.binary_dilation(blobs, structure=fp))
    np.testing.assert_array_equal(erode(blobs, fp), ndimage.binary_erosion(blobs, structure=fp))
    np.testing.assert_array_equal(erode(blobs, fp, border_value=1),
                                  ndimage.binary_erosion(blobs, structure=fp, border_value=1))


def test_footprint_count_is_a_correlation(blobs):
    fp = ellipsoid(2.0, (1.0, 1.0, 1.0))
    ref = ndimage.correlate(blobs.astype(np.int32), fp.astype(np.int32), mode="constant")
    np.testing.assert_array_equal(footprint_count(blobs, fp), ref)
    with pytest.raises(ValueError, match="contiguous"):
        footprint_count(blobs, np.array([[[1, 0, 1]]], bool))


def test_decomposition_is_applied_in_order(blobs):
    steps = stepped_ball(3.0, np.array([2.0, 1.0, 1.0]))
    ref = blobs
    for st, n in steps:
        ref = ndimage.binary_dilation(ref, structure=st, iterations=n)
    np.testing.assert_array_equal(dilate(blobs, steps), ref)
    disk = octagon_disk(4.0, (1.0, 1.0))
    out = erode(blobs, disk)
    ref = blobs
    for st, n in disk:
        ref = ndimage.binary_erosion(ref, structure=st, iterations=n)
    np.testing.assert_array_equal(out, ref)
    # an empty decomposition is the identity, as a new array
    same = dilate(blobs, ())
    assert same is not blobs and np.array_equal(same, blobs)


def test_conditional_dilation_stays_within(blobs):
    within = np.zeros_like(blobs)
    within[:, :15] = True
    out = dilate(blobs & within, stepped_ball(2.0, np.array([1.0, 1.0, 1.0])), within=within)
    assert not (out & ~within).any()
    assert out.sum() > (blobs & within).sum()


def test_opening_and_closing_treat_outside_as_background():
    m = np.zeros((9, 9, 9), bool)
    m[:, 2:7, 2:7] = True  # a bar through the whole array along z
    fp = ellipsoid(1.0, (1, 1, 1))
    # the closing of a shape touching the faces does not erode it there (SciPy's does)
    np.testing.assert_array_equal(closing(m, fp), m)
    assert not np.array_equal(ndimage.binary_closing(m, structure=fp), m)  # why closing() pads
    thin = m.copy()
    thin[4, 0:2, 4] = True  # a 1-voxel-thin spur: its tip is removed by the opening, the bar kept
    opened = opening(thin, fp)
    assert not opened[4, 0, 4] and opened[4, 4, 4] and opened[4, 3:6, 3:6].all()  # only the corners round off
    assert opened.sum() <= thin.sum()


def test_majority_is_a_binary_median(blobs):
    fp = ellipsoid(1.0, (1, 1, 1))
    ref = ndimage.median_filter(blobs.astype(np.uint8), footprint=fp, mode="constant") > 0
    np.testing.assert_array_equal(majority(blobs, fp), ref)


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


def test_face_dilate_is_one_step_of_six_connected_dilation():
    import numpy as np
    from scipy import ndimage as ndi

    from napari_medseg._ndimage import face_dilate

    mask = np.random.default_rng(3).random((7, 9, 11)) > 0.85
    expected = ndi.binary_dilation(mask, structure=ndi.generate_binary_structure(3, 1))
    assert np.array_equal(face_dilate(mask), expected)
    assert np.array_equal(face_dilate(mask[:1]), ndi.binary_dilation(mask[:1], structure=ndi.generate_binary_structure(3, 1)))


def test_fill_holes_is_scipys():
    rng = np.random.default_rng(3)
    for shape, p in (((20, 30, 25), 0.45), ((9, 40, 40), 0.6), ((1, 12, 12), 0.5)):
        mask = rng.random(shape) < p
        mask[2:-2, 3:-3, 3:-3] |= ndimage.binary_erosion(mask[2:-2, 3:-3, 3:-3])  # closed shells, real holes
        assert np.array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))
    assert fill_holes(np.ones((4, 4, 4), bool)).all()
    assert not fill_holes(np.zeros((3, 3, 3), bool)).any()
