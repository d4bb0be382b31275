"""Autosave: change detection, retention, integrity checks, restore."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

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


# --- bad input and faults


pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")


SHAPE = (32, 128, 128)


CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from napari_medseg.editing.autosave import Autosaver
    sys.path.insert(0, sys.argv[2])
    from _kill_state import state

    saver = Autosaver(sys.argv[1], keep=3, session="kill-test")
    geometry = {"shape_zyx": list(state(0).shape), "spacing_xyz": [0.8, 0.8, 2.5],
                "origin_xyz": [-100.0, -120.0, 40.0], "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1],
                "modality": None}
    table = {"labels": [{"id": 1, "name": "liver", "color": [1, 0, 0, 1]}]}
    step = 0
    while True:
        step += 1
        arr = state(step)  # "edit"
        print(f"begin {step}", flush=True)
        saver.save("liver edits", arr, geometry, table, version=step, extra={"step": step})
        print(f"saved {step}", flush=True)
    """
)


STATE = textwrap.dedent(
    f"""
    import numpy as np

    def state(step):
        arr = np.zeros({SHAPE!r}, np.uint16)
        arr[: step % {SHAPE[0]}, 20:120, 30:130] = 1
        # incompressible noise makes each snapshot take a while to write
        rng = np.random.default_rng(step)
        arr[:, :80, :80] += rng.integers(0, 4, size=({SHAPE[0]}, 80, 80)).astype(np.uint16)
        return arr
    """
)


def _run_and_kill(tmp_path, rec, kill_after: str, delay: float) -> str:
    (tmp_path / "_kill_state.py").write_text(STATE)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen([sys.executable, str(script), str(rec), str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = ""
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            last = line.strip()
            if last == kill_after:
                time.sleep(delay)
                break
        else:
            pytest.fail("child never reached " + kill_after)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    assert last == kill_after, f"child died early: {last!r}\n{proc.stderr.read()}"
    return last


@pytest.mark.parametrize("kill_after,delay", [("begin 4", 0.0), ("saved 3", 0.05)])
def test_restore_after_sigkill_is_intact(tmp_path, kill_after, delay):
    rec = tmp_path / "recovery"
    _run_and_kill(tmp_path, rec, kill_after, delay)
    sys.path.insert(0, str(tmp_path))
    try:
        from _kill_state import state
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("_kill_state", None)

    snaps = list_recoverable(rec)
    assert snaps, f"no snapshot recoverable; folder holds {sorted(p.name for p in rec.rglob('*'))}"
    newest = snaps[0]
    step = newest.extra["step"]
    assert step >= 3  # step 3 was reported saved before the kill
    assert [s.extra["step"] for s in snaps] == sorted((s.extra["step"] for s in snaps), reverse=True)
    labels, table, name = restore(newest.id, rec)
    assert name == "liver edits" and table.name_of(1) == "liver"
    np.testing.assert_array_equal(labels.array, state(step))
    assert labels.spacing == (0.8, 0.8, 2.5) and labels.origin == (-100.0, -120.0, 40.0)

    # a new session in the same folder works and sweeps the dead writer's temp files
    again = Autosaver(rec, keep=3, session="kill-test")
    snap = again.save("liver edits", state(99), version=99, extra={"step": 99})
    folder = snap.path.parent
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp-")]
    assert list_recoverable(rec)[0].extra["step"] == 99
    assert all(p.suffix in (".json", ".npz") for p in folder.iterdir())
