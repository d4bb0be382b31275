"""SAM-Med3D (Wang et al., 2023): a 3D Segment-Anything for medical volumes.

Implemented from the published description and checkpoint layout so that the released
``model_state_dict`` loads with ``strict=True``; see :mod:`.model` for the checkpoint
format and ``docs/sam.md`` for the inference recipe. Importing this package imports
torch; import it lazily.
"""

from .model import CROP_SIZE, LOW_RES_SIZE, SamMed3D, build_sam_med3d, extract_state_dict, load_sam_med3d, sam_med3d_from_state_dict

__all__ = ["CROP_SIZE", "LOW_RES_SIZE", "SamMed3D", "build_sam_med3d", "extract_state_dict", "load_sam_med3d", "sam_med3d_from_state_dict"]
