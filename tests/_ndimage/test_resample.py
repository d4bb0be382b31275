"""Resampling: target shapes, index maps, separable trilinear = torch's trilinear."""

import numpy as np
import pytest

from napari_medseg._ndimage import (
    linear_upsample_matrix,
    nearest_index,
    resample_linear,
    resample_nearest,
    target_shape,
    to_resampled,
)
from napari_medseg.testing import assert_close_to_scale


def test_target_shape():
    assert target_shape((100, 512, 512), (2.5, 0.7, 0.7), 1.5) == (167, 239, 239)
    assert target_shape((10, 20, 30), (1, 1, 1), (2.0, 0.5, 1.0)) == (5, 40, 30)
    assert target_shape((1, 2, 2), (1, 1, 1), 50.0) == (1, 1, 1)  # at least one voxel


def test_index_maps_share_the_outer_boundary():
    assert to_resampled(-0.5, 10, 20) == -0.5 and to_resampled(9.5, 10, 20) == 19.5
    assert nearest_index(4, 2).tolist() == [0, 0, 1, 1]
    assert nearest_index(2, 4).tolist() == [1, 3]
    assert nearest_index(5, 5).tolist() == list(range(5))


@pytest.mark.parametrize("shape", [(9, 13, 11), (4, 4, 4), (20, 7, 9)])
def test_resample_linear_is_trilinear(shape):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    arr = rng.integers(-1000, 1000, size=(12, 10, 8)).astype(np.int16)
    ours = resample_linear(arr, shape, chunk=5).numpy()
    ref = F.interpolate(torch.from_numpy(arr.astype(np.float32))[None, None], size=shape,
                        mode="trilinear", align_corners=False)[0, 0].numpy()
    assert ours.dtype == np.float32 and ours.shape == shape
    assert_close_to_scale(ours, ref)


def test_resample_nearest_keeps_labels():
    lab = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    out = resample_nearest(lab, (4, 3, 2))
    assert out.dtype == np.uint8
    # z: nearest_index(4, 2) = [0, 0, 1, 1]; x: nearest_index(2, 4) = [1, 3]
    assert out[:, 0, 0].tolist() == [1, 1, 13, 13]
    assert set(np.unique(out)) <= set(np.unique(lab))
    stacked = resample_nearest(np.stack([lab, lab]), (4, 3, 2))
    assert stacked.shape == (2, 4, 3, 2) and np.array_equal(stacked[1], out)


def test_linear_upsample_matrix_rows_interpolate():
    m = linear_upsample_matrix(4, 8)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=1e-6)
    x = np.arange(4, dtype=np.float32)
    # samples of a linear ramp stay on it; the borders clamp to the end values
    np.testing.assert_allclose(m @ x, np.clip((np.arange(8) + 0.5) / 2 - 0.5, 0, 3), atol=1e-6, rtol=0)
