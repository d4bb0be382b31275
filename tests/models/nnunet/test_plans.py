"""nnU-Net plans: old formats converted like nnU-Net, inherits_from resolved."""

from __future__ import annotations

import json

import pytest

from napari_medseg.errors import InvalidInputError


def test_old_plans_converted_like_nnunet(model_factory):
    """Our conversion of pre-2.2 plans equals nnU-Net's ConfigurationManager's."""
    pytest.importorskip("nnunetv2")
    import warnings

    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from napari_medseg.models.nnunet.plans import load_plans

    folder = model_factory(plans_format="old", n_classes=3, network="ResidualEncoderUNet")
    plans = json.loads((folder / "plans.json").read_text())
    ours = load_plans(plans, "3d_fullres")
    assert ours.old_format
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = PlansManager(plans).get_configuration("3d_fullres")
    assert ours.architecture["arch_kwargs"] == ref.network_arch_init_kwargs
    assert ours.architecture["network_class_name"].endswith("ResidualEncoderUNet")


def test_inherits_from_is_resolved(model_factory):
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor
    from napari_medseg.models.nnunet.plans import load_plans

    folder = model_factory(n_classes=3, configuration="3d_fullres_bs1", inherits_from="3d_fullres")
    plans = json.loads((folder / "plans.json").read_text())
    assert "patch_size" not in plans["configurations"]["3d_fullres_bs1"]
    resolved = load_plans(plans, "3d_fullres_bs1")
    assert resolved.configuration["batch_size"] == 1 and resolved.patch_size == [16, 32, 32]
    model = NnUNetPredictor.from_folder(folder, device="cpu")
    assert model.configuration == "3d_fullres_bs1"
    plans["configurations"]["3d_fullres"]["inherits_from"] = "3d_fullres_bs1"
    with pytest.raises(InvalidInputError, match="circle"):
        load_plans(plans, "3d_fullres_bs1")
    with pytest.raises(InvalidInputError, match="not in plans.json"):
        load_plans(plans, "2d")
