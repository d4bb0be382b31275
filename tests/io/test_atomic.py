"""atomic_write: the old file stays intact, no temporary file is left."""

from __future__ import annotations

import pytest

from napari_medseg.errors import ImageReadError
from napari_medseg.io import atomic_write


# --- bad input and faults


def test_atomic_write_context(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(ValueError):
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise ValueError("stop")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    with pytest.raises(ImageReadError, match="produced no file; nothing was changed"):
        with atomic_write(target):
            pass
    assert target.read_text() == "old"
    with atomic_write(tmp_path / "new" / "b.txt") as tmp:
        tmp.write_text("new")
    assert (tmp_path / "new" / "b.txt").read_text() == "new"
