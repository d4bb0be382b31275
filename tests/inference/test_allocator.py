"""glibc heap reuse during prediction: set, nested, restored."""

from __future__ import annotations

import sys

import pytest


class _FakeLibc:
    def __init__(self, calls):
        self.calls = calls

    def malloc_trim(self, _):
        self.calls.append("trim")


def test_thresholds_raised_inside_and_restored_after(monkeypatch):
    from napari_medseg.inference import allocator

    calls = []
    monkeypatch.setattr(allocator, "_set", lambda values: calls.append(dict(values)) or True)
    monkeypatch.setattr(allocator, "_glibc", lambda: _FakeLibc(calls))
    with allocator.reuse_freed_memory() as active:
        assert active is True
        with allocator.reuse_freed_memory():  # nested: nothing changes
            pass
        assert calls == [allocator._WHILE_PREDICTING]
    assert calls == [allocator._WHILE_PREDICTING, allocator._DEFAULTS, "trim"]
    assert allocator._depth == 0


def test_restored_when_the_body_raises(monkeypatch):
    from napari_medseg.inference import allocator

    calls = []
    monkeypatch.setattr(allocator, "_set", lambda values: calls.append(dict(values)) or True)
    monkeypatch.setattr(allocator, "_glibc", lambda: _FakeLibc(calls))
    with pytest.raises(ValueError):
        with allocator.reuse_freed_memory():
            raise ValueError("boom")
    assert calls[-2:] == [allocator._DEFAULTS, "trim"] and allocator._depth == 0


def test_no_op_without_glibc(monkeypatch):
    from napari_medseg.inference import allocator

    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    with allocator.reuse_freed_memory() as active:
        assert active is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_real_mallopt_accepts_the_values():
    from napari_medseg.inference import allocator

    if allocator._glibc() is None:
        pytest.skip("not glibc")
    assert allocator._set(allocator._WHILE_PREDICTING)
    assert allocator._set(allocator._DEFAULTS)
