"""What every ``medseg`` command shares (cli/_common.py): JSON output into pipes closed early."""

from __future__ import annotations

import subprocess
import sys

import pytest


# --- bad input and faults


# ------------------------------------------------------------------------- pipes
def test_json_into_a_pipe_closed_before_writing(sample, tmp_path):
    """The reader has gone before the JSON is written: quiet exit 141, like Unix tools."""
    proc = subprocess.Popen([sys.executable, "-m", "napari_medseg.cli", "stats", sample["ct"],
                             sample["labels"], "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `| head` that has already exited
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err


@pytest.mark.parametrize("command", [
    "stats {ct} {labels} --json",
    "segment {ct} -o {out} --json",
    "weights list --json",
])
def test_json_piped_into_head(sample, tmp_path, command):
    cmd = command.format(ct=sample["ct"], labels=sample["labels"], out=tmp_path / "seg.nii.gz")
    shell = (f"{sys.executable} -m napari_medseg.cli {cmd} 2>{tmp_path / 'err'} | head -c 10; "
             "echo \" ${PIPESTATUS[0]}\"")
    res = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=300)
    head, status = res.stdout.rsplit(" ", 1)
    assert len(head) == 10 and head[0] in "[{"  # the start of the JSON, nothing else
    assert int(status) in (0, 141)  # 0 when the JSON fitted in the pipe before head left
    err = (tmp_path / "err").read_text()
    assert "Traceback" not in err and "BrokenPipe" not in err
