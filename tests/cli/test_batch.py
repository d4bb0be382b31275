"""``medseg batch`` as users run it (subprocesses): both engines, resume, bad cases, killed
workers, duplicate ids, manifests with missing files, Ctrl-C then resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tests.batch._fixtures import cohort, nnunet_model, phantom_files, ray_address, real_cohort  # noqa: F401
from tests.batch._helpers import digests, medseg_batch, read_rows, write_phantom_cohort

from napari_medseg.io import read_labels, read_volume

TIMING = ("seconds", "peak_memory_mb")


def _ok(res, code=0):
    assert res.returncode == code, f"exit {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"


def _engine_args(engine: str, request) -> list:
    if engine == "ray":
        return ["--engine", "ray", "--address", request.getfixturevalue("ray_address")]
    return ["--engine", "local"]


def _check_outputs_match_sources(cohort: Path, out: Path, rows: dict) -> None:
    """Every ok row has a label file on its source's exact grid, with its names sidecar."""
    for case_id, row in rows.items():
        if row["status"] != "ok":
            continue
        src = read_volume(row["input"])
        labels, table = read_labels(out / row["output"])
        assert labels.shape == src.shape
        assert labels.spacing == src.spacing and labels.origin == src.origin
        assert np.array_equal(np.asarray(labels.direction), np.asarray(src.direction))
        assert (out / "labels" / f"{case_id}.json").is_file()
        assert table is not None and len(table.names) > 0


def _run_both(cohort, tmp_path, request, extra=()):
    outs = {}
    for engine in ("local", "ray"):
        out = tmp_path / f"out_{engine}"
        res = medseg_batch(cohort, "-o", out, "--workers", "2", *extra, *_engine_args(engine, request))
        _ok(res)
        outs[engine] = out
    return outs


def _assert_same(outs: dict) -> None:
    a, b = outs["local"], outs["ray"]
    rows_a, rows_b = read_rows(a), read_rows(b)
    assert list(rows_a) == list(rows_b)
    for case_id in rows_a:
        ra = {k: v for k, v in rows_a[case_id].items() if k not in TIMING}
        rb = {k: v for k, v in rows_b[case_id].items() if k not in TIMING}
        assert ra == rb, case_id
        la, _ = read_labels(a / rows_a[case_id]["output"])
        lb, _ = read_labels(b / rows_b[case_id]["output"])
        assert np.array_equal(la.array, lb.array), case_id
        assert json.loads((a / "labels" / f"{case_id}.json").read_text()) == \
            json.loads((b / "labels" / f"{case_id}.json").read_text())


@pytest.mark.slow
def test_both_engines_same_files_and_rows_hu_tissue(cohort, tmp_path, request):
    before = digests(cohort)
    outs = _run_both(cohort, tmp_path, request, extra=("--stats",))
    _assert_same(outs)
    rows = read_rows(outs["local"])
    assert [r["status"] for r in rows.values()] == ["ok"] * 4
    assert set(rows) == {"case0", "case1", "case2", "case3"}
    # --stats: volumes of the tissue classes, bigger phantoms hold more of each
    assert float(rows["case3"]["skeletal_muscle_ml"]) > 0
    assert float(rows["case3"]["subcutaneous_fat_ml"]) > float(rows["case0"]["subcutaneous_fat_ml"])
    _check_outputs_match_sources(cohort, outs["local"], rows)
    # parquet holds the same table as the CSV
    import pandas as pd

    frame = pd.read_parquet(outs["ray"] / "results.parquet")
    assert list(frame["case_id"]) == list(rows)
    assert list(frame["status"]) == ["ok"] * 4
    run = json.loads((outs["ray"] / "run.json").read_text())
    assert run["engine"] == "ray" and run["counts"]["ok"] == 4 and run["versions"]["ray"]
    assert digests(cohort) == before  # inputs never modified


