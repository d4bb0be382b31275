"""io.paths.check_outputs: an output that is, links to, or lies inside an input is refused."""

from __future__ import annotations

import os

import pytest

from napari_medseg.errors import InvalidInputError
from napari_medseg.io.paths import check_outputs, input_files


@pytest.fixture
def ct(tmp_path):
    path = tmp_path / "a.nii.gz"
    path.write_bytes(b"not really a CT, but bytes that must survive")
    return path


def test_same_path_refused_with_what_which_and_what_to_do(ct):
    with pytest.raises(InvalidInputError) as info:
        check_outputs([ct], [ct], what="-o/--output")
    text = str(info.value)
    assert "refusing to write -o/--output" in text and str(ct) in text
    assert "Nothing was written" in text and "a_out.nii.gz" in text


def test_relative_and_dotdot_forms_refused(ct, monkeypatch):
    (ct.parent / "sub").mkdir()
    monkeypatch.chdir(ct.parent)
    for spelled in ("a.nii.gz", "./a.nii.gz", "sub/../a.nii.gz", str(ct)):
        with pytest.raises(InvalidInputError, match="refusing to write"):
            check_outputs([spelled], ["a.nii.gz"])


def test_symlink_either_way_refused(ct):
    link = ct.parent / "link.nii.gz"
    link.symlink_to(ct)
    with pytest.raises(InvalidInputError, match="symbolic link"):
        check_outputs([link], [ct])
    with pytest.raises(InvalidInputError, match="symbolic link"):
        check_outputs([ct], [link])
    # a symlinked folder leads to the same file too
    folder_link = ct.parent / "via"
    folder_link.symlink_to(ct.parent, target_is_directory=True)
    with pytest.raises(InvalidInputError):
        check_outputs([folder_link / "a.nii.gz"], [ct])


def test_hard_link_refused(ct):
    hard = ct.parent / "hard.nii.gz"
    os.link(ct, hard)
    with pytest.raises(InvalidInputError, match="hard link"):
        check_outputs([hard], [ct])


def test_output_inside_an_input_folder_refused(tmp_path):
    series = tmp_path / "dicom"
    series.mkdir()
    (series / "1.dcm").write_bytes(b"x")
    with pytest.raises(InvalidInputError, match="inside the input folder") as info:
        check_outputs([series / "seg.dcm"], [series])
    # the suggestion points beside the folder, not into it again
    assert str(tmp_path / "seg_out.dcm") in str(info.value)
    with pytest.raises(InvalidInputError):
        check_outputs([series / "deeper" / ".." / "seg.nii.gz"], [series])


def test_output_folder_holding_an_input_refused(tmp_path, ct):
    with pytest.raises(InvalidInputError, match="would be lost"):
        check_outputs([ct.parent], [ct])


def test_companions_of_inputs_are_protected(tmp_path):
    labels = tmp_path / "labels.nii.gz"
    labels.write_bytes(b"labels")
    sidecar = tmp_path / "labels.json"
    sidecar.write_text("{}")
    header = tmp_path / "img.mhd"
    header.write_text("NDims = 3\nElementDataFile = img.raw\n")
    (tmp_path / "img.raw").write_bytes(b"raw")
    assert sidecar in input_files(labels)
    assert tmp_path / "img.raw" in input_files(header)
    with pytest.raises(InvalidInputError, match="labels.json"):
        check_outputs([sidecar], [labels], what="--csv")
    with pytest.raises(InvalidInputError, match="img.raw"):
        check_outputs([tmp_path / "img.raw"], [header])


def test_distinct_outputs_pass_and_none_is_skipped(ct, tmp_path):
    check_outputs([tmp_path / "b.nii.gz", None, ""], [ct, None])
    check_outputs([tmp_path / "new" / "a.nii.gz"], [ct])  # same name, other folder
    assert ct.read_bytes() == b"not really a CT, but bytes that must survive"
