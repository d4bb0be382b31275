"""Undo/redo history of a label map's class list (names, colours, hidden ids).

Voxel edits are undone by napari's own Labels history; the class list (the
:class:`~napari_medseg.io.label_table.LabelTable` and the hidden ids) is not. A
:class:`ClassHistory` keeps one :class:`ClassChange` per class-list edit: the states
before and after, a description for messages, and an optional opaque link to the
voxel change made together with it (a relabel or a delete), which the caller uses
to revert voxels and table as one step. Plain Python: no napari, no Qt.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Optional

#: Class-list edits kept per layer; older ones are forgotten first.
DEFAULT_LIMIT = 100


@dataclass(frozen=True)
class ClassState:
    """A class list at one moment: ``LabelTable.to_dict()`` and the sorted hidden ids."""

    table: dict
    hidden: tuple = ()


@dataclass
class ClassChange:
    """One class-list edit.

    Attributes
    ----------
    description : str
        What was done, e.g. ``"rename label 3 'liver' -> 'hepar'"``.
    before, after : ClassState
        The class list before and after the edit.
    voxels : object, optional
        The caller's record of the voxel change made with this edit (``None`` when
        only the class list changed).
    """

    description: str
    before: ClassState
    after: ClassState
    voxels: Any = None


class ClassHistory:
    """Undo and redo stacks of :class:`ClassChange` for one layer.

    Parameters
    ----------
    limit : int
        Most changes kept for undo; pushing beyond it drops the oldest.

    Examples
    --------
    >>> h = ClassHistory()
    >>> h.push(ClassChange("add label 1", ClassState({"labels": []}), ClassState({"labels": [1]})))
    >>> h.undo().description, h.can_undo, h.can_redo
    ('add label 1', False, True)
    """

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"a class history keeps at least one change, got limit={limit}")
        self._undo: deque = deque(maxlen=limit)
        self._redo: list = []

    @property
    def can_undo(self) -> bool:
        """Whether a change can be undone."""
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        """Whether an undone change can be redone."""
        return bool(self._redo)

    def __len__(self) -> int:
        return len(self._undo)

    def push(self, change: ClassChange) -> None:
        """Record a new change; the redo stack is cleared (a new edit forks history)."""
        self._undo.append(change)
        self._redo.clear()

    def peek_undo(self) -> Optional[ClassChange]:
        """The change :meth:`undo` would return, or ``None``."""
        return self._undo[-1] if self._undo else None

    def peek_redo(self) -> Optional[ClassChange]:
        """The change :meth:`redo` would return, or ``None``."""
        return self._redo[-1] if self._redo else None

    def undo(self) -> ClassChange:
        """Move the latest change to the redo stack and return it (restore ``before``)."""
        if not self._undo:
            raise IndexError("nothing to undo")
        change = self._undo.pop()
        self._redo.append(change)
        return change

    def redo(self) -> ClassChange:
        """Move the latest undone change back and return it (restore ``after``)."""
        if not self._redo:
            raise IndexError("nothing to redo")
        change = self._redo.pop()
        self._undo.append(change)
        return change