@pytest.mark.slow
@pytest.mark.shared_data
def test_both_engines_same_on_real_ct_copies(real_cohort, tmp_path, request):
    outs = _run_both(real_cohort, tmp_path, request)
    _assert_same(outs)
    rows = read_rows(outs["local"])
    assert rows["realA"]["input_sha256"] == rows["realB"]["input_sha256"]
    la, _ = read_labels(outs["local"] / rows["realA"]["output"])
    lb, _ = read_labels(outs["local"] / rows["realB"]["output"])
    assert np.array_equal(la.array, lb.array) and la.array.max() > 0
    _check_outputs_match_sources(real_cohort, outs["local"], rows)


@pytest.mark.slow
def test_both_engines_same_with_nnunet_model(cohort, tmp_path, request, nnunet_model):
    outs = _run_both(cohort, tmp_path, request, extra=("--model", nnunet_model))
    _assert_same(outs)
    rows = read_rows(outs["ray"])
    assert [r["status"] for r in rows.values()] == ["ok"] * 4


@pytest.mark.slow
def test_resume_skips_done_and_reruns_changed(cohort, tmp_path, phantom_files):
    out = tmp_path / "out"
    res = medseg_batch(cohort, "-o", out, "--workers", "2")
    _ok(res)
    first = read_rows(out)
    assert [r["status"] for r in first.values()] == ["ok"] * 4
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "labels").iterdir()}

    # 1. same command again: every case skipped, no output rewritten, in seconds
    t0 = time.perf_counter()
    res = medseg_batch(cohort, "-o", out, "--workers", "2")
    _ok(res)
    assert time.perf_counter() - t0 < 30
    assert [r["status"] for r in read_rows(out).values()] == ["skipped"] * 4
    assert {p.name: p.stat().st_mtime_ns for p in (out / "labels").iterdir()} == mtimes
    assert "4 skipped" in res.stdout

    # 2. one input changed (another scan under the same name), one only touched (same
    #    bytes, new mtime), one output deleted, one output truncated
    write_phantom_cohort(tmp_path / "other", shapes=[(20, 64, 64)], first_seed=7)
    shutil.copy(tmp_path / "other" / "case7.nii.gz", cohort / "case1.nii.gz")
    os.utime(cohort / "case0.nii.gz", None)
    (out / "labels" / "case2.nii.gz").unlink()
    data = (out / "labels" / "case3.nii.gz").read_bytes()
    (out / "labels" / "case3.nii.gz").write_bytes(data[: len(data) // 2])
    res = medseg_batch(cohort, "-o", out, "--workers", "2")
    _ok(res)
    rows = read_rows(out)
    assert rows["case0"]["status"] == "skipped"  # same content: hashed, not rerun
    assert rows["case1"]["status"] == "ok"
    assert rows["case1"]["input_sha256"] != first["case1"]["input_sha256"]
    assert rows["case2"]["status"] == "ok" and (out / "labels" / "case2.nii.gz").is_file()
    assert rows["case3"]["status"] == "ok"
    assert read_labels(out / "labels" / "case3.nii.gz")[0].shape == read_volume(cohort / "case3.nii.gz").shape

    # 3. changed settings (another output format) rerun every case
    res = medseg_batch(cohort, "-o", out, "--workers", "2", "--ext", ".nrrd")
    _ok(res)
    rows = read_rows(out)
    assert [r["status"] for r in rows.values()] == ["ok"] * 4
    assert rows["case0"]["fingerprint"] != first["case0"]["fingerprint"]
    assert (out / "labels" / "case0.nrrd").is_file()

    # 4. --stats asks for more than the records hold: rerun; --no-resume reruns all
    res = medseg_batch(cohort, "-o", out, "--ext", ".nrrd", "--stats")
    _ok(res)
    assert [r["status"] for r in read_rows(out).values()] == ["ok"] * 4
    res = medseg_batch(cohort, "-o", out, "--ext", ".nrrd")
    assert [r["status"] for r in read_rows(out).values()] == ["skipped"] * 4
    res = medseg_batch(cohort, "-o", out, "--ext", ".nrrd", "--no-resume")
    _ok(res)
    assert [r["status"] for r in read_rows(out).values()] == ["ok"] * 4


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["local", "ray"])
def test_corrupt_case_is_one_error_row(cohort, tmp_path, engine, request):
    (cohort / "broken.nii.gz").write_bytes(b"\x1f\x8b" + os.urandom(500))
    (cohort / "notes.nii").write_text("this is a text file, not an image\n" * 20)
    out = tmp_path / "out"
    res = medseg_batch(cohort, "-o", out, *_engine_args(engine, request))
    _ok(res, 3)
    rows = read_rows(out)
    assert {k: r["status"] for k, r in rows.items()} == {
        "broken": "error", "case0": "ok", "case1": "ok", "case2": "ok", "case3": "ok",
        "notes": "error"}
    assert "broken.nii.gz" in rows["broken"]["error"]
    assert "notes.nii" in rows["notes"]["error"]
    assert "failed cases:" in res.stdout and "broken:" in res.stdout and "notes:" in res.stdout
    assert not (out / "labels" / "broken.nii.gz").exists()
    # the failed cases are not "done": a rerun tries them again and keeps the others
    res = medseg_batch(cohort, "-o", out, *_engine_args(engine, request))
    _ok(res, 3)
    rows = read_rows(out)
    assert rows["broken"]["status"] == "error" and rows["case0"]["status"] == "skipped"


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["local", "ray"])
def test_worker_killed_mid_case_is_retried(cohort, tmp_path, engine, request):
    marker = tmp_path / "killed-once"
    out = tmp_path / "out"
    res = medseg_batch(cohort, "-o", out, "--workers", "2", *_engine_args(engine, request),
                       env={"MEDSEG_BATCH_TEST_KILL": f"case2:{marker}"})
    _ok(res)
    assert marker.exists()  # the worker really was killed during case2
    rows = read_rows(out)
    assert [r["status"] for r in rows.values()] == ["ok"] * 4
    assert rows["case2"]["attempts"] == "2"
    assert {r["attempts"] for k, r in rows.items() if k != "case2"} == {"1"}

    # with no retries the case is an error row; the others finish
    marker.unlink()
    out2 = tmp_path / "out2"
    res = medseg_batch(cohort, "-o", out2, "--workers", "2", "--retries", "0",
                       *_engine_args(engine, request),
                       env={"MEDSEG_BATCH_TEST_KILL": f"case2:{marker}"})
    _ok(res, 3)
    rows = read_rows(out2)
    assert rows["case2"]["status"] == "error" and "died" in rows["case2"]["error"]
    assert [rows[k]["status"] for k in ("case0", "case1", "case3")] == ["ok"] * 3
    assert not (out2 / "records" / "case2.json").exists()


