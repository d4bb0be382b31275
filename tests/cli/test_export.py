"""``medseg export`` in use: DICOM-SEG written from a segmentation and back, and outputs that would overwrite inputs."""

import shutil

import numpy as np
import pydicom
import pytest

from napari_medseg.io import LabelTable, read_labels, read_volume
from napari_medseg.testing.dicom_seg import raw_segments, three_objects

from ._run import digest, medseg, refused


def _medseg(*args, cwd):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "napari_medseg.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_cli_segment_then_export_writes_what_it_reports(ct3, tmp_path):
    """The user's path: `medseg segment DICOMDIR -o seg.nii.gz`, then `medseg export` to DICOM-SEG."""
    import re

    folder, ct, _ = ct3
    seg = tmp_path / "tissue.nii.gz"
    run = _medseg("segment", folder, "-o", seg, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = tmp_path / "tissue.dcm"
    run = _medseg("export", seg, "--reference", folder, "-o", out, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    raw = raw_segments(out)
    reported = re.search(r"\((\d+) segment\(s\): ([^)]*)\)", run.stderr)
    assert reported, run.stderr
    assert int(reported.group(1)) == len(raw) and reported.group(2).split(", ") == list(raw)
    labels, _ = read_labels(seg)
    assert len(raw) == len([i for i in np.unique(labels.array) if i > 0]) >= 3
    assert {r["algorithm_type"] for r in raw.values()} == {"AUTOMATIC"}
    assert {r["algorithm_name"] for r in raw.values()} == {"hu-tissue"}
    if "subcutaneous_fat" in raw:
        assert raw["subcutaneous_fat"]["type"] == ("SCT", "67769002", "Subcutaneous fatty tissue")
    if "bone" in raw:
        assert raw["bone"]["type"] == ("SCT", "272673000", "Bone")
    assert raw["body_other"]["type"] == ("SCT", "85756007", "Tissue")  # no published code


def test_cli_export_fills_published_codes_for_known_names(ct3, tmp_path):
    """A TotalSegmentator-named label file without codes (e.g. written by another tool)."""
    from napari_medseg.io import write_labels

    folder, ct, _ = ct3
    arr = three_objects(ct)
    arr[arr >= 40] = 0
    names = LabelTable.from_names({5: "liver", 2: "kidney_right", 23: "kidney_cyst_left", 60: "unused"})
    src = write_labels(ct.with_array(arr, metadata={}), tmp_path / "ts.nii.gz", names)
    out = tmp_path / "ts.dcm"
    run = _medseg("export", src, "--reference", folder, "-o", out, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    raw = raw_segments(out)
    assert "(3 segment(s): kidney_right, liver, kidney_cyst_left)" in run.stderr
    assert len(raw) == 3 and raw["liver"]["type"] == ("SCT", "10200004", "Liver")
    assert raw["liver"]["algorithm_type"] == "MANUAL"  # nobody recorded how it was made


def test_cli_export_converts_dicom_seg_and_back(shared_data, tmp_path, capsys):
    from napari_medseg.cli import main
    from napari_medseg.io.dicom_seg import read_dicom_seg

    folder = shared_data / "dcmqi_ct3slice"
    ct = read_volume(folder)
    seg_nrrd = tmp_path / "liver.seg.nrrd"
    assert main(["export", str(folder / "liver.dcm"), "--reference", str(folder), "-o", str(seg_nrrd)]) == 0
    labels, table = read_labels(seg_nrrd, reference=ct)
    assert table.names == {1: "Liver"} and labels.array.sum() == 107098
    dcm = tmp_path / "again.dcm"
    assert main(["export", str(seg_nrrd), "--reference", str(folder), "-o", str(dcm)]) == 0
    back, _ = read_dicom_seg(dcm, reference=ct)
    np.testing.assert_array_equal(back.array, labels.array)
    # DICOM-SEG without a DICOM reference: one-line error, exit 2, nothing written
    assert main(["export", str(seg_nrrd), "-o", str(tmp_path / "no.dcm")]) == 2
    assert "must reference the DICOM series" in capsys.readouterr().err
    assert not (tmp_path / "no.dcm").exists()
    assert main(["export", str(seg_nrrd), "-o", str(tmp_path / "x.png")]) == 2


def test_cli_export_labelmap_seg_and_seg_type_only_for_dcm(shared_data, tmp_path, capsys):
    import pydicom

    from napari_medseg.cli import main
    from napari_medseg.io.dicom_seg import read_dicom_seg

    folder = shared_data / "dcmqi_ct3slice"
    ct = read_volume(folder)
    out = tmp_path / "liver_lm.dcm"
    assert main(["export", str(folder / "liver_seg.nrrd"), "--reference", str(folder), "-o", str(out),
                 "--seg-type", "labelmap"]) == 0
    ds = pydicom.dcmread(out, stop_before_pixels=True)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.7" and ds.SegmentationType == "LABELMAP"
    ref, _ = read_labels(folder / "liver_seg.nrrd", reference=ct)
    back, _ = read_dicom_seg(out, reference=ct)
    np.testing.assert_array_equal(back.array, ref.array)
    capsys.readouterr()
    # --seg-type with another format is an option that would not be used: refused, nothing written
    assert main(["export", str(folder / "liver_seg.nrrd"), "-o", str(tmp_path / "l.nii.gz"),
                 "--seg-type", "labelmap"]) == 2
    assert "--seg-type applies to DICOM-SEG" in capsys.readouterr().err
    assert not (tmp_path / "l.nii.gz").exists()


# --- bad input and faults


def test_export_over_its_labels_is_refused(work):
    before = digest(work / "labels.nii.gz")
    refused(medseg("export", "labels.nii.gz", "-o", "labels.nii.gz", cwd=work), "labels.nii.gz")
    refused(medseg("export", "labels.nii.gz", "--reference", "a.nii.gz", "-o", "a/../a.nii.gz",
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
    refused(res, "inside the input folder")
    assert sorted(p.name for p in series.iterdir()) == before
    res = medseg("lesions", series, "--labels", shared_data / "dcmqi_ct3slice" / "liver_seg.nrrd",
                 "-o", series / "results")
    refused(res, "inside the input folder")
    assert not (series / "results").exists()
