"""Resampling of logits and labels against nnU-Net's, and the class argmax fast path."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.testing import assert_close_to_scale


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("n_classes", [2, 118, 300])
def test_class_argmax_equals_argmax_with_ties(dtype, n_classes):
    from napari_medseg.inference.resample import class_argmax

    rng = np.random.default_rng(n_classes)
    scores = torch.from_numpy(rng.normal(size=(n_classes, 3, 5, 7)).astype(dtype))
    scores[:, 0, 0, 0] = 1.0  # all tied: class 0
    scores[n_classes - 1, 1, 1, 1] = 50.0
    scores[1, 1, 1, 1] = 50.0  # tie between 1 and the last: 1
    got = class_argmax(scores)
    assert got.dtype == (torch.uint8 if n_classes <= 256 else torch.int32)
    assert torch.equal(got.long(), scores.float().argmax(0))
    assert int(got[0, 0, 0]) == 0 and int(got[1, 1, 1]) == 1


nnunet_resampling = pytest.importorskip("nnunetv2.preprocessing.resampling.default_resampling")


@pytest.mark.parametrize(
    "shape, new_shape, spacing, new_spacing, order",
    [
        ((2, 12, 20, 17), (21, 11, 26), (1, 1, 1), (1, 1, 1), 3),  # up and down, 3D
        ((1, 6, 20, 17), (24, 30, 25), (4, 1, 1), (1, 0.7, 0.7), 3),  # separate z, axis 0
        ((1, 20, 6, 17), (21, 24, 25), (1, 4, 1), (1, 1, 0.7), 3),  # separate, axis 1
        ((3, 6, 20, 17), (24, 30, 25), (4, 1, 1), (1, 0.7, 0.7), 1),  # order 1, separate
        ((3, 12, 20, 17), (21, 11, 26), (1, 1, 1), (1, 1, 1), 1),
        ((2, 12, 20, 17), (21, 11, 26), (1, 1, 1), (1, 1, 1), 0),
    ],
)
def test_resampling_matches_nnunet(shape, new_shape, spacing, new_spacing, order):
    from napari_medseg.inference.resample import resample_logits_to_labels, resample_like_nnunet

    data = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    ref = nnunet_resampling.resample_data_or_seg_to_shape(
        data, new_shape, spacing, new_spacing, is_seg=False, order=order, order_z=0,
        force_separate_z=None)
    ours = resample_like_nnunet(data, new_shape, spacing, new_spacing, order=order)
    assert ours.shape == ref.shape
    assert_close_to_scale(ours, ref, name="resampled image")
    labels = resample_logits_to_labels(torch.from_numpy(data), new_shape, spacing, new_spacing,
                                       order=order)
    assert (labels == ref.argmax(0)).mean() > 0.999
