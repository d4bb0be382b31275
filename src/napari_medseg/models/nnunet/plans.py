"""Reading an nnU-Net v2 trained-model folder's ``plans.json`` and ``dataset.json``.

Both plans formats are understood:

* the current one, where each configuration has an ``architecture`` entry
  (``network_class_name``, ``arch_kwargs``, ``_kw_requires_import``);
* the older one (nnU-Net v2 before 2.2, used by TotalSegmentator v2 weights), with
  ``UNet_class_name``, ``UNet_base_num_features``, ``n_conv_per_stage_encoder``,
  ``pool_op_kernel_sizes``, ``conv_kernel_sizes``, ... which is converted to the
  current form exactly as nnU-Net's ``ConfigurationManager`` does.

Configurations may ``inherits_from`` another one (resolved recursively, cycles
refused). Nothing named in the plans is imported: class names are matched against
an explicit table of the building blocks this project implements.
"""

from __future__ import annotations

import json
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ...errors import InvalidInputError, WeightsNotFoundError

__all__ = ["NnUNetPlans", "read_json", "load_plans", "label_names"]

#: Default resampling of the plans of every nnU-Net v2 release when a key is absent.
_DEFAULT_DATA_RESAMPLING = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
_DEFAULT_PROB_RESAMPLING = {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None}
_SUPPORTED_RESAMPLING = {"resample_data_or_seg_to_shape", "resample_data_or_seg_to_spacing"}
_SUPPORTED_NORMALIZATION = {
    "CTNormalization",
    "ZScoreNormalization",
    "NoNormalization",
    "RescaleTo01Normalization",
    "RGBTo01Normalization",
}


