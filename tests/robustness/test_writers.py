"""Writers fail cleanly: old files intact, no partial or temporary file left, clear errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from io_helpers import label_volume, oblique_volume, snapshot  # noqa: E402

from napari_medseg.errors import ImageReadError, InvalidInputError, UnsupportedFormatError  # noqa: E402
from napari_medseg.io import LabelTable, Volume, atomic_write, read_volume, write_labels, write_volume  # noqa: E402


def _failing_write(monkeypatch, exc=RuntimeError("ITK ERROR: NiftiImageIO(0x1): disk full")):
    """Make SimpleITK write half a file, then fail (as a full disk would)."""
    import SimpleITK as sitk

    def broken(image, path, *args, **kwargs):
        Path(path).write_bytes(b"\x00" * 100)
        raise exc

    monkeypatch.setattr(sitk, "WriteImage", broken)


@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd", ".mha", ".mhd"])
def test_failed_write_keeps_old_volume(tmp_path, monkeypatch, ext):
    path = tmp_path / f"ct{ext}"
    old = oblique_volume(seed=1)
    write_volume(old, path)
    before = snapshot(tmp_path)
    _failing_write(monkeypatch)
    with pytest.raises(ImageReadError, match=rf"could not write .*ct{ext.replace('.', '[.]')}: disk full"):
        write_volume(oblique_volume(seed=2), path)
    monkeypatch.undo()
    assert snapshot(tmp_path) == before  # old file(s) byte-identical, no temp folder left
    np.testing.assert_array_equal(read_volume(path).array, old.array)


def test_interrupted_write_keeps_old_labels_and_sidecar(tmp_path, monkeypatch):
    path = tmp_path / "labels.nii.gz"
    write_labels(label_volume(), path, LabelTable.from_names({1: "liver", 2: "lesion", 5: "kidney"}))
    before = snapshot(tmp_path)
    _failing_write(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        write_labels(label_volume(seed=3), path, LabelTable.from_names({1: "x"}))
    assert snapshot(tmp_path) == before


def test_sidecar_failure_leaves_image_untouched(tmp_path, monkeypatch):
    import napari_medseg.io.writers as writers

    path = tmp_path / "labels.nrrd"
    write_labels(label_volume(), path)
    before = snapshot(tmp_path)

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writers.json, "dumps", boom)
    with pytest.raises(OSError, match="No space left"):
        write_labels(label_volume(seed=4), path)
    assert snapshot(tmp_path) == before


def test_atomic_write_context(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(ValueError):
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise ValueError("stop")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    with pytest.raises(ImageReadError, match="produced no file; nothing was changed"):
        with atomic_write(target):
            pass
    assert target.read_text() == "old"
    with atomic_write(tmp_path / "new" / "b.txt") as tmp:
        tmp.write_text("new")
    assert (tmp_path / "new" / "b.txt").read_text() == "new"


@pytest.mark.parametrize("name,func,pattern,exc", [
    ("out.tif", "volume", r"cannot write .*out.tif: unknown extension; use one of .nii.gz, .nii", UnsupportedFormatError),
    ("out.dcm", "volume", r"cannot write .*out.dcm: writing this format is not supported", UnsupportedFormatError),
    ("out.seg.nrrd", "volume", r"\.seg\.nrrd holds segmentations; use write_labels", UnsupportedFormatError),
    (".nii.gz", "volume", r"the file name is only an extension; give a name", UnsupportedFormatError),
    ("dir", "volume", r"cannot write .*dir.nii.gz: it is a folder; give a file name", ImageReadError),
    ("afile/x.nii.gz", "volume", r"cannot write into .*afile", ImageReadError),
    ("l.json", "labels", r"cannot write .*l.json: unknown extension", UnsupportedFormatError),
])
def test_bad_destinations(tmp_path, name, func, pattern, exc):
    (tmp_path / "dir.nii.gz").mkdir()
    (tmp_path / "afile").write_text("a file, not a folder")
    before = snapshot(tmp_path)
    target = tmp_path / ("dir.nii.gz" if name == "dir" else name)
    with pytest.raises(exc, match=pattern):
        if func == "volume":
            write_volume(oblique_volume(), target)
        else:
            write_labels(label_volume(), target)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("array,pattern", [
    (np.full((2, 2, 2), 0.5), r"labels for .*l.nii.gz must hold whole numbers"),
    (np.full((2, 2, 2), -3, np.int16), r"labels for .*l.nii.gz hold negative values \(min -3\)"),
    (np.full((2, 2, 2), np.nan), r"must hold whole numbers; got non-integer or NaN"),
    (np.full((2, 2, 2), "a"), r"must be an integer array, got dtype <U1"),
])
def test_bad_label_arrays(tmp_path, array, pattern):
    with pytest.raises(InvalidInputError, match=pattern):
        write_labels(Volume(array), tmp_path / "l.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_complex_volume_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="complex voxels are not supported"):
        write_volume(Volume(np.zeros((2, 2, 2), np.complex64)), tmp_path / "c.nrrd")
    assert list(tmp_path.iterdir()) == []


def test_plugin_writer_refuses_non_3d_layers(tmp_path):
    from napari_medseg._writer import write_image, write_labels as plugin_write_labels

    with pytest.raises(InvalidInputError, match=r"only 3D layers can be saved as volumes; this one has shape \(4, 5\)"):
        write_image(str(tmp_path / "x.nii.gz"), np.zeros((4, 5)), {})
    with pytest.raises(InvalidInputError, match=r"shape \(2, 3, 4, 5\)"):
        plugin_write_labels(str(tmp_path / "x.nii.gz"), np.zeros((2, 3, 4, 5), np.uint8), {})
    assert list(tmp_path.iterdir()) == []


def test_replacing_mhd_never_pairs_old_header_with_new_data(tmp_path, monkeypatch):
    """The new .mhd header is moved in last and names a data file no earlier write used."""
    import os

    import napari_medseg.io.atomic as atomic

    path = tmp_path / "ct.mhd"
    first, second = oblique_volume(seed=1), oblique_volume(seed=2)
    write_volume(first, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.mhd", "ct.zraw"]
    # Simulate a crash right after the data file was moved in, before the header.
    real_replace = os.replace
    calls = []

    def crash_on_header(src, dst):
        calls.append(Path(dst).name)
        if Path(dst).name == "ct.mhd":
            raise KeyboardInterrupt("killed")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", crash_on_header)
    with pytest.raises(KeyboardInterrupt):
        write_volume(second, path)
    monkeypatch.undo()
    assert calls[0].startswith("ct.") and calls[0].endswith(".zraw") and calls[0] != "ct.zraw"
    np.testing.assert_array_equal(read_volume(path).array, first.array)  # old pair still consistent
    write_volume(second, path)
    np.testing.assert_array_equal(read_volume(path).array, second.array)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "ct.zraw" not in names and "ct.mhd" in names  # the old data file was removed


def test_replacing_nhdr_keeps_a_consistent_pair(tmp_path):
    path = tmp_path / "ct.nhdr"
    write_volume(oblique_volume(seed=1), path)
    second = oblique_volume(seed=2)
    write_volume(second, path)
    np.testing.assert_array_equal(read_volume(path).array, second.array)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and "ct.raw.gz" not in names and names[0].endswith(".raw.gz")
