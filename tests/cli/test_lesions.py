"""``medseg lesions``: measure and run, options it does not use, outputs over inputs, grid mismatches."""

from __future__ import annotations

import json
import shutil

import numpy as np

from napari_medseg.io.volume import Volume
from napari_medseg.testing.liver import COARSE, small_phantom

from ._run import digest, medseg, refused


# --- bad input and faults


def _one_line_error(res, *fragments):
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    for fragment in fragments:
        assert fragment in res.stderr, res.stderr


def test_lesions_with_labels_refuses_unused_model_options(sample, tmp_path):
    res = medseg("lesions", sample["ct"], "--labels", sample["labels"], "-o", tmp_path / "r",
                 "--weights", tmp_path, "--device", "cpu")
    _one_line_error(res, "--weights, --device would not be used")
    assert not (tmp_path / "r").exists()
    ok = medseg("lesions", sample["ct"], "--labels", sample["labels"], "-o", tmp_path / "r")
    assert ok.returncode == 0, ok.stderr
    res = medseg("lesions", sample["ct"], "--labels", sample["labels"], "-o", tmp_path / "r2",
                 "--runtime", "openvino")
    _one_line_error(res, "--runtime would not be used")
    assert not (tmp_path / "r2").exists()


# --- bad input and faults


def test_lesions_outputs_over_inputs_are_refused(work):
    # lesions writes OUTDIR/lesions.json: an input of that name in OUTDIR would be lost
    shutil.copy(work / "labels.nii.gz", work / "a" / "lesions.json")
    before = digest(work / "a" / "lesions.json")
    res = medseg("lesions", "a.nii.gz", "--labels", "a/lesions.json", "-o", "a", cwd=work)
    refused(res, "lesions.json")
    assert digest(work / "a" / "lesions.json") == before


def test_lesions_cli_measure_and_run(tmp_path, one_thread, capsys):
    from napari_medseg.cli import main
    from napari_medseg.io import write_labels, write_volume
    from napari_medseg.io.label_table import LabelTable
    from napari_medseg.models.hybrid_liver import DEFAULT_PREPROCESSING, build_model, make_checkpoint, save_checkpoint

    ph = small_phantom(7)
    write_volume(ph.ct, tmp_path / "ct.nii.gz")
    write_labels(ph.ct.with_array(ph.labels), tmp_path / "truth.nii.gz", LabelTable.from_names(ph.names))
    out = tmp_path / "measured"
    assert main(["lesions", str(tmp_path / "ct.nii.gz"), "-o", str(out), "--labels",
                 str(tmp_path / "truth.nii.gz")]) == 0
    assert f"{len(ph.lesions)} lesion(s)" in capsys.readouterr().out
    data = json.loads((out / "lesions.json").read_text())
    assert data["n_lesions"] == len(ph.lesions)
    assert (out / "lesions.csv").read_text().count("\n") == len(ph.lesions) + 1
    assert not (out / "liver_lesions.nii.gz").exists()

    cfg = {"features": 4, "levels": 3, "transformer_layers": 1, "heads": 2}
    pre = dict(DEFAULT_PREPROCESSING, **COARSE)
    save_checkpoint(make_checkpoint(build_model(cfg), build_model(cfg), preprocessing=pre), tmp_path / "tiny.pt")
    out2 = tmp_path / "run"
    assert main(["lesions", str(tmp_path / "ct.nii.gz"), "-o", str(out2), "--weights",
                 str(tmp_path / "tiny.pt"), "--device", "cpu"]) == 0
    from napari_medseg.io import read_labels

    labels, table = read_labels(out2 / "liver_lesions.nii.gz")
    assert labels.shape == ph.ct.shape and table.names[1] == "liver"
    assert (out2 / "lesions.csv").is_file() and (out2 / "lesions.json").is_file()


# --- bad input and faults


def _labels(shape=(6, 12, 12)):
    arr = np.ones(shape, np.uint8)
    arr[2:4, 3:6, 3:6] = 2
    return arr


def _ct(shape=(6, 12, 12)):
    return np.full(shape, 100, np.int16)


def test_lesions_cli_geometry_mismatch_writes_nothing(tmp_path, capsys):
    from napari_medseg.cli import main
    from napari_medseg.io import write_volume

    write_volume(Volume(_ct()), tmp_path / "ct.nii.gz")
    write_volume(Volume(_labels((6, 12, 10))), tmp_path / "lab.nii.gz")
    out = tmp_path / "out"
    assert main(["lesions", str(tmp_path / "ct.nii.gz"), "-o", str(out), "--labels", str(tmp_path / "lab.nii.gz")]) == 2
    assert "voxel grid" in capsys.readouterr().err
    assert not out.exists()


def test_lesions_runtime_openvino_writes_the_labels_torch_writes(tmp_path, monkeypatch):
    import pytest

    pytest.importorskip("openvino")
    from napari_medseg.io import read_labels, write_volume
    from napari_medseg.models.hybrid_liver import save_checkpoint

    from napari_medseg.testing.liver import tiny_checkpoint

    # the subprocesses inherit the environment: an empty cache of compiled networks
    monkeypatch.setenv("MEDSEG_COMPILED_DIR", str(tmp_path / "compiled"))
    ph = small_phantom(7)
    write_volume(ph.ct, tmp_path / "ct.nii.gz")
    save_checkpoint(tiny_checkpoint(ph), tmp_path / "tiny.pt")
    outputs = {}
    for runtime in ("torch", "openvino"):
        res = medseg("lesions", tmp_path / "ct.nii.gz", "-o", tmp_path / runtime, "--weights",
                     tmp_path / "tiny.pt", "--device", "cpu", "--runtime", runtime, "--json", timeout=600)
        assert res.returncode == 0, res.stderr
        assert "PyTorch instead of OpenVINO" not in res.stderr  # no fallback
        ran = json.loads(res.stdout)["metadata"]["runtime"]
        assert ran["requested"] == runtime and ran["used"] == runtime
        outputs[runtime] = read_labels(tmp_path / runtime / "liver_lesions.nii.gz")[0].array
    torch_labels, ov_labels = outputs["torch"], outputs["openvino"]
    assert {1, 2} <= set(np.unique(torch_labels))  # both stages ran
    assert np.mean(ov_labels == torch_labels) >= 0.999
    # both stage networks were converted and cached by the openvino run
    assert len(list((tmp_path / "compiled").glob("openvino-*.xml"))) == 2
