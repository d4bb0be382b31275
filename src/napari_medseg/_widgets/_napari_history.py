"""Undo of class-list edits, kept in step with a napari Labels layer's own voxel history.

napari undoes voxels (``Labels.undo``/``redo``, Ctrl+Z); nothing in napari undoes a
layer's class list (names, colours, hidden ids). :class:`ClassUndo` keeps one
:class:`~napari_medseg.editing.class_history.ClassHistory` per layer and, for edits that
change voxels and the list together (relabel, delete, erase), a :class:`VoxelLink` to the
napari steps that wrote those voxels, so that:

* undoing such a class change also reverts its voxels, through napari's own step when it
  is still napari's next undo (napari's stack stays consistent), else by writing the old
  values back as a new undoable step;
* Ctrl+Z in the viewer on those voxels brings the class list back with them
  (:meth:`ClassUndo.follow`, called on the layer's ``set_data`` event).

It works on a bare ``napari.layers.Labels`` (no viewer, no Qt widget). napari's
``_undo_history``/``_redo_history`` are private (napari 0.5 to 0.9: deques of lists of
atoms; undo/redo move the same atom objects between them): every use here tolerates
their absence, falling back to writing voxels back.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Optional

import numpy as np

from ..editing.class_history import ClassChange, ClassHistory, ClassState
from ..io.label_table import LabelTable
from ._layers import apply_to_layer, hidden_labels, layer_key, layer_table, set_layer_table


def class_state(layer) -> ClassState:
    """The layer's class list (table and hidden ids) as a :class:`ClassState`."""
    return ClassState(layer_table(layer).to_dict(), tuple(sorted(hidden_labels(layer))))


def set_class_state(layer, state: ClassState) -> None:
    """Store a :class:`ClassState` on the layer (metadata, features, colormap)."""
    set_layer_table(layer, LabelTable.from_dict(state.table), set(state.hidden))


def newest_atom(layer):
    """An atom of napari's newest undo step of ``layer``, or None."""
    stack = getattr(layer, "_undo_history", None)
    try:
        return stack[-1][-1] if stack else None
    except (TypeError, IndexError, KeyError):
        return None


def napari_applied(layer, atom) -> Optional[bool]:
    """True when ``atom`` is napari's next undo step, False when its next redo step, else None."""
    if atom is None:
        return None
    for stack_name, applied in (("_undo_history", True), ("_redo_history", False)):
        stack = getattr(layer, stack_name, None)
        try:
            if stack and any(a is atom for a in stack[-1]):
                return applied
        except TypeError:
            return None
    return None


class VoxelLink:
    """The voxel change made together with a class-list change (relabel, delete).

    ``diff`` is ``(indices, values before, values after)``, enough to write either
    side back. ``atoms`` lists ``(napari history atom, forward)`` for every napari
    step that wrote these voxels: the change itself (forward: applying it gives the
    "after" side) and any write-back (not forward). Whichever of them is on top of
    napari's undo or redo stack tells which side the voxels are on.
    """

    __slots__ = ("diff", "atoms")

    def __init__(self, diff, atom) -> None:
        self.diff = diff
        self.atoms = [] if atom is None else [(atom, True)]

    def napari_side(self, layer) -> Optional[bool]:
        """True/False: napari's newest step leaves the voxels on the after/before side; None: unknown."""
        for atom, forward in reversed(self.atoms):
            applied = napari_applied(layer, atom)
            if applied is not None:
                return applied == forward
        return None

    def move(self, layer, applied: bool) -> None:
        """Put the voxels on their "after" (``applied``) or "before" side.

        When napari's next undo/redo step is this very change, take it; otherwise
        (painted since, history cleared) write the values back as a new undoable step,
        only where the voxels still hold what the change left there.
        """
        for atom, forward in reversed(self.atoms):
            now = napari_applied(layer, atom)
            if now is not None and (now == forward) != applied:
                (layer.undo if now else layer.redo)()
                return
        if self.diff is None:
            return
        indices, before, after = self.diff
        src, dst = (before, after) if applied else (after, before)
        data = layer.data
        keep = np.asarray(data[indices]) == src
        if not keep.any():
            return
        with layer.block_history():
            layer.data_setitem(tuple(i[keep] for i in indices), dst[keep].astype(data.dtype, copy=False))
        atom = newest_atom(layer)
        if atom is not None:
            self.atoms.append((atom, applied))


