"""``medseg prompt``: masks with the image's geometry, negative coordinates, click plausibility, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_medseg.cli import main
from napari_medseg.io import read_volume, write_volume
from napari_medseg.io.volume import Volume

from ._run import digest, medseg, refused


# --- bad input and faults


def _one_line_error(res, *fragments):
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    for fragment in fragments:
        assert fragment in res.stderr, res.stderr


# ------------------------------------------------------------- click plausibility
def _liver_voxel(sample):
    from napari_medseg.io import read_volume

    labels = read_volume(sample["labels"]).array
    idx = np.argwhere(labels == 1)
    centre = idx.mean(axis=0)
    return idx[np.argmin(((idx - centre) ** 2).sum(axis=1))]


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


def test_region_growing_refuses_weights_and_gpu_devices(sample, tmp_path):
    out = tmp_path / "m.nii.gz"
    _one_line_error(medseg("prompt", sample["ct"], "-o", out, "--point", "12,40,40",
                           "--weights", tmp_path), "needs no weights")
    _one_line_error(medseg("prompt", sample["ct"], "-o", out, "--point", "12,40,40",
                           "--device", "cuda"), "runs on the CPU only")
    assert not out.exists()


def test_prompt_total_s_covers_every_stage(sample, tmp_path):
    res = medseg("prompt", sample["ct"], "-o", tmp_path / "m.nii.gz", "--point", "12,40,40", "--json")
    assert res.returncode == 0, res.stderr
    t = json.loads(res.stdout)["timings"]
    parts = t["read_s"] + t["setup_s"] + t["write_s"] + sum(i["seconds"] for i in t["interactions"])
    assert t["total_s"] >= parts - 0.005


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


# --- bad input and faults


def test_prompt_over_its_image_is_refused(work):
    before = digest(work / "a.nii.gz")
    res = medseg("prompt", "a.nii.gz", "-o", "./a.nii.gz", "--point", "12,40,40", cwd=work)
    refused(res, "a.nii.gz")
    assert digest(work / "a.nii.gz") == before


@pytest.fixture()
def sphere_file(tmp_path):
    from tests.prompts.test_region_growing import _sphere_volume

    volume, ref, centre = _sphere_volume()
    volume = Volume(volume.array, spacing=volume.spacing, origin=(10.0, -20.0, 33.0),
                    direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1), modality="CT")
    path = tmp_path / "ct.nii.gz"
    write_volume(volume, path)
    return path, ref, centre


def test_cli_prompt_writes_mask_with_geometry(sphere_file, tmp_path, capsys):
    path, ref, centre = sphere_file
    out = tmp_path / "mask.nii.gz"
    rc = main(["prompt", str(path), "-o", str(out), "--point", ",".join(map(str, centre)),
               "--label", "3", "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    mask = read_volume(out)
    source = read_volume(path)
    assert mask.same_grid(source)
    assert mask.array.dtype == np.uint8
    assert set(np.unique(mask.array)) == {0, 3}
    got = mask.array == 3
    assert 2 * (got & ref).sum() / (got.sum() + ref.sum()) > 0.85
    assert report["voxels"] == int(got.sum())
    assert report["timings"]["setup_s"] >= 0
    assert len(report["timings"]["interactions"]) == 1


def test_cli_prompt_negative_and_box(sphere_file, tmp_path, capsys):
    path, ref, centre = sphere_file
    out = tmp_path / "mask.nii.gz"
    z, y, x = centre
    rc = main(["prompt", str(path), "-o", str(out), "--point", f"{z},{y},{x}",
               "--negative", f"{z},{y},{x + 15}", "--box", f"0,0,0,{z + 5},{y + 30},{x + 30}", "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["prompt"] for s in report["timings"]["interactions"]] == ["point", "negative", "box"]
    mask = read_volume(out).array
    assert mask[z, y, x] == 1 and mask[z, y, x + 15] == 0
    assert not mask[z + 6:].any()


# --- bad input and faults


@pytest.fixture()
def small_ct(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.normal(0, 10, (10, 20, 30)).astype(np.int16)
    arr[3:7, 5:15, 5:20] += 100
    volume = Volume(arr, spacing=(1.0, 1.0, 2.0), modality="CT")
    path = tmp_path / "ct.nii.gz"
    write_volume(volume, path)
    return path


CLI_CASES = [
    # (arguments after IMAGE -o OUT, message fragment)
    (["--point", "5,10,40"], "lies outside the image: axis x must be in 0..29"),
    (["--point=-1,10,10"], "lies outside the image: axis z must be in 0..9"),
    (["--point", "5,10"], "--point (z,y,x) must be 3 comma-separated numbers"),
    (["--point", "a,b,c"], "must be 3 comma-separated numbers"),
    (["--point", "5,10,10", "--box", "0,0,0,5,5"], "--box (z0,y0,x0,z1,y1,x1) must be 6"),
    (["--point", "5,10,10", "--box", "0,0,0,50,5,5"], "--box corner"),
    (["--negative", "5,10,10"], "give at least one --point"),
    ([], "give at least one --point"),
    (["--point", "5,10,10", "--label", "300"], "--label must be 1..255"),
    (["--point", "5,10,10", "--model", "nope"], "unknown interactive backend 'nope'"),
    (["--point", "5,10,10", "--weights", "x.pth"], "needs no weights"),
]


@pytest.mark.parametrize("extra, fragment", CLI_CASES)
def test_cli_bad_input(small_ct, tmp_path, capsys, extra, fragment):
    out = tmp_path / "out.nii.gz"
    rc = main(["prompt", str(small_ct), "-o", str(out), *extra])
    err = capsys.readouterr().err
    assert rc == 2
    assert fragment in err
    assert err.count("\n") == 1, "one line, no traceback"
    assert not out.exists() and not list(tmp_path.glob("out*"))


def test_cli_missing_image(tmp_path, capsys):
    rc = main(["prompt", str(tmp_path / "nope.nii.gz"), "-o", str(tmp_path / "o.nii.gz"), "--point", "1,1,1"])
    assert rc == 2
    assert "nope.nii.gz" in capsys.readouterr().err


def test_runtime_option_is_accepted_and_reported(sample, tmp_path):
    """--runtime reaches the session; the weights-free backend has no network: runtime null."""
    res = medseg("prompt", sample["ct"], "-o", tmp_path / "m.nii.gz", "--point", "12,40,40",
                 "--runtime", "torch", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["runtime"] is None
    bad = medseg("prompt", sample["ct"], "-o", tmp_path / "b.nii.gz", "--point", "12,40,40",
                 "--runtime", "tensorrt")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "--runtime" in bad.stderr
    assert not (tmp_path / "b.nii.gz").exists()


# ------------------------------------------------------------ N4 bias correction (MR)
def test_bias_correct_on_mr(mr_sample, tmp_path):
    """The command's mask is the API's bias-corrected session's mask, on the image's grid."""
    from napari_medseg.prompts.factory import make_session

    image = read_volume(mr_sample["t1"])
    click = tuple(int(v) for v in _liver_voxel(mr_sample))
    res = medseg("prompt", mr_sample["t1"], "-o", tmp_path / "m.nii.gz", "--point",
                 ",".join(map(str, click)), "--bias-correct", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    mask = read_volume(tmp_path / "m.nii.gz")
    assert mask.same_grid(image) and out["voxels"] == int((mask.array > 0).sum()) > 0
    session = make_session("region-growing", bias_correct=True)
    session.set_volume(image)
    assert np.array_equal(mask.array > 0, session.add_point(click).mask)


def test_bias_correct_refused_for_ct_and_network_backends(sample, tmp_path):
    res = medseg("prompt", sample["ct"], "-o", tmp_path / "m.nii.gz", "--point", "12,40,40",
                 "--bias-correct")
    _one_line_error(res, "this image is CT")
    res = medseg("prompt", sample["ct"], "-o", tmp_path / "m.nii.gz", "--point", "12,40,40",
                 "--bias-correct", "--model", "nninteractive")
    _one_line_error(res, "applies to the 'region-growing' backend only", "--bias-correct")
    assert not (tmp_path / "m.nii.gz").exists()
