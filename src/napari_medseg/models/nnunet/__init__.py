"""nnU-Net v2 trained models: load a trained-model folder and predict, nnU-Net-faithfully.

``from napari_medseg.models.nnunet import NnUNetModel, find_model_folder``.
torch is imported only when a model is loaded.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NnUNetModel", "find_model_folder", "available_folds"]


def __getattr__(name: str) -> Any:  # lazy: keep `import napari_medseg.models.nnunet` light
    if name in __all__:
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
