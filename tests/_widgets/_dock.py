"""Helpers of the widget tests: dock a widget as the Plugins menu does, fingerprint files."""

import hashlib
from pathlib import Path


def dock(viewer, name):
    """The widget napari's Plugins menu gives: it holds a PublicOnlyProxy of the viewer."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-medseg", name)
    return widget


def digest(path) -> str:
    """sha256 of a file's bytes (to prove a file kept them)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
