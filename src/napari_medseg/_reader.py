"""npe2 reader: CT/MRI volumes and label maps into napari layers (thin adapter over io/).

``napari_get_reader`` returns ``None`` for anything it does not handle (never raises),
so napari can try other readers. For files it handles but cannot read, the reader
function raises a :class:`~napari_medseg.errors.MedsegError` whose message names the
file and the problem.

Integer files open as a Labels layer when they carry class names (JSON sidecar,
3D Slicer ``.seg.nrrd``, TotalSegmentator XML) or when their name says so
(``seg``/``label``/``mask``) and they hold few distinct non-negative values;
everything else opens as an Image layer placed in physical millimetres.

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
import re
import warnings
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Union

from .errors import InvalidInputError, MedsegError

_LABEL_WORDS = re.compile(r"(seg|label|mask|annot)", re.I)
MAX_LABEL_VALUES = 1024  # more distinct values than this is an image, not a label map
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
        :data:`napari_medseg.io.readers.EXTENSIONS`, longest first.
    """
    from .io.readers import EXTENSIONS

    return ["*" + ext for ext in EXTENSIONS]


def _strip_ext(name: str) -> str:
    from .io.readers import EXTENSIONS

    lowered = name.lower()
    for suffix in EXTENSIONS:  # longest first: ".seg.nrrd" before ".nrrd"
        if lowered.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


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


def _folder_has_dicom(folder: Path, max_checked: int = 200, max_dirs: int = 50) -> bool:
    """True when one of the first files under ``folder`` is DICOM (bounded work: a home
    folder opened by mistake is not walked completely)."""
    import os

    from .io.dicom import is_dicom_file

    checked = dirs = 0
    try:
        for root, subdirs, files in os.walk(folder):
            dirs += 1
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                p = Path(root) / name
                checked += 1
                if p.suffix.lower() in (".dcm", ".ima") or is_dicom_file(p):
                    return True
                if checked >= max_checked:
                    return False
            if dirs >= max_dirs:
                return False
    except OSError:
        return False
    return False


def handles(path: Union[str, Path]) -> bool:
    """True when this plugin reads ``path`` (a supported file or a DICOM folder)."""
    try:
        p = Path(path)
        if p.is_dir():
            return _folder_has_dicom(p)
        if not p.is_file():
            return False
        from .io.readers import detect_format

        return detect_format(p) is not None
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
    from .io.readers import detect_format

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
    """Read ``path`` (or several) into napari layer data tuples."""
    paths = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
    layers: List[tuple] = []
    for p in _dedupe_dicom(paths):
        layers.extend(_read_one(p))
    return layers


def _names_available(p: Path, header_keys: Sequence[str]) -> bool:
    from .io.label_names import label_table_from_nifti
    from .io.label_table import read_sidecar, sidecar_path

    try:
        if read_sidecar(sidecar_path(p)) is not None:
            return True
    except InvalidInputError:
        return True  # a broken sidecar of ours: read_labels will say what is wrong
    if any(k.startswith("Segment") and k.endswith("_Name") for k in header_keys):
        return True
    if p.name.lower().endswith((".nii", ".nii.gz")):
        return label_table_from_nifti(p) is not None
    return False


def _label_candidate(p: Path, fmt: str) -> bool:
    """Cheap decision from the header only: could this be a label map?"""
    import SimpleITK as sitk

    from .io.readers import _read_image_file

    reader, header = _read_image_file(p, fmt, read_pixels=False)
    integer = reader.GetPixelID() in (sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16,
                                      sitk.sitkUInt32, sitk.sitkInt32, sitk.sitkUInt64, sitk.sitkInt64)
    named = _names_available(p, list(header))
    if not integer:
        # Some tools save label maps as float; with names attached, try them as labels
        # (read_labels refuses fractional values, and the file then opens as an image).
        return named and reader.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64)
    return named or bool(_LABEL_WORDS.search(_strip_ext(p.name)))


def _read_one(p: Path) -> List[tuple]:
    from .io.layer_data import image_layer_tuple, labels_layer_tuple
    from .io.readers import MultiChannelError, detect_format, present_ids, read_labels, read_volume

    fmt = detect_format(p)
    name = _strip_ext(p.name) if p.is_file() else p.name
    if fmt == "dicom" and p.is_file() and _is_dicom_seg(p):
        return [_read_dicom_seg_layer(p, name)]
    if fmt not in (None, "dicom") and _label_candidate(p, fmt):
        try:
            labels, table = read_labels(p)
        except InvalidInputError:
            labels = None  # negative or fractional values: an image after all
        if labels is not None:
            named = labels.metadata.get("label_names_source")
            if named or len(present_ids(labels.array)) <= MAX_LABEL_VALUES:
                return [labels_layer_tuple(labels.array, labels, table, name)]
    try:
        volume = read_volume(p)
    except MultiChannelError as exc:
        n = _channel_count(p)
        if not n or n > MAX_AUTO_CHANNELS:
            raise
        warnings.warn(f"{p.name}: {exc}; opening each of its {n} channels as its own layer", stacklevel=2)
        return [image_layer_tuple(read_volume(p, channel=c), f"{name} [{c}]") for c in range(n)]
    return [image_layer_tuple(volume, name)]


def _is_dicom_seg(p: Path) -> bool:
    from .io.dicom import _read_header

    try:
        header = _read_header(p)
    except MedsegError:
        return False
    return header is not None and header.sop_class == "1.2.840.10008.5.1.4.1.1.66.4"


def _read_dicom_seg_layer(p: Path, name: str) -> tuple:
    """A DICOM-SEG as a Labels layer, on the grid of its image series when that sits beside it."""
    from .io.layer_data import labels_layer_tuple
    from .io.readers import read_labels, read_volume

    reference = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            candidate = read_volume(p.parent)
    except MedsegError:
        candidate = None
    if candidate is not None:
        reference = candidate
    try:
        labels, table = read_labels(p, reference=reference)
    except MedsegError:
        if reference is None:
            raise
        labels, table = read_labels(p)  # the series beside it is another one: use the SEG's own grid
    return labels_layer_tuple(labels.array, labels, table, name)


def _channel_count(p: Path) -> int:
    import SimpleITK as sitk

    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(p))
        reader.ReadImageInformation()
    except RuntimeError:
        return 0
    if reader.GetDimension() == 4:
        return int(reader.GetSize()[3])
    return int(reader.GetNumberOfComponents())


__all__ = ["napari_get_reader", "read_layers", "handles", "reader_patterns", "register_reader_preferences",
           "on_activate"]