def test_duplicate_case_ids_refused(cohort, tmp_path):
    from napari_medseg.io import write_volume

    write_volume(read_volume(cohort / "case1.nii.gz"), cohort / "case1.nrrd")
    write_volume(read_volume(cohort / "case2.nii.gz"), cohort / "CASE2.mha")
    out = tmp_path / "out"
    res = medseg_batch(cohort, "-o", out)
    _ok(res, 2)
    assert "duplicate case ids" in res.stderr
    assert "case1.nrrd" in res.stderr and "case1.nii.gz" in res.stderr and "CASE2.mha" in res.stderr
    assert not out.exists()  # refused before anything was written

    manifest = tmp_path / "m.csv"
    manifest.write_text(f"case_id,path\na,{cohort / 'case0.nii.gz'}\na,{cohort / 'case3.nii.gz'}\n")
    res = medseg_batch(manifest, "-o", out)
    _ok(res, 2)
    assert "duplicate case ids" in res.stderr and "'a'" in res.stderr


@pytest.mark.slow
def test_manifest_with_missing_file(cohort, tmp_path):
    manifest = tmp_path / "cohort.csv"
    # relative paths are relative to the manifest's folder
    manifest.write_text("case_id,path\n"
                        "p0,cohort/case0.nii.gz\n"
                        "gone,cohort/not_there.nii.gz\n"
                        f"p3,{cohort / 'case3.nii.gz'}\n")
    out = tmp_path / "out"
    res = medseg_batch(manifest, "-o", out)
    _ok(res, 3)
    rows = read_rows(out)
    assert list(rows) == ["p0", "gone", "p3"]
    assert [rows[k]["status"] for k in rows] == ["ok", "error", "ok"]
    assert "not_there.nii.gz" in rows["gone"]["error"] and "line 3" in rows["gone"]["error"]
    assert "gone:" in res.stdout
    assert (out / "labels" / "p0.nii.gz").is_file() and (out / "labels" / "p3.nii.gz").is_file()

    manifest.write_text("case_id,path\np0,\n")
    res = medseg_batch(manifest, "-o", tmp_path / "out2")
    _ok(res, 2)
    assert "line 2" in res.stderr and "case_id,path" in res.stderr


