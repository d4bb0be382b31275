"""nnU-Net v2 trained models: plans, network, checkpoints and the trained-model folder layout.

Prediction lives in :mod:`napari_medseg.inference.nnunet_predictor`. torch is imported
only when a network is built.
"""

from __future__ import annotations

from .folder import available_folds, configuration_from_name, find_model_folder

__all__ = ["find_model_folder", "available_folds", "configuration_from_name"]
