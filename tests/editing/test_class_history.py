"""Class-list history: undo/redo stacks, redo cleared by a new change, size limit."""

import pytest

from napari_medseg.editing.class_history import ClassChange, ClassHistory, ClassState


def _change(i: int) -> ClassChange:
    return ClassChange(f"change {i}", ClassState({"labels": [i]}), ClassState({"labels": [i + 1]}, (i,)))


def test_undo_redo_order_and_flags():
    h = ClassHistory()
    assert not h.can_undo and not h.can_redo and h.peek_undo() is None
    for i in range(3):
        h.push(_change(i))
    assert h.undo().description == "change 2"
    assert h.undo().description == "change 1"
    assert h.can_undo and h.can_redo and h.peek_redo().description == "change 1"
    assert h.redo().description == "change 1"
    assert h.peek_undo().after == ClassState({"labels": [2]}, (1,))


def test_new_change_clears_redo():
    h = ClassHistory()
    h.push(_change(0))
    h.undo()
    assert h.can_redo
    h.push(_change(1))
    assert not h.can_redo and len(h) == 1
    with pytest.raises(IndexError):
        h.redo()


def test_limit_drops_oldest():
    h = ClassHistory(limit=3)
    for i in range(5):
        h.push(_change(i))
    assert len(h) == 3
    assert [h.undo().description for _ in range(3)] == ["change 4", "change 3", "change 2"]
    assert not h.can_undo
    with pytest.raises(IndexError):
        h.undo()
    with pytest.raises(ValueError):
        ClassHistory(limit=0)