def test_outdir_holding_inputs_refused(cohort, tmp_path):
    before = digests(cohort)
    for out in (cohort, cohort / "results"):
        res = medseg_batch(cohort, "-o", out)
        _ok(res, 2)
        assert "refusing to write -o OUTDIR" in res.stderr
    assert digests(cohort) == before
    assert not (cohort / "results").exists()


@pytest.mark.slow
def test_interrupt_then_resume(tmp_path, phantom_files):
    cohort = tmp_path / "cohort"
    write_phantom_cohort(cohort, shapes=[(24, 96, 96)] * 8, first_seed=20)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "napari_medseg.cli", "batch", str(cohort),
                             "-o", str(out), "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.time() + 240
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("[2/8]"):
            proc.send_signal(signal.SIGINT)  # Ctrl-C
            break
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(lines) + stderr
    assert "rerun the same command to resume" in stderr
    partial = read_rows(out)
    assert 2 <= len(partial) < 8 and all(r["status"] == "ok" for r in partial.values())
    # every label file present is complete; no temporary file is visible as an output
    for p in (out / "labels").glob("*.nii.gz"):
        read_labels(p)
    res = medseg_batch(cohort, "-o", out, "--workers", "2")
    _ok(res)
    rows = read_rows(out)
    assert len(rows) == 8
    assert all(rows[k]["status"] == "skipped" for k in partial)
    assert sum(r["status"] == "ok" for r in rows.values()) == 8 - len(partial)
    assert not list((out / "labels").glob(".medseg-tmp-*"))


