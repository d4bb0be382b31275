"""io/formats.py: the one extension list and the detectors every reader and writer use."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from napari_medseg.io import write_labels, write_volume
from napari_medseg.io.formats import (DETACHED, DICOM_SUFFIXES, EXTENSIONS, WRITABLE, WRITABLE_LABELS,
                                      detached_data_file, detect_format, extension_of, has_slicer_segments,
                                      is_dicom_file, is_dicom_seg, is_slicer_segmentation, looks_like_dicom,
                                      strip_extension)
from napari_medseg.testing.volumes import label_volume, oblique_volume, write_dicom_series


SRC = Path(__file__).resolve().parents[2] / "src" / "napari_medseg"
MANIFEST = SRC / "napari.yaml"


def test_manifest_writers_offer_only_writable_extensions():
    """Every extension napari's save dialog offers for the plugin is one its writers write."""
    writers = {w["command"]: w for w in yaml.safe_load(MANIFEST.read_text())["contributions"]["writers"]}
    image = set(writers["napari-medseg.write_image"]["filename_extensions"])
    labels = set(writers["napari-medseg.write_labels"]["filename_extensions"])
    assert image and image <= set(WRITABLE)
    assert labels and labels <= set(WRITABLE_LABELS) and ".seg.nrrd" in labels


def test_extensions_longest_first_and_every_writable_one_is_read():
    keys = list(EXTENSIONS)
    for i, ext in enumerate(keys):  # a longer extension ending in this one must come first
        assert not any(other.endswith(ext) and other != ext for other in keys[i + 1:]), ext
    assert set(WRITABLE_LABELS) <= set(EXTENSIONS)
    assert set(DICOM_SUFFIXES) == {".dcm", ".ima", ".dicom"}
    assert set(DETACHED) <= set(WRITABLE)


@pytest.mark.parametrize("name, ext, stem", [
    ("ct.nii.gz", ".nii.gz", "ct"), ("CT.NII.GZ", ".nii.gz", "CT"), ("liver.seg.nrrd", ".seg.nrrd", "liver"),
    ("a.b.nrrd", ".nrrd", "a.b"), ("scan.mhd", ".mhd", "scan"), ("IM0001", None, "IM0001"),
    ("notes.txt", None, "notes.txt"), (".nii.gz", None, ".nii.gz"),
])
def test_extension_of_and_strip_extension(name, ext, stem):
    assert extension_of(name) == ext
    assert strip_extension(name) == stem


def test_detect_format_by_name_content_and_folder(tmp_path):
    for name, fmt in [("a.nii.gz", "nifti"), ("a.nii", "nifti"), ("a.seg.nrrd", "nrrd"), ("a.nhdr", "nrrd"),
                      ("a.mha", "metaimage"), ("a.MHD", "metaimage"), ("a.dcm", "dicom"), ("a.IMA", "dicom")]:
        assert detect_format(tmp_path / name) == fmt, name
    info = write_dicom_series(tmp_path / "series", n=2)
    bare = tmp_path / "IM0001"
    shutil.copy(info["files"][0], bare)  # PACS exports: no extension, recognised by content
    assert is_dicom_file(bare) and looks_like_dicom(bare) and detect_format(bare) == "dicom"
    text = tmp_path / "README"
    text.write_text("not an image\n" * 20)
    assert not is_dicom_file(text) and detect_format(text) is None
    assert detect_format(tmp_path / "series") == "dicom"
    assert detect_format(tmp_path / "missing") is None
    assert not is_dicom_file(tmp_path / "missing")


def test_is_dicom_seg_tells_a_segmentation_from_its_series(tmp_path):
    from napari_medseg.io import LabelTable, read_volume
    from napari_medseg.io.dicom_seg import write_dicom_seg

    info = write_dicom_series(tmp_path / "series", n=3)
    ct = read_volume(tmp_path / "series")
    arr = np.zeros(ct.shape, np.uint8)
    arr[1, 2:4, 1:3] = 1
    seg = write_dicom_seg(ct.with_array(arr), LabelTable.from_names({1: "liver"}), ct, tmp_path / "seg.dcm")
    assert is_dicom_seg(seg)
    assert not is_dicom_seg(info["files"][0])
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(seg.read_bytes()[:200])  # preamble, then nothing readable
    assert not is_dicom_seg(broken)  # damaged: not claimed here; the reader says what is wrong
    assert not is_dicom_seg(tmp_path / "missing.dcm")


def test_slicer_header_detection():
    assert has_slicer_segments({"Segment0_Name": "liver", "Segment0_ID": "Segment_1"})
    assert not has_slicer_segments({"Segmentation_MasterRepresentation": "Binary labelmap"})
    assert is_slicer_segmentation({"Segmentation_MasterRepresentation": "Binary labelmap"})
    assert not is_slicer_segmentation({"space": "left-posterior-superior", "Modality": "CT"})


def test_detached_data_file_of_written_headers(tmp_path):
    write_volume(oblique_volume(), tmp_path / "ct.mhd")
    write_labels(label_volume(), tmp_path / "labels.nhdr")
    for header in ("ct.mhd", "labels.nhdr"):
        data = detached_data_file(tmp_path / header)
        assert data and (tmp_path / data).is_file() and data != header
    write_volume(oblique_volume(), tmp_path / "ct.mha")
    assert detached_data_file(tmp_path / "ct.mha") is None  # attached data (LOCAL)
    assert detached_data_file(tmp_path / "missing.mhd") is None


def test_no_other_io_module_lists_extensions():
    """One home: outside formats.py, io spells no list of volume extensions."""
    pattern = re.compile(r"""["']\.nii\.gz["'].*["']\.nrrd["']|["']\.nrrd["'].*["']\.mha["']""")
    offenders = []
    for path in sorted((SRC / "io").glob("*.py")):
        if path.name == "formats.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and not line.lstrip().startswith(("#", '"""')):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    for path in (SRC / "_reader.py", SRC / "_writer.py", SRC / "cli" / "info.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, offenders
