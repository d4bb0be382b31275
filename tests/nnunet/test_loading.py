"""Loading trained-model folders: folder resolution, folds, plans formats, network build."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_medseg.errors import InvalidInputError, WeightsNotFoundError  # noqa: E402


def test_find_model_folder_resolves_trainer_plans_configuration(model_factory, tmp_path):
    from napari_medseg.models.nnunet import find_model_folder

    src = model_factory(n_classes=3)
    dataset = tmp_path / "Dataset999_Synthetic"
    dataset.mkdir()
    shutil.copytree(src, dataset / "nnUNetTrainer__nnUNetPlans__3d_fullres")
    shutil.copytree(src, dataset / "nnUNetTrainer_8000epochs__nnUNetPlans__3d_lowres")
    assert find_model_folder(dataset).name == "nnUNetTrainer__nnUNetPlans__3d_fullres"
    found = find_model_folder(dataset, "nnUNetTrainer_8000epochs", "nnUNetPlans", "3d_lowres")
    assert found.name == "nnUNetTrainer_8000epochs__nnUNetPlans__3d_lowres"
    # the trained-model folder itself is accepted as is
    assert find_model_folder(found) == found
    with pytest.raises(WeightsNotFoundError, match="nnUNetTrainer__nnUNetResEncUNetLPlans__3d_fullres.*holds"):
        find_model_folder(dataset, plans="nnUNetResEncUNetLPlans")


def test_folds_autodetected_and_fold_all(model_factory, tmp_path):
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor
    from napari_medseg.models.nnunet import available_folds

    src = model_factory(n_classes=3, folds=(0, 1))
    assert available_folds(src) == [0, 1]
    only_all = tmp_path / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    only_all.mkdir()
    for name in ("dataset.json", "plans.json"):
        shutil.copy(src / name, only_all / name)
    shutil.copytree(src / "fold_0", only_all / "fold_all")
    assert available_folds(only_all) == ["all"]
    model = NnUNetPredictor.from_folder(only_all, device="cpu")
    assert model.folds == ["all"] and model.labels == {0: "background", 1: "class_1", 2: "class_2"}
    assert model.mirror_axes == (0, 1, 2)
    assert model.trainer_name == "nnUNetTrainer"


def test_missing_pieces_give_clear_errors(model_factory, tmp_path):
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor

    src = model_factory(n_classes=3)
    with pytest.raises(WeightsNotFoundError, match="not found"):
        NnUNetPredictor.from_folder(tmp_path / "nope")
    bare = tmp_path / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    bare.mkdir()
    shutil.copy(src / "dataset.json", bare / "dataset.json")
    with pytest.raises(WeightsNotFoundError, match="plans.json not found"):
        NnUNetPredictor.from_folder(bare)
    shutil.copy(src / "plans.json", bare / "plans.json")
    with pytest.raises(WeightsNotFoundError, match="no fold_N/checkpoint_final.pth"):
        NnUNetPredictor.from_folder(bare)
    with pytest.raises(WeightsNotFoundError, match="fold 3"):
        NnUNetPredictor.from_folder(src, folds=[3])
    (bare / "plans.json").write_text("{not json")
    with pytest.raises(InvalidInputError, match="plans.json .* is not valid JSON"):
        NnUNetPredictor.from_folder(bare)


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


@pytest.mark.parametrize("network", ["PlainConvUNet", "ResidualEncoderUNet"])
def test_network_matches_dynamic_network_architectures(network):
    """Same state-dict keys, shapes and outputs as the package nnU-Net builds from."""
    dna = pytest.importorskip("dynamic_network_architectures.architectures.unet")
    from torch import nn

    from napari_medseg.models.nnunet.network import build_network
    from napari_medseg.models.nnunet.synthetic import _architecture

    strides = [[1, 1, 1], [1, 2, 2], [2, 2, 2]]
    kernels = [[1, 3, 3], [3, 3, 3], [3, 3, 3]]
    arch = _architecture(network, 3, [4, 8, 16], strides, kernels, 2)
    ours = build_network(arch, 2, 5).eval()
    kw = dict(arch["arch_kwargs"])
    kw.update(conv_op=nn.Conv3d, norm_op=nn.InstanceNorm3d, nonlin=nn.LeakyReLU)
    ref = getattr(dna, network)(input_channels=2, num_classes=5, deep_supervision=False, **kw).eval()
    a, b = ours.state_dict(), ref.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape for k in a)
    ours.load_state_dict(b, strict=True)
    x = torch.randn(1, 2, 8, 16, 16)
    with torch.inference_mode():
        assert torch.equal(ours(x), ref(x))


def test_unsupported_architecture_entries_refused():
    from napari_medseg.models.nnunet.network import build_network
    from napari_medseg.models.nnunet.synthetic import _architecture

    arch = _architecture("PlainConvUNet", 2, [4, 8], [[1, 1, 1], [2, 2, 2]], [[3, 3, 3]] * 2, 1)
    bad = json.loads(json.dumps(arch))
    bad["network_class_name"] = "my_package.evil.Net"
    with pytest.raises(InvalidInputError, match="not supported"):
        build_network(bad, 1, 2)
    bad = json.loads(json.dumps(arch))
    bad["arch_kwargs"]["nonlin"] = "os.system"
    with pytest.raises(InvalidInputError, match="nonlin 'os.system' is not supported"):
        build_network(bad, 1, 2)


def test_predict_checks_input(model_factory):
    from napari_medseg.io.volume import Volume
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor

    model = NnUNetPredictor.from_folder(model_factory(n_classes=3), device="cpu")
    vol = Volume(np.zeros((4, 8, 8), np.float32))
    with pytest.raises(InvalidInputError, match="1 input channel"):
        model.predict([vol, vol])
    bad = np.zeros((4, 8, 8), np.float32)
    bad[1, 2, 3] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        model.predict(Volume(bad))
    # a tiny all-zero image is padded to the patch size and predicted without error
    out = model.predict(vol)
    assert out.shape == vol.shape and out.dtype == np.uint8


def test_progress_and_cancel(model_factory, synthetic_ct):
    from napari_medseg.errors import Cancelled
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor
    from napari_medseg.progress import CancelToken

    model = NnUNetPredictor.from_folder(model_factory(n_classes=3), device="cpu")
    seen = []
    model.predict(synthetic_ct, use_mirroring=False, progress=lambda f, t: seen.append((f, t)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("window" in t for _, t in seen) and any("resampling" in t for _, t in seen)

    token = CancelToken()

    def cancel_after_first_window(fraction, text):
        if "window" in text:
            token.cancel()

    with pytest.raises(Cancelled):
        model.predict(synthetic_ct, progress=cancel_after_first_window, cancel=token)
    token.reset()
    assert model.predict(synthetic_ct, use_mirroring=False).shape == synthetic_ct.shape
