"""Promptable (click/box) 3D segmentation sessions; see :mod:`.base`."""
