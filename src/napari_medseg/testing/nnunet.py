"""Small random-weight nnU-Net v2 trained-model folders, for tests and benchmarks.

:func:`make_random_model_folder` writes exactly what ``nnUNetv2_train`` leaves
behind and ``nnUNetPredictor.initialize_from_trained_model_folder`` reads:
``dataset.json``, ``plans.json`` (current or pre-2.2 format) and
``fold_N/checkpoint_final.pth`` saved the way nnU-Net's trainer saves it (with
optimizer state, grad-scaler state, training log with NumPy scalars,
``init_args``, ``trainer_name`` and ``inference_allowed_mirroring_axes``).

The weights are random but shaped so that predictions are spatially structured
(the class depends on local intensity and texture), not one class everywhere,
which makes parity comparisons meaningful. :func:`reference_predict` runs nnunetv2's own
predictor on such a folder (the parity reference; nnunetv2 is installed separately).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

__all__ = ["make_random_model_folder", "default_label_names", "reference_predict", "dice_per_class"]

_CT_INTENSITY = {
    "max": 3000.0, "mean": 60.0, "median": 50.0, "min": -1024.0,
    "percentile_00_5": -990.0, "percentile_99_5": 1500.0, "std": 250.0,
}


def default_label_names(n_classes: int) -> dict:
    """``{"background": 0, "class_1": 1, ...}`` (dataset.json order: name -> id)."""
    names = {"background": 0}
    for i in range(1, n_classes):
        names[f"class_{i}"] = i
    return names


def _auto_stages(patch_size: Sequence[int], max_stages: int = 6) -> tuple:
    """Strides and kernel sizes the way nnU-Net's planner shapes them (halve while >= 8)."""
    shape = list(patch_size)
    strides = [[1] * len(shape)]
    kernels = [[3] * len(shape)]
    while len(strides) < max_stages:
        stride = [2 if s >= 8 else 1 for s in shape]
        if not any(s == 2 for s in stride):
            break
        shape = [s // st for s, st in zip(shape, stride)]
        strides.append(stride)
        kernels.append([3] * len(shape))
    return strides, kernels


def _architecture(network: str, n_stages: int, features: list, strides: list, kernels: list,
                  conv_per_stage: int) -> dict:
    if network == "PlainConvUNet":
        cls = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
        blocks = {"n_conv_per_stage": [conv_per_stage] * n_stages}
    elif network == "ResidualEncoderUNet":
        cls = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
        blocks = {"n_blocks_per_stage": [1] + [conv_per_stage] * (n_stages - 1)}
    else:
        raise ValueError(f"network must be PlainConvUNet or ResidualEncoderUNet, got {network!r}")
    return {
        "network_class_name": cls,
        "arch_kwargs": {
            "n_stages": n_stages,
            "features_per_stage": features,
            "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": kernels,
            "strides": strides,
            **blocks,
            "n_conv_per_stage_decoder": [conv_per_stage] * (n_stages - 1),
            "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def make_random_model_folder(
    out_dir: Union[str, Path],
    *,
    plans_format: str = "new",
    n_classes: int = 4,
    patch_size: Sequence[int] = (32, 32, 32),
    spacing: Sequence[float] = (3.0, 3.0, 3.0),
    network: str = "PlainConvUNet",
    base_features: int = 8,
    max_features: int = 32,
    n_stages: Optional[int] = None,
    conv_per_stage: int = 2,
    folds: Sequence[Union[int, str]] = (0,),
    mirror_axes: Optional[Sequence[int]] = (0, 1, 2),
    transpose_forward: Sequence[int] = (0, 1, 2),
    normalization: str = "CTNormalization",
    intensity_properties: Optional[dict] = None,
    probabilities_order: int = 1,
    configuration: str = "3d_fullres",
    inherits_from: Optional[str] = None,
    trainer: str = "nnUNetTrainer",
    plans_name: str = "nnUNetPlans",
    dataset_name: str = "Dataset999_Synthetic",
    label_names: Optional[dict] = None,
    seed: int = 0,
    channel_names: Optional[Sequence[str]] = None,
    use_mask_for_norm: bool = False,
) -> Path:
    """Write a complete random-weight nnU-Net v2 trained-model folder.

    Parameters
    ----------
    out_dir : str or Path
        Parent folder; the model goes to ``out_dir/{trainer}__{plans_name}__{configuration}``.
    plans_format : {"new", "old"}
        ``"new"``: configurations with an ``architecture`` entry (nnU-Net >= 2.2);
        ``"old"``: ``UNet_class_name``, ``UNet_base_num_features``,
        ``n_conv_per_stage_encoder``, ... (TotalSegmentator v2's weights).
    n_classes : int
        Output classes including background (ignored if ``label_names`` is given).
    patch_size : sequence of int
        Network patch size (transposed axis order).
    spacing : sequence of float
        Target spacing of the configuration in mm (transposed axis order).
    network : {"PlainConvUNet", "ResidualEncoderUNet"}
        ``"old"`` plans support both, as nnU-Net's converter does.
    base_features, max_features, n_stages, conv_per_stage
        Network size (features double per stage up to ``max_features``).
    folds : sequence
        Fold names to write (each gets different random weights).
    mirror_axes : sequence of int or None
        Saved as ``inference_allowed_mirroring_axes``.
    transpose_forward : sequence of int
        The plans' axis transpose (``transpose_backward`` is its inverse).
    normalization : str
        nnU-Net normalisation scheme of channel 0.
    intensity_properties : dict, optional
        Foreground intensity statistics (CT defaults).
    probabilities_order : int
        Spline order for resampling class scores back (nnU-Net's default is 1).
    configuration : str
        Name of the configuration the checkpoint was trained with.
    inherits_from : str, optional
        If given, ``configuration`` is written as a child that ``inherits_from`` this
        base configuration (overriding only ``batch_size``), to exercise inheritance.
    trainer, plans_name, dataset_name : str
        Names used in the folder name and files.
    label_names : dict, optional
        dataset.json ``labels`` (name -> id).
    seed : int
        Seeds the weights.
    channel_names : sequence of str, optional
        dataset.json ``channel_names`` in order (e.g. ``("T1", "T2")``); each channel uses
        ``normalization``. Default: one channel, "CT" or "MRI" after ``normalization``.
    use_mask_for_norm : bool
        The plans' ``use_mask_for_norm`` of every channel (Z-score inside the non-zero mask).

    Returns
    -------
    Path
        The trained-model folder.
    """
    import torch

    from ..models.nnunet.network import build_network

    if plans_format not in ("new", "old"):
        raise ValueError(f"plans_format must be 'new' or 'old', got {plans_format!r}")
    labels = dict(label_names) if label_names else default_label_names(n_classes)
    n_out = len([k for k in labels if k != "ignore"])
    patch_size = [int(p) for p in patch_size]
    strides, kernels = _auto_stages(patch_size)
    if n_stages is not None:
        strides, kernels = strides[:n_stages], kernels[:n_stages]
    n = len(strides)
    features = [min(base_features * 2**i, max_features) for i in range(n)]
    arch = _architecture(network, n, features, strides, kernels, conv_per_stage)
    tf = [int(i) for i in transpose_forward]
    channels = list(channel_names) if channel_names else [
        "CT" if normalization == "CTNormalization" else "MRI"]
    n_in = len(channels)
    tb = [int(i) for i in np.argsort(tf)]

    config = {
        "data_identifier": f"{plans_name}_{configuration}",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2,
        "patch_size": patch_size,
        "median_image_size_in_voxels": [max(p, 64) for p in patch_size],
        "spacing": [float(s) for s in spacing],
        "normalization_schemes": [normalization] * n_in,
        "use_mask_for_norm": [bool(use_mask_for_norm)] * n_in,
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": int(probabilities_order),
                                               "order_z": 0, "force_separate_z": None},
        "batch_dice": False,
    }
    if plans_format == "new":
        config["architecture"] = arch
    else:
        config.update({
            "UNet_class_name": network,
            "UNet_base_num_features": base_features,
            "unet_max_num_features": max_features,
            "n_conv_per_stage_encoder": ([conv_per_stage] * n if network == "PlainConvUNet"
                                         else [1] + [conv_per_stage] * (n - 1)),
            "n_conv_per_stage_decoder": [conv_per_stage] * (n - 1),
            "num_pool_per_axis": [sum(1 for s in strides if s[a] == 2) for a in range(3)],
            "pool_op_kernel_sizes": strides,
            "conv_kernel_sizes": kernels,
        })
    configurations = {}
    if inherits_from:
        configurations[inherits_from] = config
        configurations[configuration] = {"inherits_from": inherits_from, "batch_size": 1}
    else:
        configurations[configuration] = config
    props = intensity_properties or _CT_INTENSITY
    plans = {
        "dataset_name": dataset_name,
        "plans_name": plans_name,
        "original_median_spacing_after_transp": [float(s) for s in spacing],
        "original_median_shape_after_transp": [max(p, 64) for p in patch_size],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": tf,
        "transpose_backward": tb,
        "configurations": configurations,
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {str(c): dict(props) for c in range(n_in)},
    }
    dataset = {
        "channel_names": {str(c): name for c, name in enumerate(channels)},
        "labels": labels,
        "numTraining": 10,
        "file_ending": ".nii.gz",
        "name": dataset_name,
    }

    folder = Path(out_dir) / f"{trainer}__{plans_name}__{configuration}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))

    for k, fold in enumerate(folds):
        torch.manual_seed(seed * 1000 + k)
        net = build_network(arch, n_in, n_out)
        _structure_weights(net, seed * 1000 + k, patch_size)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99, nesterov=True,
                                    weight_decay=3e-5)
        checkpoint = {
            "network_weights": net.state_dict(),
            "optimizer_state": optimizer.state_dict(),
            "grad_scaler_state": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                                  "growth_interval": 2000, "_growth_tracker": 0},
            "logging": {
                "mean_fg_dice": [np.float64(0.5), np.float64(0.6)],
                "ema_fg_dice": [np.float64(0.5), np.float64(0.55)],
                "dice_per_class_or_region": [[np.float64(0.5)] * (n_out - 1)] * 2,
                "train_losses": [np.float32(-0.4), np.float32(-0.5)],
                "val_losses": [np.float32(-0.3), np.float32(-0.4)],
                "lrs": [0.01, 0.00999],
                "epoch_start_timestamps": [1700000000.0, 1700000100.0],
                "epoch_end_timestamps": [1700000090.0, 1700000190.0],
            },
            "_best_ema": np.float64(0.55),
            "current_epoch": 1000,
            "init_args": {
                "plans": plans,
                "configuration": configuration,
                "fold": fold,
                "dataset_json": dataset,
                "device": torch.device("cuda"),
            },
            "trainer_name": trainer,
            "inference_allowed_mirroring_axes": tuple(int(a) for a in mirror_axes) if mirror_axes else None,
        }
        fold_dir = folder / f"fold_{fold}"
        fold_dir.mkdir(exist_ok=True)
        torch.save(checkpoint, fold_dir / "checkpoint_final.pth")
    return folder


