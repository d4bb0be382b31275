"""Class bookkeeping: relabel, rename, recolour and delete classes (ids and names).

Label ids live in the array, names and colours in a
:class:`~napari_medseg.io.label_table.LabelTable`; these functions keep the two in
step and return new objects.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError
from ._common import check_label_id, check_labels, result_dtype, select_ids


def relabel(labels: np.ndarray, old: int, new: int, table=None, *, merge: bool = False) -> tuple:
    """Give the voxels of label ``old`` the id ``new`` (and move its name/colour).

    Parameters
    ----------
    labels : numpy.ndarray
        Integer label map. Never modified.
    old, new : int
        Current and new id. ``old`` must be present.
    table : LabelTable, optional
        Names and colours; the entry of ``old`` moves to ``new``.
    merge : bool
        Allow ``new`` to be a label already present (the two merge, ``new`` keeps its
        name). Refused by default so that a typo never merges two organs.

    Returns
    -------
    (numpy.ndarray, LabelTable or None)
    """
    arr = check_labels(labels)
    (old,) = select_ids(arr, old)
    new = check_label_id(new, "new label id")
    if new == old:
        return arr.copy(), table
    in_use = bool((arr == new).any())
    named = table is not None and new in table.names
    if (in_use or named) and not merge:
        raise InvalidInputError(
            f"label {new} is already in use"
            f"{' (' + table.name_of(new) + ')' if named else ''}; pick a free id or merge"
        )
    out = arr.astype(result_dtype(arr, new), copy=True)
    out[arr == old] = new
    if table is not None:
        if old in table.names:
            entry_name = table.name_of(old)
            color = _color_of(table, old)
            info = table.info_of(old)  # provenance and code go with the class
            table = table.without(old)
            if not (merge and new in table.names):
                table = table.with_label(new, entry_name, color).with_info(new, info)
    return out, table


def _color_of(table, label_id: int):
    return table.color_of(label_id) if label_id in table else None


def rename_class(table, label_id: int, name: str):
    """A new table in which ``label_id`` is called ``name`` (colour kept)."""
    label_id = check_label_id(label_id)
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"a class name must be a non-empty string, got {name!r}")
    return table.with_label(label_id, name.strip(), _color_of(table, label_id))


def recolor_class(table, label_id: int, color):
    """A new table in which ``label_id`` has ``color`` (RGB(A) floats 0..1, name kept)."""
    label_id = check_label_id(label_id)
    rgba = np.asarray(color, dtype=float).ravel()
    if rgba.size not in (3, 4) or not np.all((rgba >= 0) & (rgba <= 1)):
        raise InvalidInputError(f"a colour is 3 or 4 numbers in 0..1, got {color!r}")
    name = table.name_of(label_id) if label_id in table.names else f"label_{label_id}"
    return table.with_label(label_id, name, tuple(rgba))


def delete_class(labels: np.ndarray, label_id: int, table=None) -> tuple:
    """Erase a class: its voxels become background and its table entry goes.

    A class that is named but has no voxels is only removed from the table.

    Returns
    -------
    (numpy.ndarray, LabelTable or None)
    """
    arr = check_labels(labels)
    label_id = check_label_id(label_id)
    present = bool((arr == label_id).any())
    named = table is not None and label_id in table.names
    if not present and not named:
        raise InvalidInputError(f"label {label_id} is not present in the label map or the table")
    out = arr.copy()
    if present:
        out[arr == label_id] = 0
    if named:
        table = table.without(label_id)
    return out, table


def next_free_id(labels: np.ndarray, table=None) -> int:
    """The smallest id above every id in use in ``labels`` and ``table``."""
    arr = check_labels(labels)
    top = int(arr.max(initial=0))
    if table is not None and table.names:
        top = max(top, max(int(k) for k in table.names))
    return top + 1


def changed_ids(before: np.ndarray, after: np.ndarray) -> list:
    """Non-zero ids that gained or lost voxels between two label maps of one grid.

    The classes an edit touched (e.g. to record them as edited by hand).
    """
    changed = before != after
    if not changed.any():
        return []
    ids = np.union1d(np.unique(before[changed]), np.unique(after[changed]))
    return [int(i) for i in ids if i != 0]
