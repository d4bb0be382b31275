"""Case discovery of the cohort runner (:mod:`napari_medseg.batch.cases`): folders, globs, ids."""

from __future__ import annotations

import shutil

import pytest

from napari_medseg.batch import discover_cases
from napari_medseg.errors import InvalidInputError


def test_discovery_folder_glob_and_ids(cohort, tmp_path, shared_data):
    series = cohort / "patient7"
    shutil.copytree(shared_data / "dcmqi_ct3slice", series)
    (cohort / ".hidden.nii.gz").write_bytes(b"x")
    (cohort / "case0.json").write_text("{}")
    cases, notes = discover_cases(cohort)
    assert [c.case_id for c in cases] == ["case0", "case1", "case2", "case3", "patient7"]
    assert all(c.problem is None for c in cases)
    globbed, _ = discover_cases(str(cohort / "case[12].nii.gz"))
    assert [c.case_id for c in globbed] == ["case1", "case2"]
    with pytest.raises(InvalidInputError, match="holds no cases"):
        discover_cases(str(tmp_path / "nothing*.nii.gz"))
    bad = tmp_path / "bad.csv"
    bad.write_text("case_id,path\n../evil,x.nii.gz\n")
    with pytest.raises(InvalidInputError, match="cannot name an output file"):
        discover_cases(bad)
