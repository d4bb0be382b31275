"""The engine's building blocks against nnU-Net's own functions."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.testing import assert_close_to_scale

torch = pytest.importorskip("torch")
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


def test_sliding_window_steps_and_gaussian_match_nnunet():
    sw = pytest.importorskip("nnunetv2.inference.sliding_window_prediction")
    from napari_medseg.inference.sliding_window import compute_steps, gaussian_importance_map

    for size, tile, step in [((40, 100, 77), (16, 32, 32), 0.5), ((16, 32, 33), (16, 32, 32), 0.7)]:
        assert compute_steps(size, tile, step) == sw.compute_steps_for_sliding_window(size, tile, step)
    ref = sw.compute_gaussian((16, 32, 24), sigma_scale=1.0 / 8, value_scaling_factor=10,
                              device=torch.device("cpu"))
    assert torch.equal(gaussian_importance_map((16, 32, 24)), ref.float())


def test_padding_matches_nnunet():
    padding = pytest.importorskip("acvl_utils.cropping_and_padding.padding")
    from napari_medseg.inference.sliding_window import pad_to_patch

    x = torch.randn(2, 5, 40, 9)
    ours, slicer = pad_to_patch(x, (16, 32, 32))
    ref, ref_slicer = padding.pad_nd_image(x, (16, 32, 32), "constant", {"value": 0}, True, None)
    assert torch.equal(ours, ref)
    assert torch.equal(ours[slicer], x)


def test_preprocessing_matches_nnunet(model_factory, synthetic_ct):
    import json

    pytest.importorskip("nnunetv2")
    import warnings

    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from napari_medseg.inference.preprocessing import preprocess_case
    from napari_medseg.models.nnunet.plans import load_plans

    folder = model_factory(n_classes=3, spacing=(4.0, 3.0, 3.0), transpose_forward=(2, 0, 1),
                           patch_size=(32, 16, 32))
    plans = json.loads((folder / "plans.json").read_text())
    dataset = json.loads((folder / "dataset.json").read_text())
    # pad with zeros so that the crop to the non-zero box is exercised
    arr = np.pad(synthetic_ct.array.astype(np.float32) + 2000, ((2, 1), (3, 0), (0, 4)))
    ours, geom = preprocess_case(arr[None], synthetic_ct.spacing_zyx, load_plans(plans, "3d_fullres"))
    pm = PlansManager(plans)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, _, props = DefaultPreprocessor(verbose=False).run_case_npy(
            arr[None], None, {"spacing": list(synthetic_ct.spacing_zyx)}, pm,
            pm.get_configuration("3d_fullres"), dataset)
    assert [list(b) for b in props["bbox_used_for_cropping"]] == geom.bbox
    assert ours.shape == ref.shape
    assert_close_to_scale(ours, ref, name="preprocessed image")
