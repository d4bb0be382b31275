"""The click protocol's 1.5 mm data set: how its reference labels are resampled."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


@pytest.fixture(scope="module")
def coarse():
    """A 3 mm image of a uniform 100 HU block on 0 HU, with its label (1)."""
    import SimpleITK as sitk

    labels = np.zeros((10, 12, 14), np.uint8)
    labels[3:7, 4:9, 5:10] = 1
    image = sitk.GetImageFromArray(labels.astype(np.float32) * 100)
    image.SetSpacing((3.0, 3.0, 3.0))
    image.SetOrigin((-5.0, 7.0, 2.0))
    seg = sitk.GetImageFromArray(labels)
    seg.CopyInformation(image)
    return image, seg, labels


def test_nearest_labels_copy_each_coarse_voxel(coarse):
    import SimpleITK as sitk
    from bench_prompt import _resample

    image, seg, labels = coarse
    fine_image, fine_seg = _resample(image, seg, 1.5, labels="nearest")
    block = labels.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    assert np.array_equal(sitk.GetArrayFromImage(fine_seg), block)
    assert fine_seg.GetOrigin() == fine_image.GetOrigin()


def test_linear_labels_are_the_interpolated_image_cut_half_way(coarse):
    """For a uniform object on a uniform background the interpolated image thresholded
    half-way is the interpolated label; the block copy keeps the coarse corners."""
    import SimpleITK as sitk
    from bench_prompt import _resample

    image, seg, labels = coarse
    fine_image, fine_seg = _resample(image, seg, 1.5, labels="linear")
    fine = sitk.GetArrayFromImage(fine_seg)
    values = sitk.GetArrayFromImage(fine_image)
    assert fine_seg.GetOrigin() == fine_image.GetOrigin()
    assert fine_seg.GetSpacing() == fine_image.GetSpacing()
    assert np.array_equal(fine == 1, values > 50)
    block = labels.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    differ = (fine == 1) != (block == 1)
    # only the block's 8 corners' outer fine voxels drop (trilinear weight 0.75^3 < 0.5)
    assert differ.sum() == 8 and not (fine == 1)[differ].any()


def test_anisotropic_grid_copies_each_coarse_voxel_in_plane(coarse):
    """The ``--variants`` 1 x 1 x 3 mm grid: three fine voxels per coarse one in x and y,
    the slices kept, the reference still on the image's voxels."""
    import SimpleITK as sitk
    from bench_prompt import _resample

    image, seg, labels = coarse
    fine_image, fine_seg = _resample(image, seg, (1.0, 1.0, 3.0))
    assert fine_image.GetSpacing() == (1.0, 1.0, 3.0) == fine_seg.GetSpacing()
    assert fine_image.GetSize() == (42, 36, 10)
    block = labels.repeat(3, 1).repeat(3, 2)
    assert np.array_equal(sitk.GetArrayFromImage(fine_seg), block)
    # the image's voxel centres: the fine grid's first voxel centre lies 1 mm inside the coarse one's
    assert np.allclose(fine_image.GetOrigin(), (-6.0, 6.0, 2.0))


def test_added_noise_has_the_asked_spread_and_keeps_the_geometry(coarse):
    import SimpleITK as sitk
    from bench_prompt import _with_noise

    image, _, _ = coarse
    noisy = _with_noise(image, 15.0, seed=1)
    difference = sitk.GetArrayFromImage(noisy).astype(float) - sitk.GetArrayFromImage(image)
    assert abs(difference.std() - 15.0) < 0.6  # rounded to integers
    assert noisy.GetSpacing() == image.GetSpacing() and noisy.GetOrigin() == image.GetOrigin()
    again = sitk.GetArrayFromImage(_with_noise(image, 15.0, seed=1))
    assert np.array_equal(again, sitk.GetArrayFromImage(noisy))  # reproducible per seed
