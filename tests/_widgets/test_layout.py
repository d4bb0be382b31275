"""Every dock of the plugin at once in a 1920x1080 window: nothing overlaps, nothing is clipped.

napari users dock several of the plugin's widgets together (Plugins menu). The docks
stack in one column, so the window must fit the sum of their minimum heights. This test
docks all of them through ``add_plugin_dock_widget`` (the user's path), shows the window at
1920x1080 and checks widget geometry (not pixels):

- the window stays within 1080 px and every dock lies inside it, docks not overlapping;
- in every layout of every dock, each visible widget lies inside its parent (for content
  in a scroll area: inside the scrolled content, which the user reaches by scrolling, and
  never wider than the viewport: nothing is cut off at the side);
- visible siblings laid out in the same parent do not overlap, and none is squeezed below
  the height it needs (its minimum size hint, or its height for its width when wrapping).
"""

from __future__ import annotations

import itertools

import pytest
from qtpy.QtCore import QRect
from qtpy.QtWidgets import QApplication, QLayout, QScrollArea, QSizePolicy, QWidget


pytestmark = pytest.mark.gui


SCREEN_W, SCREEN_H = 1920, 1080


def _manifest_widget_names() -> list:
    from npe2 import PluginManager

    manifest = PluginManager.instance().get_manifest("napari-medseg")
    return [w.display_name for w in manifest.contributions.widgets]


def _laid_out(layout: QLayout) -> list:
    """Widgets placed by ``layout`` and its nested layouts (all share one parent widget)."""
    out = []
    for i in range(layout.count()):
        item = layout.itemAt(i)
        if item.widget() is not None:
            out.append(item.widget())
        elif item.layout() is not None:
            out.extend(_laid_out(item.layout()))
    return out


def _needed_height(w: QWidget) -> int:
    if w.sizePolicy().verticalPolicy() == QSizePolicy.Ignored:
        return 0
    if w.hasHeightForWidth():
        return max(w.heightForWidth(w.width()), w.minimumHeight())
    return max(w.minimumSizeHint().height(), w.minimumHeight())


def _folded(w: QWidget, root: QWidget) -> bool:
    """Inside a collapsed section (superqt's QCollapsible folds its content to height 0)."""
    while w is not None and w is not root:
        if w.maximumHeight() == 0:
            return True
        w = w.parentWidget()
    return False


def _shown(w: QWidget, root: QWidget) -> bool:
    return w.isVisible() and not _folded(w, root)


def _problems_in(name: str, root: QWidget) -> list:
    problems = []
    for parent in [root, *root.findChildren(QWidget)]:
        if not _shown(parent, root) or parent.layout() is None:
            continue
        if parent.objectName().startswith("qt_"):
            continue  # Qt's own parts of a composite widget (a table's scroll bar container)
        rows = [w for w in _laid_out(parent.layout()) if _shown(w, root)]
        area = parent.rect()
        for w in rows:
            g = w.geometry()
            label = f"{name}: {type(w).__name__} {w.objectName() or ''} {getattr(w, 'text', lambda: '')()!r}"
            if not area.adjusted(-1, -1, 1, 1).contains(g):
                problems.append(f"{label} at {g.getRect()} lies outside its parent {area.getRect()}")
            need = _needed_height(w)
            if g.height() + 1 < need:
                problems.append(f"{label} squeezed to {g.height()} px (needs {need} px)")
        for a, b in itertools.combinations(rows, 2):
            if a.geometry().intersects(b.geometry()):
                problems.append(f"{name}: {type(a).__name__} {a.geometry().getRect()} overlaps "
                                f"{type(b).__name__} {b.geometry().getRect()}")
    for scroll in root.findChildren(QScrollArea):
        body = scroll.widget()
        if scroll.isVisible() and body is not None and body.width() > scroll.viewport().width() + 1:
            problems.append(f"{name}: scrolled content {body.width()} px wide in a "
                            f"{scroll.viewport().width()} px viewport (cut off at the side)")
    return problems


def test_all_docks_fit_a_1080p_window_without_overlap_or_clipping(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    names = _manifest_widget_names()
    assert len(names) == 7, names
    docked = {name: viewer.window.add_plugin_dock_widget("napari-medseg", name) for name in names}
    window.resize(SCREEN_W, SCREEN_H)
    window.show()
    for _ in range(5):
        QApplication.processEvents()
        qtbot.wait(20)

    # a widget that cannot shrink is the cause: name it and say what helps
    too_tall = {name: w.minimumSizeHint().height() for name, (_, w) in docked.items()
                if w.minimumSizeHint().height() > 250}
    assert not too_tall, (
        f"docks that cannot shrink (minimum height in px): {too_tall}; wrap their content with "
        "napari_medseg._widgets._layout.make_scrollable(self) at the end of __init__ and fold "
        "advanced options with _layout.collapsible(...)")
    assert window.height() <= SCREEN_H, f"window grew to {window.height()} px"
    assert window.minimumSizeHint().height() <= SCREEN_H

    problems = []
    win_rect = window.rect()
    geometries = {}
    for name, (dock, widget) in docked.items():
        assert dock.isVisible() and not dock.isFloating(), name
        g = dock.geometry()
        geometries[name] = g
        if not win_rect.contains(g):
            problems.append(f"dock {name!r} at {g.getRect()} outside the window {win_rect.getRect()}")
        # the plugin widget lies inside its dock
        top_left = widget.mapTo(window, widget.rect().topLeft())
        inside = QRect(top_left, widget.size())
        if not g.adjusted(-1, -1, 1, 1).contains(inside):
            problems.append(f"{name!r}: widget {inside.getRect()} outside its dock {g.getRect()}")
        if widget.height() < 60:
            problems.append(f"{name!r}: only {widget.height()} px tall")
        problems.extend(_problems_in(name, widget))
    for (na, a), (nb, b) in itertools.combinations(geometries.items(), 2):
        if a.intersects(b):
            problems.append(f"docks {na!r} {a.getRect()} and {nb!r} {b.getRect()} overlap")
    assert not problems, "\n".join(problems)


def test_each_dock_alone_shows_its_main_controls_unscrolled(make_napari_viewer, qtbot):
    """Docked alone, a compact widget still gets its natural height (no needless scrolling)."""
    from napari_medseg._widgets.auto_segmentation import AutoSegmentationWidget

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(SCREEN_W, SCREEN_H)
    dock, widget = viewer.window.add_plugin_dock_widget("napari-medseg", "Automatic segmentation")
    assert isinstance(widget, AutoSegmentationWidget)
    for _ in range(5):
        QApplication.processEvents()
        qtbot.wait(20)
    scroll = widget.findChild(QScrollArea)
    assert scroll is not None
    assert scroll.verticalScrollBar().maximum() == 0, "scrolls although the screen has room"
    # the options start folded; opening them shows Device without leaving the dock
    assert not widget.options.isExpanded() and widget.device_combo.visibleRegion().isEmpty()
    widget.options.expand(animate=False)
    for _ in range(3):
        QApplication.processEvents()
        qtbot.wait(20)
    assert not widget.device_combo.visibleRegion().isEmpty()
    assert not _problems_in("Automatic segmentation", widget)
