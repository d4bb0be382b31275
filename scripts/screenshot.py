"""Make the README screenshot: napari with the sample phantom and the plugin's docks.

Usage (headless)::

    xvfb-run -a python scripts/screenshot.py docs/screenshot.png

Opens the ``abdominal_ct_phantom`` sample through the plugin (exactly what File >
Open Sample does), moves to the axial slice showing the most liver lesions, shows the
labels at half opacity with a scale bar in mm, docks the plugin's widgets that are
installed (a missing one is skipped with a note) and saves a PNG of the whole window.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

PLUGIN = "napari-medseg"
SAMPLE = "abdominal_ct_phantom"
# Dock widgets (display names in napari.yaml), tabbed on the right, first one on top.
WIDGETS = ("Liver & lesions", "Automatic segmentation", "Interactive segmentation", "Statistics")
# The tab shown in front: the label table lists every phantom structure with its volume.
FRONT = "Statistics"
MAX_BYTES = 500_000


def best_lesion_slice(labels: np.ndarray, lesion_id: int = 2) -> int:
    """Axial slice index showing the most separate lesions (then the largest lesion area)."""
    from scipy import ndimage

    components, n = ndimage.label(labels == lesion_id)
    if n == 0:
        return labels.shape[0] // 2
    present = np.zeros((labels.shape[0], n + 1), dtype=bool)
    for z in range(labels.shape[0]):
        present[z, np.unique(components[z])] = True
    count = present[:, 1:].sum(axis=1)
    area = (labels == lesion_id).sum(axis=(1, 2))
    return int(np.lexsort((area, count))[-1])


def _process_events(n: int = 10) -> None:
    from qtpy.QtWidgets import QApplication

    for _ in range(n):
        QApplication.processEvents()


def _wait_for_workers(timeout_s: float = 60.0) -> None:
    """Let dock widgets finish their background work (napari workers run on QThreadPool)."""
    import time

    from qtpy.QtCore import QThreadPool

    pool = QThreadPool.globalInstance()
    t0 = time.perf_counter()
    while pool.activeThreadCount() > 0 and time.perf_counter() - t0 < timeout_s:
        _process_events(1)
        time.sleep(0.05)
    _process_events(20)


def _close_notifications(viewer) -> None:
    """Close pop-up notifications (e.g. napari's PyQt5 deprecation note) covering the canvas."""
    try:
        from napari._qt.dialogs.qt_notification import NapariQtNotification
    except ImportError:  # private module moved: keep going, the shot is still useful
        return
    for popup in viewer.window._qt_window.findChildren(NapariQtNotification):
        popup.close()


def _save_png(shot: np.ndarray, path: Path) -> int:
    """Write ``shot`` (RGBA) as an optimised PNG below MAX_BYTES; returns its size."""
    from PIL import Image

    img = Image.fromarray(shot[..., :3])
    for colors in (None, 256, 128):
        buf = io.BytesIO()
        (img if colors is None else img.quantize(colors=colors, dither=Image.Dither.NONE)).save(
            buf, format="PNG", optimize=True)
        if buf.tell() <= MAX_BYTES:
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return buf.tell()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default="docs/screenshot.png", help="PNG to write")
    parser.add_argument("--size", default="1500x900", help="window size WxH in pixels (default 1500x900)")
    parser.add_argument("--no-widgets", action="store_true", help="the viewer alone, without plugin docks")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    import napari

    viewer = napari.Viewer(title="napari-medseg: synthetic abdominal CT phantom", show=True)
    viewer.window._qt_window.resize(width, height)
    image, labels = viewer.open_sample(PLUGIN, SAMPLE)
    labels.opacity = 0.5
    viewer.layers.selection.active = labels

    added = {}
    if not args.no_widgets:
        for name in WIDGETS:
            try:
                dock, _ = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=bool(added))
                added[name] = dock
            except Exception as exc:  # a widget not built yet must not stop the screenshot
                print(f"note: dock widget {name!r} not shown ({type(exc).__name__}: {exc})", file=sys.stderr)
        front = FRONT if FRONT in added else next(iter(added), None)
        if front is not None:
            added[front].raise_()  # bring its tab to the front

    z = best_lesion_slice(np.asarray(labels.data))
    viewer.dims.set_point(0, float(image.data_to_world((z, 0, 0))[0]))
    viewer.scale_bar.visible = True
    n_lesions = len(labels.metadata.get("medseg_phantom", {}).get("lesions", []))
    viewer.text_overlay.visible = True
    viewer.text_overlay.position = "top_left"
    viewer.text_overlay.text = (f"synthetic abdominal CT, slice {z + 1}/{image.data.shape[0]}\n"
                                f"liver lesions in yellow ({n_lesions} in the volume)")
    viewer.text_overlay.font_size = 10
    _process_events()
    viewer.reset_view()
    _process_events(30)
    _wait_for_workers()
    _close_notifications(viewer)
    _process_events()
    shot = viewer.screenshot(canvas_only=False, flash=False)
    size = _save_png(np.asarray(shot), Path(args.output))
    print(f"wrote {args.output}: {shot.shape[1]} x {shot.shape[0]} px, {size / 1000:.0f} kB, "
          f"slice {z}, docks: {', '.join(added) or 'none'}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
