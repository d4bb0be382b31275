"""The Ray engine (:mod:`napari_medseg.batch.ray_engine`) in-process on the session's
loopback cluster: an actor killed late in a cohort costs one retry of that case only, the
rows equal the local engine's, and both engines report where their time went."""

from __future__ import annotations

import pytest

from napari_medseg.batch import Settings, discover_cases
from napari_medseg.batch.local import run_local
from napari_medseg.batch.records import model_identity
from napari_medseg.batch.runner import KILL_HOOK
from tests.batch._helpers import PHANTOM_SHAPES, write_phantom_cohort

TIMING = ("seconds", "peak_memory_mb", "attempts")


def _run(engine, folder, out, ray_address=None):
    from napari_medseg.batch.ray_engine import run_ray

    cases, _ = discover_cases(folder)
    settings = Settings(model="hu-tissue", model_id=model_identity("hu-tissue"))
    rows, timings = [], {}
    if engine == "ray":
        run_ray(cases, settings, str(out), workers=2, retries=2, on_row=rows.append,
                address=ray_address, timings=timings)
    else:
        run_local(cases, settings, str(out), workers=2, retries=2, on_row=rows.append,
                  threads=1, timings=timings)
    return {r["case_id"]: r for r in rows}, timings


@pytest.mark.slow
def test_killed_actor_late_in_cohort_and_engine_timings(tmp_path, ray_address, monkeypatch):
    folder = tmp_path / "cohort"
    write_phantom_cohort(folder, shapes=PHANTOM_SHAPES * 3, first_seed=40)  # 12 short cases
    local_rows, local_t = _run("local", folder, tmp_path / "local")
    marker = tmp_path / "killed-once"
    target = "case47"  # the actors have run several cases each by then
    monkeypatch.setenv(KILL_HOOK, f"{target}:{marker}")
    rows, timings = _run("ray", folder, tmp_path / "ray", ray_address)
    assert marker.exists()  # the actor really died in that case
    assert sorted(rows) == sorted(local_rows) and len(rows) == 12
    bad = [(r["case_id"], r["status"], r["error"]) for r in rows.values() if r["status"] != "ok"]
    assert not bad
    assert {k: r["attempts"] for k, r in rows.items()} == {k: 2 if k == target else 1 for k in rows}
    for case_id, row in rows.items():
        assert {k: v for k, v in row.items() if k not in TIMING} == \
            {k: v for k, v in local_rows[case_id].items() if k not in TIMING}, case_id
    # where the time went (run.json's engine_timings): stages in order
    assert 0 <= timings["ray_import_s"] <= timings["ray_init_s"] <= timings["actors_submitted_s"] \
        <= timings["first_row_s"] <= timings["last_row_s"]
    assert timings["started_local_ray"] is False and timings["shutdown_s"] >= 0
    assert 0 <= local_t["workers_started_s"] <= local_t["first_row_s"] <= local_t["last_row_s"]
    assert local_t["shutdown_s"] >= 0


def test_memory_monitor_kill_counts_as_a_lost_worker():
    """Ray's memory monitor kills a worker with OutOfMemoryError (seen on a shared machine
    running low on memory): that case is retried like a SIGKILLed one, not a crash of the run."""
    ray = pytest.importorskip("ray")
    from napari_medseg.batch.ray_engine import worker_lost_errors

    lost = worker_lost_errors(ray)
    for name in ("OutOfMemoryError", "ActorDiedError", "WorkerCrashedError", "NodeDiedError"):
        assert issubclass(getattr(ray.exceptions, name), lost), name
    assert not issubclass(ray.exceptions.RayTaskError, lost)  # a bug is an error row at once


def _ray_descendants() -> dict:
    """pid -> name of this process's descendants that are Ray's node processes."""
    import psutil

    out = {}
    for p in psutil.Process().children(recursive=True):
        try:
            name = p.name()
        except psutil.Error:
            continue
        if "raylet" in name or "gcs_server" in name:
            out[p.pid] = name
    return out


@pytest.mark.slow
def test_own_ray_instance_is_gone_when_the_run_returns(tmp_path):
    """No --address: run_batch starts a local Ray instance (in the background, while it
    does its own work) and stops it, writing the tables meanwhile; when it returns no
    raylet or GCS process of the run is left, and the timings say what happened."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    from napari_medseg.batch import run_batch

    folder = tmp_path / "cohort"
    write_phantom_cohort(folder, shapes=PHANTOM_SHAPES[:2])
    before = _ray_descendants()  # e.g. the session's loopback cluster of other tests
    summary = run_batch(folder, tmp_path / "out", model="hu-tissue", engine="ray", workers=2)
    assert summary.count("ok") == 2 and (tmp_path / "out" / "results.csv").is_file()
    left = {pid: name for pid, name in _ray_descendants().items() if pid not in before}
    assert not left, left
    t = summary.timings
    assert t["started_local_ray"] is True
    assert 0 <= t["ray_import_s"] <= t["ray_init_s"] <= t["actors_submitted_s"] \
        <= t["first_row_s"] <= t["last_row_s"]
    assert t["shutdown_s"] > 0
    import ray

    assert not ray.is_initialized()
