"""The hybrid liver family: a 2.5D CNN-Transformer cascade for the liver and its lesions.

One package owns what training and inference share:

- :mod:`.network`: the 2.5D hybrid CNN-Transformer U-Net (imports torch);
- :mod:`.preprocessing`: orientation, stage grids, HU window, 2.5D slabs;
- :mod:`.checkpoint`: the checkpoint format, writing, checking and loading.

Training lives in :mod:`napari_medseg.training.liver`, inference in
:mod:`napari_medseg.inference.liver_cascade`; both build on these modules. Importing this
package is light (no torch): the names below are loaded from their module on first use.
"""

from __future__ import annotations

import importlib

#: Class ids and names of the cascade's output (background is 0).
LIVER, LESION = 1, 2
CLASSES = {LIVER: "liver", LESION: "liver_lesion"}

_EXPORTS = {
    "network": ("HybridLiverNet", "DEFAULT_CONFIG", "full_config", "sincos_2d", "build_model",
                "count_parameters"),
    "checkpoint": ("CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "CHECKPOINT_NAMES", "LABELS",
                   "make_checkpoint", "save_checkpoint", "validate_checkpoint", "load_cascade",
                   "models_from_checkpoint", "checkpoint_file"),
    "preprocessing": ("DEFAULT_PREPROCESSING",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["LIVER", "LESION", "CLASSES", *_WHERE]


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
