"""Item 5 of issue 11: no command overwrites one of its inputs, however the path is spelled.

Each test runs ``medseg`` in a subprocess with the mistake a user makes and checks the
refusal (exit 2, one line naming the files, no traceback) and that the input is unchanged
byte for byte.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ._run import digest, medseg


@pytest.fixture
def work(tmp_path, sample):
    """A private copy of the phantom CT and labels (with sidecar) in tmp_path."""
    shutil.copy(sample["ct"], tmp_path / "a.nii.gz")
    shutil.copy(sample["labels"], tmp_path / "labels.nii.gz")
    shutil.copy(sample["label_names"], tmp_path / "labels.json")
    (tmp_path / "a").mkdir()
    return tmp_path


def _refused(res, *names):
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    assert "refusing to write" in res.stderr and "Nothing was written" in res.stderr
    for name in names:
        assert name in res.stderr


@pytest.mark.parametrize("spelling", ["a.nii.gz", "./a/../a.nii.gz", "link.nii.gz", "hard.nii.gz",
                                      "{abs}"])
def test_segment_output_equal_to_input_is_refused(work, spelling):
    (work / "link.nii.gz").symlink_to(work / "a.nii.gz")
    os.link(work / "a.nii.gz", work / "hard.nii.gz")
    before = digest(work / "a.nii.gz")
    out = spelling.format(abs=work / "a.nii.gz")
    res = medseg("segment", "a.nii.gz", "-o", out, cwd=work)
    _refused(res, "a.nii.gz")
    assert digest(work / "a.nii.gz") == before
    assert (work / "link.nii.gz").is_symlink()  # the link itself was not replaced either
    assert not list(work.glob(".medseg-tmp-*"))


def test_segment_through_a_symlinked_input_is_refused(work):
    (work / "link.nii.gz").symlink_to(work / "a.nii.gz")
    before = digest(work / "a.nii.gz")
    _refused(medseg("segment", "link.nii.gz", "-o", "a.nii.gz", cwd=work), "symbolic link")
    assert digest(work / "a.nii.gz") == before


def test_segment_to_another_file_still_works(work):
    before = digest(work / "a.nii.gz")
    res = medseg("segment", "a.nii.gz", "-o", "a_labels.nii.gz", cwd=work)
    assert res.returncode == 0, res.stderr
    assert (work / "a_labels.nii.gz").is_file() and digest(work / "a.nii.gz") == before


def test_prompt_over_its_image_is_refused(work):
    before = digest(work / "a.nii.gz")
    res = medseg("prompt", "a.nii.gz", "-o", "./a.nii.gz", "--point", "12,40,40", cwd=work)
    _refused(res, "a.nii.gz")
    assert digest(work / "a.nii.gz") == before


def test_stats_csv_over_the_labels_sidecar_is_refused(work):
    before = digest(work / "labels.json")
    res = medseg("stats", "a.nii.gz", "labels.nii.gz", "--csv", "labels.json", cwd=work)
    _refused(res, "labels.json", "--csv")
    assert digest(work / "labels.json") == before
    res = medseg("stats", "a.nii.gz", "labels.nii.gz", "--csv", "a.nii.gz", cwd=work)
    _refused(res, "a.nii.gz")


def test_export_over_its_labels_is_refused(work):
    before = digest(work / "labels.nii.gz")
    _refused(medseg("export", "labels.nii.gz", "-o", "labels.nii.gz", cwd=work), "labels.nii.gz")
    _refused(medseg("export", "labels.nii.gz", "--reference", "a.nii.gz", "-o", "a/../a.nii.gz",
                    cwd=work), "a.nii.gz")
    assert digest(work / "labels.nii.gz") == before


def test_export_into_a_dicom_input_folder_is_refused(tmp_path, shared_data):
    series = tmp_path / "series"
    series.mkdir()
    for f in sorted((shared_data / "dcmqi_ct3slice").glob("ct-3slice_*.dcm")):
        shutil.copy(f, series / f.name)
    before = sorted(p.name for p in series.iterdir())
    res = medseg("export", shared_data / "dcmqi_ct3slice" / "liver_seg.nrrd", "--reference", series,
                 "-o", series / "seg.nii.gz")
    _refused(res, "inside the input folder")
    assert sorted(p.name for p in series.iterdir()) == before
    res = medseg("lesions", series, "--labels", shared_data / "dcmqi_ct3slice" / "liver_seg.nrrd",
                 "-o", series / "results")
    _refused(res, "inside the input folder")
    assert not (series / "results").exists()


def test_lesions_outputs_over_inputs_are_refused(work):
    # lesions writes OUTDIR/lesions.json: an input of that name in OUTDIR would be lost
    shutil.copy(work / "labels.nii.gz", work / "a" / "lesions.json")
    before = digest(work / "a" / "lesions.json")
    res = medseg("lesions", "a.nii.gz", "--labels", "a/lesions.json", "-o", "a", cwd=work)
    _refused(res, "lesions.json")
    assert digest(work / "a" / "lesions.json") == before


def test_train_output_inside_the_training_images_is_refused(tmp_path):
    data = tmp_path / "data"
    (data / "imagesTr").mkdir(parents=True)
    (data / "labelsTr").mkdir()
    res = medseg("train", "liver-lesion", "--data", data, "--out", data / "imagesTr")
    _refused(res, "imagesTr")
    assert list((data / "imagesTr").iterdir()) == []


def test_weights_import_never_deletes_its_source(tmp_path):
    """Importing (linking) weights that lie inside the folder the import replaces."""
    import subprocess
    import sys

    from napari_medseg.models.registry import get_card

    card = get_card("total-fast")
    cache = tmp_path / "cache"
    dataset = card.files[0].target
    # a user's copy kept inside the cached dataset folder the import would replace
    mine = cache / "totalsegmentator" / dataset / "my-copy"
    model = mine / dataset / card.model_folder_name
    (model / "fold_0").mkdir(parents=True)
    (model / "dataset.json").write_text("{}")
    (model / "plans.json").write_text("{}")
    (model / "fold_0" / "checkpoint_final.pth").write_bytes(b"weights")
    env = dict(os.environ, MEDSEG_WEIGHTS_DIR=str(cache), TOTALSEG_WEIGHTS_PATH=str(tmp_path / "none"))
    res = subprocess.run([sys.executable, "-m", "napari_medseg.cli", "weights", "import",
                          "total-fast", mine, "--link"], capture_output=True, text=True, env=env)
    _refused(res, "would be lost")
    assert (model / "fold_0" / "checkpoint_final.pth").read_bytes() == b"weights"