def read_json(path: Path, what: str) -> dict:
    """Read a JSON file, turning every failure into a message naming the file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(
            f"{what} not found: {path}. An nnU-Net trained-model folder holds dataset.json, "
            "plans.json and fold_N/checkpoint_final.pth."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{what} {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"{what} {path} must hold a JSON object, got {type(data).__name__}")
    return data


def _resolve_inheritance(configurations: dict, name: str, visited: tuple = ()) -> dict:
    if name not in configurations:
        raise InvalidInputError(
            f"configuration '{name}' is not in plans.json; it has {sorted(configurations)}"
        )
    if name in visited:
        raise InvalidInputError(
            f"plans.json configurations inherit in a circle: {' -> '.join(visited + (name,))}"
        )
    config = deepcopy(configurations[name])
    parent = config.get("inherits_from")
    if parent is not None:
        base = _resolve_inheritance(configurations, parent, visited + (name,))
        base.update(config)
        config = base
    return config


def _convert_old_architecture(config: dict) -> dict:
    """Build the ``architecture`` entry from the pre-2.2 keys (as nnU-Net does)."""
    class_name = config["UNet_class_name"]
    if class_name not in ("PlainConvUNet", "ResidualEncoderUNet"):
        raise InvalidInputError(
            f"plans.json names the network '{class_name}'; only PlainConvUNet and "
            "ResidualEncoderUNet are supported"
        )
    n_stages = len(config["n_conv_per_stage_encoder"])
    dim = len(config["patch_size"])
    conv = "torch.nn.modules.conv.Conv%dd" % dim
    norm = "torch.nn.modules.instancenorm.InstanceNorm%dd" % dim
    blocks_key = "n_conv_per_stage" if class_name == "PlainConvUNet" else "n_blocks_per_stage"
    return {
        "network_class_name": (
            "dynamic_network_architectures.architectures.unet.PlainConvUNet"
            if class_name == "PlainConvUNet"
            else "dynamic_network_architectures.architectures.residual_unet.ResidualEncoderUNet"
        ),
        "arch_kwargs": {
            "n_stages": n_stages,
            "features_per_stage": [
                min(config["UNet_base_num_features"] * 2**i, config["unet_max_num_features"])
                for i in range(n_stages)
            ],
            "conv_op": conv,
            "kernel_sizes": deepcopy(config["conv_kernel_sizes"]),
            "strides": deepcopy(config["pool_op_kernel_sizes"]),
            blocks_key: deepcopy(config["n_conv_per_stage_encoder"]),
            "n_conv_per_stage_decoder": deepcopy(config["n_conv_per_stage_decoder"]),
            "conv_bias": True,
            "norm_op": norm,
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


@dataclass
class NnUNetPlans:
    """One configuration of a plans file, resolved and checked.

    Attributes mirror nnU-Net's ``PlansManager``/``ConfigurationManager``; spacings
    and patch sizes are in the *transposed* axis order the network sees.
    """

    plans: dict
    configuration_name: str
    configuration: dict
    old_format: bool

    # ---------------------------------------------------------------- plans-level
    @property
    def transpose_forward(self) -> list:
        return [int(i) for i in self.plans.get("transpose_forward", [0, 1, 2])]

    @property
    def transpose_backward(self) -> list:
        return [int(i) for i in self.plans.get("transpose_backward", [0, 1, 2])]

    @property
    def image_reader_writer(self) -> str:
        return str(self.plans.get("image_reader_writer", "SimpleITKIO"))

    @property
    def intensity_properties(self) -> dict:
        props = self.plans.get("foreground_intensity_properties_per_channel")
        if props is None:
            props = self.plans.get("foreground_intensity_properties_by_modality", {})
        return props

    # --------------------------------------------------------- configuration-level
    @property
    def patch_size(self) -> list:
        return [int(p) for p in self.configuration["patch_size"]]

    @property
    def spacing(self) -> list:
        return [float(s) for s in self.configuration["spacing"]]

    @property
    def normalization_schemes(self) -> list:
        return list(self.configuration["normalization_schemes"])

    @property
    def use_mask_for_norm(self) -> list:
        return [bool(b) for b in self.configuration["use_mask_for_norm"]]

    @property
    def architecture(self) -> dict:
        return self.configuration["architecture"]

    @property
    def data_resampling_kwargs(self) -> dict:
        kw = dict(_DEFAULT_DATA_RESAMPLING)
        kw.update(self.configuration.get("resampling_fn_data_kwargs", {}))
        return kw

    @property
    def probabilities_resampling_kwargs(self) -> dict:
        kw = dict(_DEFAULT_PROB_RESAMPLING)
        kw.update(self.configuration.get("resampling_fn_probabilities_kwargs", {}))
        return kw

    @property
    def previous_stage(self) -> Optional[str]:
        return self.configuration.get("previous_stage")

    def check_supported(self, source: str) -> None:
        """Refuse, with a reason, configurations this engine cannot run faithfully."""
        dim = len(self.patch_size)
        if dim != 3:
            raise InvalidInputError(
                f"{source}: configuration '{self.configuration_name}' is {dim}D; only 3D "
                "nnU-Net configurations (3d_fullres, 3d_lowres) are supported"
            )
        if self.previous_stage:
            raise InvalidInputError(
                f"{source}: configuration '{self.configuration_name}' is a cascade stage that "
                f"needs the output of '{self.previous_stage}'; cascades are not supported"
            )
        for scheme in self.normalization_schemes:
            if scheme not in _SUPPORTED_NORMALIZATION:
                raise InvalidInputError(
                    f"{source}: normalization '{scheme}' is not supported "
                    f"(supported: {sorted(_SUPPORTED_NORMALIZATION)})"
                )
        for key in ("resampling_fn_data", "resampling_fn_probabilities"):
            name = self.configuration.get(key, "resample_data_or_seg_to_shape")
            if name not in _SUPPORTED_RESAMPLING:
                raise InvalidInputError(
                    f"{source}: {key} '{name}' is not supported "
                    f"(supported: {sorted(_SUPPORTED_RESAMPLING)})"
                )
        if self.transpose_forward and sorted(self.transpose_forward) != [0, 1, 2]:
            raise InvalidInputError(f"{source}: transpose_forward {self.transpose_forward} is invalid")


def load_plans(plans: dict, configuration: str, source: str = "plans.json") -> NnUNetPlans:
    """Resolve ``configuration`` of a plans dict (inheritance, old format).

    Parameters
    ----------
    plans : dict
        Contents of ``plans.json``.
    configuration : str
        E.g. ``"3d_fullres"``.
    source : str
        Name used in error messages.
    """
    configurations = plans.get("configurations")
    if not isinstance(configurations, dict) or not configurations:
        raise InvalidInputError(f"{source} has no 'configurations'")
    config = _resolve_inheritance(configurations, configuration)
    old_format = "architecture" not in config
    if old_format:
        try:
            config["architecture"] = _convert_old_architecture(config)
        except KeyError as exc:
            raise InvalidInputError(
                f"{source}: configuration '{configuration}' has neither an 'architecture' entry "
                f"nor the older network keys (missing {exc})"
            ) from None
    for key in ("patch_size", "spacing", "normalization_schemes", "use_mask_for_norm"):
        if key not in config:
            raise InvalidInputError(f"{source}: configuration '{configuration}' lacks '{key}'")
    return NnUNetPlans(plans=plans, configuration_name=configuration, configuration=config,
                       old_format=old_format)


def label_names(dataset_json: dict, source: str = "dataset.json") -> dict:
    """``{id: name}`` from dataset.json's ``labels`` (nnU-Net v2: name -> id).

    Region-based models (a label mapping to a list of ids) are refused: their
    output is not an argmax over classes.
    """
    labels = dataset_json.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise InvalidInputError(f"{source} has no 'labels' mapping")
    out: dict[int, str] = {}
    for name, value in labels.items():
        if name == "ignore":
            continue
        if isinstance(value, (list, tuple)):
            raise InvalidInputError(
                f"{source}: label '{name}' is a region {value}; region-based nnU-Net models "
                "are not supported"
            )
        try:
            out[int(value)] = str(name)
        except (TypeError, ValueError):
            raise InvalidInputError(f"{source}: label '{name}' has a non-integer id {value!r}") from None
    ids = sorted(out)
    if ids != list(range(len(ids))):
        raise InvalidInputError(f"{source}: label ids must be consecutive from 0, got {ids}")
    return dict(sorted(out.items()))


def architecture_summary(plans: NnUNetPlans) -> dict[str, Any]:
    """A small dict describing the network (for logs and model cards)."""
    arch = plans.architecture
    kw = arch["arch_kwargs"]
    return {
        "class": arch["network_class_name"].rsplit(".", 1)[-1],
        "stages": kw.get("n_stages"),
        "features": kw.get("features_per_stage"),
        "patch_size": plans.patch_size,
        "spacing": plans.spacing,
    }