def _structure_weights(net, seed: int, patch_size: Sequence[int]) -> None:
    """Make a random network's output spatially varied, with every class winning somewhere.

    Norm layers get unit-ish scales and small shifts. The final 1x1 layer gets
    random class directions of equal norm and a bias that centres each class score
    on a smooth random calibration image (``b_c = -w_c . mean(features)``), so that
    no class dominates through the mean of the (post-ReLU, positive) features.
    """
    import torch
    from scipy.ndimage import gaussian_filter

    gen = torch.Generator().manual_seed(seed + 17)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (torch.nn.InstanceNorm3d, torch.nn.BatchNorm3d)) and module.affine:
                module.weight.copy_(1.0 + 0.1 * torch.randn(module.weight.shape, generator=gen))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
        seg = net.decoder.seg_layers[-1]
        w = torch.randn(seg.weight.shape[:2], generator=gen)
        w = w - w.mean(0, keepdim=True)
        w = w / w.norm(dim=1, keepdim=True).clamp_min(1e-6) * 3.0
        seg.weight.copy_(w.reshape(seg.weight.shape))
        seg.bias.zero_()
        rng = np.random.default_rng(seed + 29)
        calib = gaussian_filter(rng.normal(size=tuple(int(p) for p in patch_size)), 2.0)
        calib = (calib - calib.mean()) / (calib.std() + 1e-8) * 2.0
        net.eval()
        n_in = next(m for m in net.modules() if isinstance(m, torch.nn.Conv3d)).in_channels
        calib_in = np.repeat(calib[None, None], n_in, axis=1).astype(np.float32)
        feats = net.forward_features(torch.from_numpy(calib_in))
        mean = feats.mean(dim=tuple(range(2, feats.dim())))[0]
        seg.bias.copy_(-(w @ mean))


