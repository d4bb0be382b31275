"""Opening files in napari as users do, for the GUI tests (``napari FILE``, File > Open, drop).

All three end in ``QtViewer._qt_open(paths)``, i.e. ``viewer.open(paths, plugin=None)``:
napari picks the reader and shows a blocking "Choose reader" dialog when two plugins
claim a file and no preference is saved. ``viewer_after_first_use`` gives a viewer in a
session where the user has used the plugin once (its npe2 activation saves it as
napari's reader for its formats); there the dialog fails the test instead of blocking.
Import both names into a test module to use them.
"""

from __future__ import annotations

import pytest

PLUGIN_NAME = "napari-medseg"


@pytest.fixture
def viewer_after_first_use(make_napari_viewer, monkeypatch):
    """A viewer in a session where the user has opened one of the plugin's widgets.

    ``make_napari_viewer`` resets napari's settings to their defaults (no reader
    preference). npe2 activates a plugin once per process, so the plugin is
    deactivated first: docking the widget then activates it exactly as a user's
    first use of the plugin does. The settings are kept in memory (never the real
    settings file) and the "Choose reader" dialog fails the test instead of blocking.
    """
    import npe2
    from napari._qt.dialogs.qt_reader_dialog import QtReaderDialog
    from napari.settings import get_settings

    viewer = make_napari_viewer()
    settings = get_settings()
    monkeypatch.setattr(settings, "config_path", None)
    assert dict(settings.plugins.extension2reader) == {}
    npe2.PluginManager.instance().deactivate(PLUGIN_NAME)
    viewer.window.add_plugin_dock_widget(PLUGIN_NAME, "Window presets")
    assert settings.plugins.extension2reader.get("*.nii.gz") == PLUGIN_NAME

    monkeypatch.setattr(QtReaderDialog, "get_user_choices", _no_dialog)
    return viewer


def _no_dialog(self):
    from qtpy.QtWidgets import QLabel

    texts = [label.text() for label in self.findChildren(QLabel)]
    raise AssertionError(f"napari showed the 'Choose reader' dialog for {self._current_file}: {texts}")


def open_as_user(viewer, path) -> list:
    """What ``napari PATH``, File > Open and drag and drop run; returns the new layers.

    A "Choose reader" dialog fails the test here too (it would block the run forever):
    use the ``viewer_after_first_use`` fixture, a session where the plugin has been used.
    """
    import contextlib
    from unittest import mock

    from napari._qt.dialogs.qt_reader_dialog import QtReaderDialog

    before = len(viewer.layers)
    # napari's own dialog would block; a test that answers the dialog itself keeps its answer
    own = getattr(QtReaderDialog.get_user_choices, "__module__", "").startswith("napari.")
    with mock.patch.object(QtReaderDialog, "get_user_choices", _no_dialog) if own else contextlib.nullcontext():
        viewer.window._qt_viewer._qt_open([str(path)], stack=False)
    return list(viewer.layers)[before:]
