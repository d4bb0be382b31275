"""Item 5 of issue 11: no command overwrites one of its inputs, however the path is spelled.

Each test runs ``medseg`` in a subprocess with the mistake a user makes and checks the
refusal (exit 2, one line naming the files, no traceback) and that the input is unchanged
byte for byte.
"""


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