def apply_linked(layer, new: np.ndarray) -> tuple:
    """:func:`~._layers.apply_to_layer`, also returning a :class:`VoxelLink` (None if nothing changed)."""
    data, new = np.asarray(layer.data), np.asarray(new)
    changed = np.nonzero(new != data) if new.shape == data.shape else None
    diff = None if changed is None else (changed, data[changed].copy(), new[changed])
    n = apply_to_layer(layer, new)
    if n == 0:
        return 0, None
    return n, VoxelLink(diff, newest_atom(layer))


class ClassUndo:
    """Per-layer undo/redo of class-list edits (last 100 each), in step with napari's history.

    Layers are keyed by :func:`~._layers.layer_key` (stable through napari's proxy); call
    :meth:`forget` when a layer leaves the viewer, so its arrays are not kept alive.
    """

    def __init__(self) -> None:
        self._histories: dict = {}
        #: True while this object itself writes voxels/tables (``set_data`` is then not a Ctrl+Z)
        self.busy = False

    @contextmanager
    def quiet(self):
        """Mark writes made inside as the caller's own (not a viewer Ctrl+Z to follow)."""
        prev, self.busy = self.busy, True
        try:
            yield
        finally:
            self.busy = prev

    @property
    def keys(self) -> list:
        """Keys of the layers with a history."""
        return list(self._histories)

    def history(self, layer, create: bool = False) -> Optional[ClassHistory]:
        """The layer's history (created on demand with ``create``)."""
        key = layer_key(layer)
        if create and key not in self._histories:
            self._histories[key] = ClassHistory()
        return self._histories.get(key)

    def forget(self, key: str) -> None:
        """Drop the history of the layer with :func:`~._layers.layer_key` ``key``."""
        self._histories.pop(key, None)

    def can_undo(self, layer) -> bool:
        history = None if layer is None else self.history(layer)
        return history is not None and history.can_undo

    def can_redo(self, layer) -> bool:
        history = None if layer is None else self.history(layer)
        return history is not None and history.can_redo

    # ------------------------------------------------------------------ edits
    def change_table(self, layer, table: LabelTable, description: str, hidden: Optional[set] = None) -> None:
        """Store ``table`` (and ``hidden`` ids) on the layer as one undoable class change."""
        self.follow(layer)
        before = class_state(layer)
        with self.quiet():
            set_layer_table(layer, table, hidden)
        self._record(layer, description, before)

    def change_voxels_and_table(self, layer, new: np.ndarray, table: LabelTable, description: str) -> int:
        """Write ``new`` voxels and store ``table`` as ONE class change; returns voxels changed."""
        self.follow(layer)
        before = class_state(layer)
        with self.quiet():
            n, link = apply_linked(layer, new)  # widens the layer first when the ids need it
            set_layer_table(layer, table)
        self._record(layer, description, before, link)
        return n

    def _record(self, layer, description: str, before: ClassState, link: Optional[VoxelLink] = None) -> None:
        after = class_state(layer)
        if after != before or link is not None:  # e.g. re-typing the same name is no change
            self.history(layer, create=True).push(ClassChange(description, before, after, link))

    # ------------------------------------------------------------------ undo
    def follow(self, layer) -> Optional[str]:
        """Bring the class list in step after napari undid/redid a linked change's voxels.

        Call it on the layer's ``set_data`` event (emitted by ``layer.undo()`` /
        ``layer.redo()``, i.e. Ctrl+Z in the viewer) and before each class edit. Only
        the newest class change (or the newest undone one) is followed: older ones
        would need the changes after them undone first.

        Returns
        -------
        str or None
            What was followed (for a status line), or None when nothing moved.
        """
        history = self.history(layer)
        if self.busy or history is None:
            return None
        change, verb = history.peek_undo(), "undid"
        if change is None or change.voxels is None or change.voxels.napari_side(layer) is not False:
            change, verb = history.peek_redo(), "redid"
            if change is None or change.voxels is None or change.voxels.napari_side(layer) is not True:
                return None
        with self.quiet():
            if verb == "undid":
                set_class_state(layer, history.undo().before)
            else:
                set_class_state(layer, history.redo().after)
        return f"{verb} (Ctrl+Z in the viewer): {change.description}"

    def step(self, layer, undo: bool) -> Optional[ClassChange]:
        """Undo (or redo) the layer's newest class change, voxels included; None if none."""
        history = None if layer is None else self.history(layer)
        if history is None:
            return None
        self.follow(layer)
        change = history.peek_undo() if undo else history.peek_redo()
        if change is None:
            return None
        with self.quiet():
            if change.voxels is not None:
                change.voxels.move(layer, applied=not undo)
            set_class_state(layer, change.before if undo else change.after)
        history.undo() if undo else history.redo()
        return change