# ---------------------------------------------------------------- --confidence
def _two_cases(cohort: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "two"
    folder.mkdir()
    for p in sorted(cohort.glob("*.nii.gz"))[:2]:
        shutil.copy2(p, folder / p.name)
    return folder


@pytest.mark.slow
def test_confidence_columns_flags_and_resume(cohort, tmp_path, nnunet_model):
    """--confidence adds per-structure figures named like the --stats columns and a review
    column; labels equal a run without it; the thresholds are part of the fingerprint."""
    two = _two_cases(cohort, tmp_path)
    plain, out = tmp_path / "plain", tmp_path / "out"
    _ok(medseg_batch(two, "-o", plain, "--model", nnunet_model, "--workers", "1", "--device", "cpu"))
    _ok(medseg_batch(two, "-o", out, "--model", nnunet_model, "--workers", "1", "--device", "cpu",
                     "--confidence", "--stats"))
    rows, plain_rows = read_rows(out), read_rows(plain)
    names = json.loads((out / "labels" / "case0.json").read_text())
    header = list(next(iter(rows.values())))
    assert "review" in header and "review" not in list(next(iter(plain_rows.values())))
    seen = 0
    for case_id, row in rows.items():
        assert row["status"] == "ok"
        labels = read_labels(out / row["output"])[0].array
        assert np.array_equal(labels, read_labels(plain / plain_rows[case_id]["output"])[0].array)
        flagged = [s for s in row["review"].split("; ") if s]
        for col in header:
            if not col.endswith("_mean_confidence"):
                continue
            name = col[: -len("_mean_confidence")]
            assert f"{name}_ml" in header  # same naming as --stats
            if row[col] == "":  # absent structure: no figures, and a volume of 0
                assert float(row[f"{name}_ml"]) == 0 and row[f"{name}_review"] == ""
                continue
            seen += 1
            mean, below = float(row[col]), float(row[f"{name}_fraction_below"])
            boundary = float(row[f"{name}_boundary_confidence"])
            assert 0.25 - 1e-6 <= mean <= 1 and 0 <= below <= 1 and 0.25 - 1e-6 <= boundary <= 1
            assert (row[f"{name}_review"] == "True") == (name in flagged)
            # the defaults: flagged exactly when a figure crosses its threshold
            assert (name in flagged) == (mean < 0.85 or below > 0.25 or boundary < 0.7)
    assert seen > 0 and names
    # same command: every case is skipped, the figures are kept
    res = medseg_batch(two, "-o", out, "--model", nnunet_model, "--workers", "1", "--device", "cpu",
                       "--confidence", "--stats")
    _ok(res)
    again = read_rows(out)
    assert [r["status"] for r in again.values()] == ["skipped"] * 2
    assert [r["review"] for r in again.values()] == [r["review"] for r in rows.values()]
    # a threshold no structure can pass flags every present structure, and reruns the cases
    _ok(medseg_batch(two, "-o", out, "--model", nnunet_model, "--workers", "1", "--device", "cpu",
                     "--confidence", "--review-threshold", "mean=1"))
    strict = read_rows(out)
    assert [r["status"] for r in strict.values()] == ["ok"] * 2
    for row in strict.values():
        present = [c[: -len("_mean_confidence")] for c in row
                   if c.endswith("_mean_confidence") and row[c] != "" and float(row[c]) < 1]
        assert present and set(row["review"].split("; ")) >= set(present)


def test_confidence_mistakes_refused_before_any_case(cohort, tmp_path):
    out = tmp_path / "out"
    res = medseg_batch(cohort, "-o", out, "--confidence")  # hu-tissue: no probabilities
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "--confidence" in res.stderr and "hu-tissue" in res.stderr and "probabilities" in res.stderr
    res = medseg_batch(cohort, "-o", out, "--temperature", "1.5")
    assert res.returncode == 2 and "--confidence" in res.stderr
    res = medseg_batch(cohort, "-o", out, "--confidence", "--review-threshold", "mean=2")
    assert res.returncode == 2 and "mean" in res.stderr and "Traceback" not in res.stderr
    assert not (out / "results.csv").exists() and not (out / "labels").exists()


@pytest.mark.slow
def test_runtime_reaches_the_workers_and_the_fingerprint(cohort, tmp_path, nnunet_model):
    """--runtime goes to each worker (OpenVINO converts there: its cache fills) and into
    the settings fingerprint (another runtime reruns the done cases); a wrong name is
    refused by the parser."""
    pytest.importorskip("openvino")
    two = _two_cases(cohort, tmp_path)
    out, cache = tmp_path / "out", tmp_path / "compiled"
    env = {"MEDSEG_COMPILED_DIR": str(cache)}
    args = (two, "-o", out, "--model", nnunet_model, "--workers", "1", "--device", "cpu")
    _ok(medseg_batch(*args, "--runtime", "torch", env=env))
    first = read_rows(out)
    assert json.loads((out / "run.json").read_text())["settings"]["runtime"] == "torch"
    assert not cache.exists() or not list(cache.glob("*.xml"))
    _ok(medseg_batch(*args, "--runtime", "torch", env=env))
    assert [r["status"] for r in read_rows(out).values()] == ["skipped"] * 2
    _ok(medseg_batch(*args, "--runtime", "openvino", env=env))
    rows = read_rows(out)
    assert [r["status"] for r in rows.values()] == ["ok"] * 2
    assert rows["case0"]["fingerprint"] != first["case0"]["fingerprint"]
    assert list(cache.glob("*.xml")), "the worker did not compile the network with OpenVINO"
    for case_id in rows:
        ov_labels = read_labels(out / rows[case_id]["output"])[0]
        assert ov_labels.shape == read_volume(rows[case_id]["input"]).shape
    bad = medseg_batch(*args[:2], tmp_path / "bad", "--runtime", "onnx")
    assert bad.returncode == 2 and "invalid choice: 'onnx'" in bad.stderr
