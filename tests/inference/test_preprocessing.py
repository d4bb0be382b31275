"""nnU-Net preprocessing against nnU-Net's own functions."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.testing import assert_close_to_scale


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


# ------------------------------------------------------------------ MR: Z-score
def _mr_head(integer: bool = False, scale: float = 1.0):
    """A skull-stripped-looking MR: bright blobs in a head ellipse, exact zeros outside it
    (and a zero-valued hole inside, which nnU-Net's hole filling keeps in the mask)."""
    from napari_medseg.io.volume import Volume

    rng = np.random.default_rng(11)
    z, y, x = np.mgrid[0:30, 0:44, 0:40]
    head = ((z - 15) / 12.0) ** 2 + ((y - 22) / 17.0) ** 2 + ((x - 20) / 15.0) ** 2 < 1
    img = 400 + 300 * (((z - 12) ** 2 + (y - 18) ** 2 + (x - 16) ** 2) < 30) \
        + 150 * (((z - 18) ** 2 + (y - 28) ** 2 + (x - 24) ** 2) < 40) \
        + 40 * np.sin(x / 5.0) + rng.normal(0, 25, head.shape)
    img = np.where(head, np.clip(img, 1, None), 0.0)
    img[14:16, 20:23, 18:21] = 0.0  # an enclosed zero hole
    arr = np.rint(img).astype(np.int16) if integer else (img * scale).astype(np.float32)
    return Volume(arr, spacing=(1.2, 1.0, 2.0), modality="MR")


@pytest.mark.parametrize("use_mask", [False, True])
def test_zscore_preprocessing_matches_nnunet_with_and_without_mask(model_factory, use_mask):
    import json
    import warnings

    pytest.importorskip("nnunetv2")
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from napari_medseg.inference.preprocessing import preprocess_case
    from napari_medseg.models.nnunet.plans import load_plans

    folder = model_factory(n_classes=3, normalization="ZScoreNormalization",
                           use_mask_for_norm=use_mask, spacing=(2.0, 1.5, 1.5),
                           transpose_forward=(2, 0, 1), patch_size=(16, 16, 16))
    plans = json.loads((folder / "plans.json").read_text())
    assert plans["configurations"]["3d_fullres"]["use_mask_for_norm"] == [use_mask]
    dataset = json.loads((folder / "dataset.json").read_text())
    vol = _mr_head()
    ours, geom = preprocess_case(vol.array[None], vol.spacing_zyx, load_plans(plans, "3d_fullres"))
    pm = PlansManager(plans)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, _, props = DefaultPreprocessor(verbose=False).run_case_npy(
            vol.array[None].astype(np.float32), None, {"spacing": list(vol.spacing_zyx)}, pm,
            pm.get_configuration("3d_fullres"), dataset)
    # the crop to the non-zero box is nnU-Net's, and it really cropped
    assert [list(b) for b in props["bbox_used_for_cropping"]] == geom.bbox
    assert geom.shape_after_cropping != geom.shape_before_cropping
    assert ours.shape == ref.shape
    assert_close_to_scale(ours, ref, name="Z-score preprocessed MR")


@pytest.mark.parametrize("use_mask", [False, True])
def test_mr_model_folder_runs_at_parity_with_nnunet_predictor(model_factory, use_mask):
    pytest.importorskip("nnunetv2")
    from napari_medseg.inference.segment import segment
    from napari_medseg.testing.nnunet import reference_predict

    folder = model_factory(n_classes=4, normalization="ZScoreNormalization",
                           use_mask_for_norm=use_mask, spacing=(2.0, 1.5, 1.5),
                           patch_size=(16, 16, 16))
    vol = _mr_head()
    ours = segment(vol, folder)[0]
    ref = reference_predict(folder, vol)
    assert len(np.unique(ref)) >= 2  # the random network does separate something
    assert np.mean(ours == ref) >= 0.999


def test_float_mr_in_0_1_is_not_truncated_like_totalsegmentator(model_factory):
    """TotalSegmentator casts its resampled input to int32, which turns an MR stored as
    floats in [0, 1] into zeros. Z-score normalisation does not depend on the intensity
    scale, so here the [0, 1] image segments exactly like the same image in integers."""
    from napari_medseg.inference.segment import segment

    folder = model_factory(n_classes=4, normalization="ZScoreNormalization",
                           use_mask_for_norm=False, spacing=(2.0, 1.5, 1.5),
                           patch_size=(16, 16, 16))
    integer = _mr_head(integer=True)
    as_float = integer.with_array(integer.array.astype(np.float32) / float(integer.array.max()))
    assert as_float.array.max() == 1.0
    a, b = segment(integer, folder)[0], segment(as_float, folder)[0]
    assert len(np.unique(a)) >= 2
    assert np.mean(a == b) >= 0.999
    # what int32 truncation would have fed the network: nothing but the maximum voxel
    assert np.count_nonzero(as_float.array.astype(np.int32)) <= 1