def reference_predict(folder, volume, folds=(0,), use_mirroring=True, tile_step_size=0.5):
    """nnunetv2's own prediction for ``volume`` (the parity reference), on the CPU.

    Parameters
    ----------
    folder : path-like
        A trained-model folder (``dataset.json``, ``plans.json``, ``fold_N/``).
    volume : napari_medseg.io.Volume
        The input; its ``spacing_zyx`` is passed as nnU-Net's ``spacing`` property.
    folds, use_mirroring, tile_step_size
        As ``nnUNetPredictor`` takes them.

    Returns
    -------
    numpy.ndarray
        The label map nnunetv2 predicts.
    """
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=tile_step_size, use_mirroring=use_mirroring,
                                perform_everything_on_device=False, device=torch.device("cpu"),
                                verbose=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(folder), use_folds=tuple(folds))
    props = {"spacing": [float(s) for s in volume.spacing_zyx]}
    return predictor.predict_single_npy_array(volume.array[None].astype(np.float32), props)


def dice_per_class(a, b, n_classes):
    """``{class: Dice}`` of two label maps for classes ``1..n_classes-1`` present in either."""
    out = {}
    for c in range(1, n_classes):
        sa, sb = a == c, b == c
        denom = sa.sum() + sb.sum()
        if denom:
            out[c] = 2.0 * np.logical_and(sa, sb).sum() / denom
    return out


def small_network(n_in: int = 1, n_classes: int = 7, seed: int = 0):
    """A 3-stage PlainConvUNet (4-16 features) with random, non-trivial weights, in eval mode.

    The norm affines and the seg bias are perturbed so that fast paths that would only be
    right for default initialisations are caught.
    """
    import torch

    from ..models.nnunet.network import build_network

    torch.manual_seed(seed)
    arch = _architecture("PlainConvUNet", 3, [4, 8, 16], [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
                         [[1, 3, 3], [3, 3, 3], [3, 3, 3]], 2)
    net = build_network(arch, n_in, n_classes).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net
