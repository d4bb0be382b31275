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
