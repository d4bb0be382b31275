"""3DSAM-adapter (Gong et al., Medical Image Analysis 2024): SAM ViT-B adapted to 3D.

Implemented from the public description, the reference code's structure and the
published checkpoint layout (``../shared/fixtures/3dsam_adapter_state_dict.json``), so
the released ``best.pth.tar`` files load strictly. Numerical parity with the reference
could not be checked (no reference outputs exist); see ``docs/sam.md``. Imports torch.
"""

from .model import (
    CROP_SIZE,
    INTENSITY_RANGES,
    AdapterConfig,
    Sam3DAdapter,
    adapter_from_checkpoint_dict,
    checkpoint_dict,
    load_sam3d_adapter,
)

__all__ = [
    "CROP_SIZE", "INTENSITY_RANGES", "AdapterConfig", "Sam3DAdapter",
    "adapter_from_checkpoint_dict", "checkpoint_dict", "load_sam3d_adapter",
]
