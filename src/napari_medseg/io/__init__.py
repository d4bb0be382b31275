"""Reading and writing volumes and label maps with exact scanner geometry."""

from .volume import Volume, volume_from_layer_data

__all__ = ["Volume", "volume_from_layer_data"]
