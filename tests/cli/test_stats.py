"""``medseg stats``: the CSV never overwrites an input."""

from __future__ import annotations

import json

from ._run import digest, medseg, refused


# --- bad input and faults


def test_stats_csv_over_the_labels_sidecar_is_refused(work):
    before = digest(work / "labels.json")
    res = medseg("stats", "a.nii.gz", "labels.nii.gz", "--csv", "labels.json", cwd=work)
    refused(res, "labels.json", "--csv")
    assert digest(work / "labels.json") == before
    res = medseg("stats", "a.nii.gz", "labels.nii.gz", "--csv", "a.nii.gz", cwd=work)
    refused(res, "a.nii.gz")


# --- N4 bias-field correction (MR)
def test_stats_bias_correct_on_mr(mr_sample, tmp_path):
    plain = medseg("stats", mr_sample["t1"], mr_sample["labels"], "--json")
    res = medseg("stats", mr_sample["t1"], mr_sample["labels"], "--json", "--bias-correct")
    assert plain.returncode == 0 and res.returncode == 0, res.stderr
    assert "N4 bias-field corrected" in res.stderr
    before = {r["name"]: r for r in json.loads(plain.stdout)}
    after = {r["name"]: r for r in json.loads(res.stdout)}
    assert before.keys() == after.keys()
    # sizes do not change; the intensities are the corrected ones, on the image's own scale
    # (that they vary less inside an organ is tested on a realistic field of view in
    # tests/inference/test_bias_field.py: this 6 cm sample is too small to show it)
    for name in ("liver", "subcutaneous_fat", "muscle"):
        b, a = before[name], after[name]
        assert a["voxels"] == b["voxels"] and a["bbox"] == b["bbox"]
        assert a["mean"] != b["mean"] and abs(a["mean"] / b["mean"] - 1) < 0.1, name


def test_stats_bias_correct_refuses_ct(work):
    res = medseg("stats", "a.nii.gz", "labels.nii.gz", "--bias-correct", cwd=work)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "this image is CT" in res.stderr and "turn bias correction off" in res.stderr
