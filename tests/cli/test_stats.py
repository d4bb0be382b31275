"""``medseg stats``: the CSV never overwrites an input."""

from __future__ import annotations

from ._run import digest, medseg, refused


# --- bad input and faults


def test_stats_csv_over_the_labels_sidecar_is_refused(work):
    before = digest(work / "labels.json")
    res = medseg("stats", "a.nii.gz", "labels.nii.gz", "--csv", "labels.json", cwd=work)
    refused(res, "labels.json", "--csv")
    assert digest(work / "labels.json") == before
    res = medseg("stats", "a.nii.gz", "labels.nii.gz", "--csv", "a.nii.gz", cwd=work)
    refused(res, "a.nii.gz")
