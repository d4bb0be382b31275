"""Item 9 of issue 11: the command line with the mistakes users make, run as users run it.

Every test starts ``medseg`` in a subprocess: pipes closed early, negative coordinates,
options the model does not use, misspelt structures, the wrong kind of image, and clicks
that grow implausible objects.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ._run import digest, medseg


def _one_line_error(res, *fragments):
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    for fragment in fragments:
        assert fragment in res.stderr, res.stderr


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


# ------------------------------------------------------------------- coordinates
def test_negative_point_gets_the_image_shape_not_argparse(sample, tmp_path):
    res = medseg("prompt", sample["ct"], "-o", tmp_path / "m.nii.gz", "--point", "-1,52,91")
    _one_line_error(res, "--point -1,52,91 lies outside the image", "axis z must be in 0..23",
                    "image shape z,y,x = 24,80,80")
    assert "expected one argument" not in res.stderr
    assert not (tmp_path / "m.nii.gz").exists()


def test_negative_box_and_negative_click(sample, tmp_path):
    res = medseg("prompt", sample["ct"], "-o", tmp_path / "m.nii.gz",
                 "--box", "-2,-3,-4,10,40,40")
    _one_line_error(res, "--box corner -2,-3,-4 lies outside the image")
    res = medseg("prompt", sample["ct"], "-o", tmp_path / "m.nii.gz", "--point", "12,40,40",
                 "--negative", "-5,40,40")
    _one_line_error(res, "--negative -5,40,40 lies outside the image")


def test_point_inside_the_image_still_runs(sample, tmp_path):
    res = medseg("prompt", sample["ct"], "-o", tmp_path / "m.nii.gz", "--point=12,40,40")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "m.nii.gz").is_file()


# ---------------------------------------------------------------- silent options
def test_hu_tissue_refuses_weights_and_gpu_devices(sample, tmp_path):
    out = tmp_path / "seg.nii.gz"
    _one_line_error(medseg("segment", sample["ct"], "-o", out, "--weights", tmp_path),
                    "'hu-tissue' model needs no weights")
    for device in ("cuda", "mps"):
        _one_line_error(medseg("segment", sample["ct"], "-o", out, "--device", device),
                        "runs on the CPU only", f"device '{device}' does not apply")
    assert not out.exists()
    assert medseg("segment", sample["ct"], "-o", out, "--device", "cpu").returncode == 0


def test_region_growing_refuses_weights_and_gpu_devices(sample, tmp_path):
    out = tmp_path / "m.nii.gz"
    _one_line_error(medseg("prompt", sample["ct"], "-o", out, "--point", "12,40,40",
                           "--weights", tmp_path), "needs no weights")
    _one_line_error(medseg("prompt", sample["ct"], "-o", out, "--point", "12,40,40",
                           "--device", "cuda"), "runs on the CPU only")
    assert not out.exists()


def test_missing_gpu_is_refused_for_network_models(sample, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: --device cuda is legitimately accepted")
    res = medseg("segment", sample["ct"], "-o", tmp_path / "s.nii.gz", "--model", "total-fast",
                 "--device", "cuda")
    _one_line_error(res, "no CUDA GPU is usable here", "cpu")


def test_lesions_with_labels_refuses_unused_model_options(sample, tmp_path):
    res = medseg("lesions", sample["ct"], "--labels", sample["labels"], "-o", tmp_path / "r",
                 "--weights", tmp_path, "--device", "cpu")
    _one_line_error(res, "--weights, --device would not be used")
    assert not (tmp_path / "r").exists()
    ok = medseg("lesions", sample["ct"], "--labels", sample["labels"], "-o", tmp_path / "r")
    assert ok.returncode == 0, ok.stderr


def test_wrong_roi_name_lists_the_valid_names(sample, tmp_path):
    res = medseg("segment", sample["ct"], "-o", tmp_path / "s.nii.gz", "--roi-subset", "lnug,fat")
    _one_line_error(res, "'lnug'; did you mean 'lung'?", "Valid names (7):", "subcutaneous_fat",
                    "visceral_fat", "skeletal_muscle")


# ------------------------------------------------------------ wrong kind of image
def test_hu_tissue_refuses_a_label_map(sample, tmp_path):
    res = medseg("segment", sample["labels"], "-o", tmp_path / "s.nii.gz")
    _one_line_error(res, "looks like a label map, not a CT", "18 distinct whole values")
    assert not (tmp_path / "s.nii.gz").exists()


def test_hu_tissue_refuses_values_that_are_not_hu(sample, tmp_path):
    from napari_medseg.io import read_volume, write_volume

    ct = read_volume(sample["ct"])
    mr_like = ct.with_array(((ct.array.astype(np.float32) + 1024.0) * 2.7).astype(np.float32))
    write_volume(mr_like, tmp_path / "t1.nii.gz")
    res = medseg("segment", tmp_path / "t1.nii.gz", "-o", tmp_path / "s.nii.gz")
    _one_line_error(res, "does not look like a CT in Hounsfield units", "MR")
    # a DICOM MR names its modality: refused with a pointer to what does work on MR
    from napari_medseg.errors import InvalidInputError
    from napari_medseg.inference.segment import segment

    with pytest.raises(InvalidInputError, match="is MR. For MRI use the interactive backends"):
        segment(ct.with_array(mr_like.array, modality="MR"), "hu-tissue")


def test_hu_tissue_refuses_the_real_label_map(shared_data, tmp_path):
    res = medseg("segment", shared_data / "totalseg_example" / "example_seg.nii.gz",
                 "-o", tmp_path / "s.nii.gz")
    _one_line_error(res, "looks like a label map")


# ------------------------------------------------------------------------ timings
def test_total_s_is_the_whole_command(shared_data, tmp_path):
    ct = shared_data / "totalseg_example" / "example_ct_sm.nii.gz"
    before = digest(ct)
    res = medseg("segment", ct, "-o", tmp_path / "s.nii.gz", "--json")
    assert res.returncode == 0, res.stderr
    t = json.loads(res.stdout)["timings"]
    stages = t["read_s"] + t["segment_s"] + t["write_s"]
    assert t["total_s"] >= stages - 0.003  # rounding of four numbers to 1 ms
    assert t["read_s"] > 0 and t["write_s"] > 0 and t["segment_s"] > 0
    assert digest(ct) == before


def test_prompt_total_s_covers_every_stage(sample, tmp_path):
    res = medseg("prompt", sample["ct"], "-o", tmp_path / "m.nii.gz", "--point", "12,40,40", "--json")
    assert res.returncode == 0, res.stderr
    t = json.loads(res.stdout)["timings"]
    parts = t["read_s"] + t["setup_s"] + t["write_s"] + sum(i["seconds"] for i in t["interactions"])
    assert t["total_s"] >= parts - 0.005


# ------------------------------------------------------------- click plausibility
def _liver_voxel(sample):
    from napari_medseg.io import read_volume

    labels = read_volume(sample["labels"]).array
    idx = np.argwhere(labels == 1)
    centre = idx.mean(axis=0)
    return idx[np.argmin(((idx - centre) ** 2).sum(axis=1))]


def test_click_in_the_liver_is_echoed_without_warning(sample, tmp_path):
    z, y, x = _liver_voxel(sample)
    res = medseg("prompt", sample["ct"], "-o", tmp_path / "m.nii.gz", "--point", f"{z},{y},{x}",
                 "--json")
    assert res.returncode == 0, res.stderr
    click = json.loads(res.stdout)["click"]
    assert click["point_zyx"] == [int(z), int(y), int(x)] and click["unit"] == "HU"
    assert click["tissue"] == "soft tissue" and -30 < click["value"] < 150
    assert click["plausible"] is True and click["warnings"] == []
    assert len(click["position_mm_xyz"]) == 3
    assert "warning" not in res.stderr
    text = medseg("prompt", sample["ct"], "-o", tmp_path / "m2.nii.gz", "--point", f"{z},{y},{x}")
    assert "clicked voxel z,y,x" in text.stdout and "HU (soft tissue)" in text.stdout


def test_click_on_air_that_floods_the_background_warns(sample, tmp_path):
    res = medseg("prompt", sample["ct"], "-o", tmp_path / "m.nii.gz", "--point", "12,2,2", "--json")
    assert res.returncode == 0, res.stderr
    click = json.loads(res.stdout)["click"]
    assert click["tissue"] == "air" and click["plausible"] is False
    assert any("borders" in w for w in click["warnings"])
    assert "medseg prompt: warning:" in res.stderr  # seen by a person even with --json
    text = medseg("prompt", sample["ct"], "-o", tmp_path / "m2.nii.gz", "--point", "12,2,2")
    assert "warning:" in text.stdout


# ------------------------------------------------------------------- weights text
def test_weights_list_says_what_the_checksum_check_is(tmp_path):
    import os

    env = dict(os.environ, MEDSEG_WEIGHTS_DIR=str(tmp_path / "cache"))
    res = subprocess.run([sys.executable, "-m", "napari_medseg.cli", "weights", "list", "--json"],
                         capture_output=True, text=True, env=env)
    rows = {r["name"]: r for r in json.loads(res.stdout)["models"]}
    assert "first download is not verified" in rows["total"]["checksum"]
    assert "trust on first use" in rows["total"]["checksum"]
    assert rows["hu-tissue"]["checksum"].startswith("no weights")
