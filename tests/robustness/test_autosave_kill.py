"""Autosave survives a killed process: the recovery folder restores the last snapshot intact.

A child process edits a label map and autosaves after every edit; the parent kills
it with SIGKILL, including right in the middle of writing a snapshot, then restores
from the recovery folder and checks the array is exactly the state of the step the
snapshot claims (no torn file, nothing half-written offered).
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from napari_medseg.editing.autosave import Autosaver, list_recoverable, restore

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
