"""Helpers for the test suite and benchmarks; never imported by the product.

Submodules (import them explicitly; each keeps torch, nnunetv2 and napari imports inside
its functions):

- ``tolerance``: float32 parity relative to each output's scale (re-exported here);
- ``nnunet``: random-weight nnU-Net v2 model folders and nnunetv2's reference prediction;
- ``sam_med3d``: deterministic SAM-Med3D weights and the fixture input;
- ``volumes``: small oblique/label volumes, synthetic DICOM series, folder snapshots;
- ``clicker``: a simulated user for interactive segmentation (corrective clicks, Dice);
- ``liver``: small phantom cases and tiny settings for the liver cascade.
"""

from .tolerance import PARITY_REL, assert_close_to_scale, scaled_error

__all__ = ["PARITY_REL", "assert_close_to_scale", "scaled_error"]
