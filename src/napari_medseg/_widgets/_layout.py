"""Layout helpers that keep the plugin's docks compact when several are docked at once.

napari stacks dock widgets in one column: the main window must be at least as tall as
the sum of their minimum heights. A widget whose minimum height is its full content
(tables, lists, forms) then pushes the window past a 1080 px screen and Qt squeezes
rows over each other. Two tools, used by every widget of the plugin:

- :func:`make_scrollable` moves a widget's content into a scroll area, so its dock can
  shrink to a few rows and scroll, while it still asks for its full height when alone;
- :func:`collapsible` groups the options most runs leave alone in a collapsed
  section (superqt's ``QCollapsible``, which ships with napari).
"""

from __future__ import annotations

from typing import Iterable, Optional

from qtpy.QtCore import QEvent, QSize, Qt
from qtpy.QtWidgets import QComboBox, QFormLayout, QFrame, QScrollArea, QSizePolicy, QStyle, QVBoxLayout, QWidget

#: Smallest height (px) a scrollable dock body asks for: about three rows of controls.
MIN_BODY_HEIGHT = 90


class _ScrollBody(QScrollArea):
    """A scroll area that asks for its content's size but can shrink to a few rows."""

    def sizeHint(self) -> QSize:  # noqa: D102 - Qt override
        inner = self.widget()
        if inner is None:
            return super().sizeHint()
        hint = inner.sizeHint()
        return QSize(hint.width() + self._bar_width(), hint.height())

    def _bar_width(self) -> int:
        # the style's scroll bar extent can exceed the bar's own size hint (Fusion: 15 vs 13)
        bar = self.verticalScrollBar()
        extent = self.style().pixelMetric(QStyle.PM_ScrollBarExtent, None, bar)
        return max(extent, bar.sizeHint().width()) + 2 * self.frameWidth()

    def eventFilter(self, watched, event) -> bool:  # noqa: D102 - Qt override
        handled = super().eventFilter(watched, event)
        if watched is self.widget() and event.type() == QEvent.LayoutRequest:
            # the content changed its size needs (a section opened, a row appeared): let
            # the dock follow, so content is never cut off at the side
            self.updateGeometry()
        return handled

    def minimumSizeHint(self) -> QSize:  # noqa: D102 - Qt override
        inner = self.widget()
        width = inner.minimumSizeHint().width() if inner is not None else 0
        return QSize(width + self._bar_width(), MIN_BODY_HEIGHT)


def make_scrollable(widget: QWidget) -> QScrollArea:
    """Move ``widget``'s layout (and its children) into a scroll area filling ``widget``.

    Call it at the end of a dock widget's ``__init__``, after its layout is built. The
    attributes that point at child widgets stay valid (the same objects move); only
    ``widget.layout()`` is now the outer layout holding the scroll area. The content
    scrolls vertically; it is never wider than the dock (no horizontal scrolling).

    Parameters
    ----------
    widget : QWidget
        A widget with a layout.

    Returns
    -------
    QScrollArea
        The scroll area; its ``widget()`` holds the original layout.
    """
    layout = widget.layout()
    if layout is None:
        raise ValueError("make_scrollable needs a widget with a layout")
    body = QWidget()
    body.setObjectName("medseg_scroll_body")
    # QWidget.setLayout takes a layout off its previous parent widget (Qt "steals" it)
    # and reparents the laid-out children to ``body``.
    body.setLayout(layout)
    scroll = _ScrollBody()
    scroll.setObjectName("medseg_scroll")
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    scroll.setWidget(body)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)
    widget.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Preferred)
    return scroll


def collapsible(title: str, rows: Iterable[tuple], *, expanded: bool = False, parent: Optional[QWidget] = None):
    """A collapsed section holding a form of ``(label, widget_or_layout)`` rows.

    Parameters
    ----------
    title : str
        The section's header, e.g. ``"Options"``.
    rows : iterable of (str or QWidget, QWidget or QLayout)
        The form rows.
    expanded : bool
        Start expanded (default collapsed).
    parent : QWidget, optional

    Returns
    -------
    superqt.QCollapsible
        The section (``toggled`` emits when it opens or closes).
    """
    from superqt import QCollapsible

    section = QCollapsible(title, parent)
    section.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Maximum)
    content = QWidget()
    form = QFormLayout(content)
    form.setContentsMargins(0, 0, 0, 0)
    for label, field in rows:
        form.addRow(label, field)
    section.addWidget(content)
    if expanded:
        section.expand(animate=False)
    else:
        section.collapse(animate=False)
    return section


def runtime_combo(what: str, compiled_per: str, note: str = "") -> QComboBox:
    """The "CPU runtime" choice (auto / openvino / torch) of a dock that runs networks.

    Parameters
    ----------
    what : str
        What the runtime runs, for the tooltip ("the network", "a network backend's
        image encoder").
    compiled_per : str
        What one OpenVINO compilation is for ("model and patch size", "crop size").
    note : str
        A sentence the dock adds to the tooltip.
    """
    from ..inference.runtimes import RUNTIMES

    combo = QComboBox()
    combo.addItems(RUNTIMES)
    combo.setToolTip(
        f"What runs {what} on the CPU: auto (the default choice), openvino (compiled once "
        f"per {compiled_per}, cached on disk) or torch (the reference); any OpenVINO failure "
        f"falls back to PyTorch. {note}".rstrip())
    return combo
