"""The "Where it runs" fields of the Interactive and Automatic segmentation docks.

Wiring only: the choice is a :class:`~napari_medseg.serve.settings.ServerSetting`, loaded
when a dock opens and saved (URL and token file *path*, never the token) whenever a field
changes, by :mod:`napari_medseg.serve.settings`; the docks hand :meth:`ServerFields.setting`
to :func:`~napari_medseg.serve.settings.prompt_session` /
:func:`~napari_medseg.serve.settings.run_segment`.
"""

from __future__ import annotations

import logging

from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget

from ..serve.settings import LOCAL, REMOTE, ServerSetting, load_setting, save_setting

log = logging.getLogger(__name__)


class ServerFields:
    """A "Where it runs" picker (this computer / a server), a URL field and a token file field.

    :meth:`rows` gives ``(label, widget)`` rows for a dock's Options section
    (:func:`~._layout.collapsible`).
    """

    def __init__(self) -> None:
        self.where_combo = QComboBox()
        self.where_combo.addItem(LOCAL, False)
        self.where_combo.addItem(REMOTE, True)
        self.where_combo.setToolTip("run on this computer, or on a `medseg serve` machine (a GPU server)")
        self.url_edit = QLineEdit()
        self.url_edit.setPlaceholderText("http://127.0.0.1:8765")
        self.token_edit = QLineEdit()
        self.token_edit.setPlaceholderText("file holding the server's token (mode 600)")
        self.token_edit.setToolTip("only the file's path is remembered, never the token")
        self.token_browse = QPushButton("Browse…")
        self.token_browse.clicked.connect(self._browse)
        self._token_row = QWidget()
        row = QHBoxLayout(self._token_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.token_edit, 1)
        row.addWidget(self.token_browse)
        self.show(load_setting())
        self.where_combo.currentIndexChanged.connect(self._changed)
        self.url_edit.editingFinished.connect(self._changed)
        self.token_edit.editingFinished.connect(self._changed)

    def rows(self) -> list:
        return [("Where it runs", self.where_combo), ("Server URL", self.url_edit),
                ("Token file", self._token_row)]

    def setting(self) -> ServerSetting:
        """The setting the fields show."""
        return ServerSetting(remote=bool(self.where_combo.currentData()), url=self.url_edit.text().strip(),
                             token_file=self.token_edit.text().strip())

    def show(self, setting: ServerSetting) -> None:
        """Show ``setting`` in the fields (without saving it)."""
        for w in (self.where_combo, self.url_edit, self.token_edit):
            w.blockSignals(True)
        self.where_combo.setCurrentIndex(1 if setting.remote else 0)
        self.url_edit.setText(setting.url)
        self.token_edit.setText(setting.token_file)
        for w in (self.where_combo, self.url_edit, self.token_edit):
            w.blockSignals(False)
        self._enable()

    def set(self, setting: ServerSetting) -> None:
        """Show ``setting`` and remember it (what typing in the fields does)."""
        self.show(setting)
        self._changed()

    def _enable(self) -> None:
        remote = bool(self.where_combo.currentData())
        for w in (self.url_edit, self.token_edit, self.token_browse):
            w.setEnabled(remote)

    def _changed(self, *_) -> None:
        self._enable()
        try:
            save_setting(self.setting())
        except OSError as exc:  # a read-only home: the choice still holds for this session
            log.warning("cannot remember the server setting: %s", exc)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(None, "The server's token file")
        if path:
            self.token_edit.setText(path)
            self._changed()
