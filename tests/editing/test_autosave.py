"""Autosave: change detection, retention, integrity checks, restore."""

import json

import numpy as np
import pytest

from napari_medseg.editing.autosave import (
    Autosaver,
    PeriodicAutosaver,
    list_recoverable,
    recovery_dir,
    restore,
)
from napari_medseg.errors import ImageReadError, InvalidInputError
from napari_medseg.io.label_table import LabelTable
from napari_medseg.io.volume import Volume

GEO = Volume(np.zeros((3, 4, 5), np.uint8), spacing=(0.5, 0.7, 2.0), origin=(1, 2, 3),
             direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1)).geometry_dict()


def test_env_var_sets_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDSEG_RECOVERY_DIR", str(tmp_path / "rec"))
    assert recovery_dir() == tmp_path / "rec"
    assert Autosaver().directory == tmp_path / "rec"


def test_saves_only_when_changed_and_keeps_last_n(tmp_path):
    saver = Autosaver(tmp_path, keep=2, session="s")
    a = np.zeros((3, 4, 5), np.uint8)
    assert saver.save("seg", a, GEO) is not None
    assert saver.save("seg", a, GEO) is None  # unchanged (hash)
    a[0, 0, 0] = 1
    assert saver.changed("seg", a)
    assert saver.save("seg", a, GEO) is not None
    assert saver.save("seg", a, GEO, version=7) is not None  # a version token counts as a change
    assert saver.save("seg", a, GEO, version=7) is None
    a[1, 1, 1] = 2
    assert saver.save("seg", a, GEO, version=7) is None  # same token: caller says unchanged
    snaps = list_recoverable(tmp_path)
    assert len(snaps) == 2 and snaps[0].id == "s/seg/000003"
    assert sorted(p.name for p in (tmp_path / "s" / "seg").iterdir()) == [
        "000002.json", "000002.npz", "000003.json", "000003.npz"]


def test_restore_roundtrip_with_geometry_and_table(tmp_path):
    saver = Autosaver(tmp_path, session="s")
    a = np.arange(60, dtype=np.uint16).reshape(3, 4, 5)
    table = LabelTable.from_names({1: "liver", 59: "x"})
    snap = saver.save("Labels: liver", a, GEO, table)
    vol, t, name = restore(snap.id, tmp_path)
    np.testing.assert_array_equal(vol.array, a)
    assert vol.array.dtype == np.uint16 and name == "Labels: liver" and t == table
    assert vol.geometry_dict() == GEO


def test_torn_or_corrupt_snapshots_are_never_offered(tmp_path):
    saver = Autosaver(tmp_path, session="s")
    a = np.zeros((3, 4, 5), np.uint8)
    first = saver.save("seg", a)
    a[0] = 1
    second = saver.save("seg", a)
    # damage the newest array: it must be skipped, and restoring it must refuse
    second.path.write_bytes(second.path.read_bytes()[:-10])
    assert [s.id for s in list_recoverable(tmp_path)] == [first.id]
    with pytest.raises(ImageReadError, match="incomplete or damaged"):
        restore(second.id, tmp_path)
    # an array without its JSON record (killed between the two renames) is ignored
    (tmp_path / "s" / "seg" / "000009.npz").write_bytes(first.path.read_bytes())
    # a JSON of something else is ignored
    (tmp_path / "s" / "seg" / "000010.json").write_text(json.dumps({"hello": 1}))
    assert [s.id for s in list_recoverable(tmp_path)] == [first.id]
    with pytest.raises(ImageReadError, match="no recoverable snapshot"):
        restore("s/seg/000010", tmp_path)
    with pytest.raises(InvalidInputError, match="not a snapshot id"):
        restore("../etc/passwd", tmp_path)


def test_refuses_float_arrays_and_bad_keep(tmp_path):
    with pytest.raises(InvalidInputError, match="integer label array"):
        Autosaver(tmp_path).save("x", np.zeros((2, 2, 2), float))
    with pytest.raises(InvalidInputError, match="keep must be >= 1"):
        Autosaver(tmp_path, keep=0)


def test_periodic_autosaver_tick_and_errors(tmp_path):
    saver = Autosaver(tmp_path, session="p")
    state = {"v": 0, "a": np.zeros((2, 2, 2), np.uint8)}

    def states():
        yield "seg", state["a"].copy(), None, None, state["v"]
        yield "bad", np.zeros((2, 2, 2), float), None, None, None

    periodic = PeriodicAutosaver(saver, states, interval_s=0.05)
    assert len(periodic.tick()) == 1 and len(periodic.errors) == 1
    assert periodic.tick() == []  # unchanged version
    state["v"] = 1
    periodic.start()
    import time

    deadline = time.time() + 5
    while len(list_recoverable(tmp_path)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    periodic.stop()
    assert len(list_recoverable(tmp_path)) == 2
