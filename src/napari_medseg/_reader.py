"""npe2 reader: CT/MRI volumes and label maps into napari layers (thin adapter over io/).

``napari_get_reader`` returns ``None`` for anything it does not handle (never raises),
so napari can try other readers. For files it handles but cannot read, the reader
function raises a :class:`~napari_medseg.errors.MedsegError` whose message names the
file and the problem.

What a path holds (image, label map with its class table, DICOM series, DICOM-SEG) is
decided by :func:`napari_medseg.io.opening.open_path`, the function ``medseg info``
uses too; label maps open as Labels layers, everything else as Image layers, placed in
physical millimetres.

napari asks the user to choose a reader whenever two plugins claim a file and no
preference is saved, and its builtins claim ``*.nii.gz``, ``*.nrrd``, ``*.mha``,
``*.dcm`` and every folder, and cannot read them with their geometry (without an
ITK backend, imageio cannot read them at all). napari offers a plugin no way to rank its reader above the builtins, so
on activation (the first use of any of its readers, widgets or samples) this plugin
saves itself as napari's reader for the formats it opens, as the dialog's
"Remember this choice" would (:func:`register_reader_preferences`); choices the user
has made are never changed.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Union

MAX_AUTO_CHANNELS = 8  # a 4D/multi-channel file with up to this many opens as one layer each


PLUGIN_NAME = "napari-medseg"
#: napari's reader-preference key for every folder (a path with a trailing separator).
FOLDER_PATTERN = "*" + os.sep
#: Upper-case spellings common enough to deserve their own preference (PACS exports):
#: napari matches preference patterns case-sensitively, npe2's reader patterns not.
_UPPER_CASE_PATTERNS = ("*.DCM",)


def reader_patterns() -> List[str]:
    """File-name patterns of every format the reader opens (the manifest lists the same).

    Returns
    -------
    list of str
        ``"*" + extension`` for each extension of
        :data:`napari_medseg.io.formats.EXTENSIONS`, longest first.
    """
    from .io.formats import EXTENSIONS

    return ["*" + ext for ext in EXTENSIONS]


def register_reader_preferences(settings: Any = None) -> List[str]:
    """Save napari-medseg as napari's reader for the formats it opens, where none is chosen.

    napari shows a "Choose reader" dialog (and ``viewer.open(path, plugin=None)``
    raises ``MultipleReaderError``) whenever two plugins claim a file and the user
    has saved no preference; its builtins claim NIfTI, NRRD, MetaImage, DICOM and
    every folder, and cannot read them with their geometry. This saves, in napari's own settings (shown in
    *Preferences > Plugins*, where the user can change them), what the dialog's
    "Remember this choice" would: each pattern of :func:`reader_patterns` plus
    ``*.DCM``, and every folder (``*/``; this plugin declines a folder without DICOM,
    and napari then offers its other readers). A pattern the user has already
    associated with any reader is left alone, and so are folders once the user has
    chosen a reader for any folder.

    Parameters
    ----------
    settings : napari.settings.NapariSettings, optional
        The settings to update (default: napari's ``get_settings()``).

    Returns
    -------
    list of str
        The patterns added (empty when every one was already set).
    """
    if settings is None:
        from napari.settings import get_settings

        settings = get_settings()
    current = dict(settings.plugins.extension2reader)
    added = [p for p in (*reader_patterns(), *_UPPER_CASE_PATTERNS) if p not in current]
    if not any(key.endswith(("/", os.sep)) for key in current):
        added.append(FOLDER_PATTERN)
    if added:
        # one assignment: napari saves its settings file once, on this change
        settings.plugins.extension2reader = {**current, **{p: PLUGIN_NAME for p in added}}
    return added


def on_activate(context: Any = None) -> None:
    """npe2 activation hook: :func:`register_reader_preferences`, never failing the plugin.

    Called by npe2 the first time any of the plugin's contributions (reader, widget,
    sample, writer) is used in a session.
    """
    try:
        register_reader_preferences()
    except Exception as exc:  # a read-only settings file must not break the plugin
        warnings.warn(f"napari-medseg could not save itself as napari's reader for medical formats "
                      f"({exc}); choose napari-medseg in napari's 'Choose reader' dialog instead",
                      stacklevel=2)


def handles(path: Union[str, Path]) -> bool:
    """True when this plugin reads ``path`` (a supported file or a DICOM folder)."""
    try:
        from .io.dicom import folder_has_dicom
        from .io.formats import detect_format

        p = Path(path)
        if p.is_dir():
            return folder_has_dicom(p)
        return p.is_file() and detect_format(p) is not None
    except Exception:  # napari asks every reader: anything unreadable is "not ours", never a crash
        return False


def napari_get_reader(path: Union[str, Sequence[str]]) -> Optional[Callable]:
    """Return a reader function for ``path``, or ``None`` when this plugin does not read it.

    Parameters
    ----------
    path : str or sequence of str
        A file, a DICOM folder, or several of them (as napari passes them).

    Returns
    -------
    callable or None
        :func:`read_layers` when every path is a supported file (by extension, or a
        DICOM file by content) or a folder holding DICOM; ``None`` otherwise (napari
        then reports that the plugin declined, or offers its other readers). Never raises.
    """
    try:
        paths = [path] if isinstance(path, (str, Path)) else list(path)
    except TypeError:
        return None
    if not paths or not all(handles(p) for p in paths):
        return None
    return read_layers


def _dedupe_dicom(paths: List[Path]) -> List[Path]:
    """A list of DICOM files of one folder is one series: read the folder once."""
    from .io.formats import detect_format

    out: List[Path] = []
    seen_folders = set()
    for p in paths:
        if p.is_file() and detect_format(p) == "dicom":
            if p.parent in seen_folders:
                continue
            seen_folders.add(p.parent)
        out.append(p)
    return out


def read_layers(path: Union[str, Sequence[str]]) -> List[tuple]:
    """Read ``path`` (or several) into napari layer data tuples.

    Each path is opened by :func:`napari_medseg.io.opening.open_path` (which decides
    image, label map, DICOM series or DICOM-SEG, as ``medseg info`` reports it); this
    function only turns what it returns into layer tuples.
    """
    from .io.layer_data import image_layer_tuple, labels_layer_tuple
    from .io.opening import open_path

    paths = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
    layers: List[tuple] = []
    for p in _dedupe_dicom(paths):
        for item in open_path(p, split_channels=MAX_AUTO_CHANNELS):
            if item.is_labels:
                layers.append(labels_layer_tuple(item.volume.array, item.volume, item.table, item.name))
            else:
                layers.append(image_layer_tuple(item.volume, item.name))
    return layers


__all__ = ["napari_get_reader", "read_layers", "handles", "reader_patterns", "register_reader_preferences",
           "on_activate"]
