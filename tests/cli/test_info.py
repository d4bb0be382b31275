"""``medseg info`` in a subprocess: what a path holds (the napari reader's decision) and its geometry."""

from __future__ import annotations

import json
import shutil

import numpy as np

from napari_medseg.testing.volumes import write_dicom_series
from napari_medseg.testing.volumes import oblique_volume

from ._run import medseg


def test_info_says_image_or_label_map_with_its_classes(sample):
    res = medseg("info", sample["ct"])
    assert res.returncode == 0, res.stderr
    assert "content   : image\n" in res.stdout and "modality  : unknown" in res.stdout  # NIfTI has no modality field
    res = medseg("info", sample["labels"])
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if "content" in ln)
    assert "label map" in line and "(names from sidecar)" in line and "liver" in line
    doc = json.loads(medseg("info", sample["labels"], "--json").stdout)  # the JSON document is unchanged
    assert set(doc) == {"shape_zyx", "spacing_xyz", "origin_xyz", "direction", "dtype", "modality"}


def test_info_reads_dicom_files_without_extension(tmp_path):
    """PACS exports name files IM0001...: info reads them by content, and the folder too."""
    info = write_dicom_series(tmp_path / "series", n=3, dz=2.0)
    pacs = tmp_path / "pacs"
    pacs.mkdir()
    for k, f in enumerate(info["files"]):
        shutil.copy(f, pacs / f"IM{k + 1:04d}")
    for target in (pacs / "IM0002", pacs):
        res = medseg("info", target)
        assert res.returncode == 0, res.stderr
        assert f"content   : DICOM image series {info['uid']}, 3 files" in res.stdout
        assert "5 x 6 x 3 voxels (x, y, z)" in res.stdout and "modality  : CT" in res.stdout
        doc = json.loads(medseg("info", target, "--json").stdout)
        assert doc["shape_zyx"] == [3, 6, 5] and doc["spacing_xyz"] == [0.6, 0.5, 2.0]  # PixelSpacing is (row, column)


def test_info_refuses_what_it_cannot_read_with_a_clear_message(tmp_path):
    (tmp_path / "IM0001").write_bytes(b"\0" * 200)  # no DICOM preamble, no extension
    res = medseg("info", tmp_path / "IM0001")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "IM0001 is not in a format napari-medseg reads" in res.stderr
    assert "this one has no DICOM preamble" in res.stderr
    res = medseg("info", tmp_path / "missing.nii.gz")
    assert res.returncode == 2 and "missing.nii.gz: no such file or folder" in res.stderr


def test_info_on_a_dicom_seg_describes_its_segments(tmp_path):
    from napari_medseg.io import LabelTable, read_volume
    from napari_medseg.io.dicom_seg import write_dicom_seg

    write_dicom_series(tmp_path / "series", n=3)
    ct = read_volume(tmp_path / "series")
    arr = np.zeros(ct.shape, np.uint8)
    arr[1, 2:4, 1:3] = 3
    write_dicom_seg(ct.with_array(arr), LabelTable.from_names({3: "spleen"}), ct, tmp_path / "series" / "seg.dcm")
    res = medseg("info", tmp_path / "series" / "seg.dcm")
    assert res.returncode == 0, res.stderr
    assert "content   : DICOM Segmentation (DICOM-SEG), 1 class: spleen" in res.stdout
    assert "5 x 6 x 3 voxels" in res.stdout  # on the grid of its series


def test_cli_info_json_and_text(tmp_path, capsys):
    from napari_medseg.cli import main
    from napari_medseg.io import write_volume

    vol = oblique_volume()
    write_volume(vol, tmp_path / "ct.nrrd")
    assert main(["info", str(tmp_path / "ct.nrrd"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"shape_zyx", "spacing_xyz", "origin_xyz", "direction", "dtype", "modality"}
    assert doc["shape_zyx"] == [5, 6, 7] and doc["dtype"] == "int16" and doc["modality"] == "CT"
    np.testing.assert_allclose(doc["direction"], vol.direction, atol=1e-12)
    assert doc["spacing_xyz"] == [0.7, 0.93, 2.5]
    assert main(["info", str(tmp_path / "ct.nrrd")]) == 0
    out = capsys.readouterr().out
    assert "7 x 6 x 5 voxels (x, y, z)" in out and "modality  : CT" in out
    assert main(["info", str(tmp_path / "missing.nii.gz")]) == 2
    assert "missing.nii.gz: no such file or folder" in capsys.readouterr().err
