"""Reading and writing volumes and label maps with exact scanner geometry."""

from ._sitk import MultiChannelError
from .atomic import atomic_write
from .formats import detect_format
from .label_table import LabelTable, default_color, read_sidecar, sidecar_path
from .opening import Opened, open_path
from .readers import read_labels, read_volume
from .validation import check_volume_for_model
from .volume import Volume, volume_from_layer_data
from .writers import write_labels, write_volume

__all__ = [
    "Volume",
    "volume_from_layer_data",
    "read_volume",
    "read_labels",
    "open_path",
    "Opened",
    "write_volume",
    "write_labels",
    "atomic_write",
    "LabelTable",
    "default_color",
    "sidecar_path",
    "read_sidecar",
    "detect_format",
    "MultiChannelError",
    "check_volume_for_model",
]
