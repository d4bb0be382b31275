"""The memory check's message."""

from __future__ import annotations

import pytest

from napari_medseg.errors import InsufficientMemoryError


def test_check_memory_message(monkeypatch):
    from napari_medseg.inference.memory import available_memory, check_memory

    assert available_memory() is None or available_memory() > 0
    with pytest.raises(InsufficientMemoryError, match=r"needs about 8\.0 GiB of memory, 2\.0 GiB available"):
        check_memory(8 * 2**30, "the job", available=2 * 2**30)
    check_memory(1 * 2**30, "the job", available=2 * 2**30)
    monkeypatch.setenv("MEDSEG_AVAILABLE_MEMORY", str(2**20))
    assert available_memory() == 2**20
