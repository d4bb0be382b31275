"""Trained-model folders: trainer/plans/configuration resolution, folds."""

from __future__ import annotations

import shutil

import pytest

from napari_medseg.errors import WeightsNotFoundError


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
