"""io/opening.open_path: what a path holds, decided once for napari's reader and ``medseg info``."""

import shutil
import warnings

import numpy as np
import pytest

from napari_medseg.errors import ImageReadError, UnsupportedFormatError
from napari_medseg.io import LabelTable, MultiChannelError, Volume, read_volume, write_labels, write_volume
from napari_medseg.io.opening import MAX_LABEL_VALUES, looks_like_labels, open_path
from napari_medseg.testing.volumes import label_volume, oblique_volume, write_dicom_series


def test_image_labels_and_their_names(tmp_path):
    ct = oblique_volume()
    write_volume(ct, tmp_path / "ct.nii.gz")
    [image] = open_path(tmp_path / "ct.nii.gz")
    assert image.kind == "image" and not image.is_labels and image.name == "ct" and image.table is None
    np.testing.assert_array_equal(image.volume.array, ct.array)
    assert image.describe() == "image"

    labels = label_volume()
    write_labels(labels, tmp_path / "organs.nrrd", LabelTable.from_names({1: "liver", 2: "spleen", 5: "kidney"}))
    [opened] = open_path(tmp_path / "organs.nrrd")  # no label word in the name: the sidecar names it
    assert opened.kind == "labels" and opened.is_labels and opened.name == "organs"
    assert opened.table.name_of(5) == "kidney" and opened.volume.array.dtype == np.uint8
    np.testing.assert_array_equal(opened.volume.array, labels.array)
    assert opened.describe() == "label map, 3 classes (names from sidecar): liver, spleen, kidney"


def test_label_word_integer_file_without_names(tmp_path):
    labels = label_volume()
    write_volume(labels, tmp_path / "liver_mask.nii.gz")  # no sidecar
    [opened] = open_path(tmp_path / "liver_mask.nii.gz")
    assert opened.kind == "labels" and opened.table.ids == [1, 2, 5]
    write_volume(labels, tmp_path / "plain.nii.gz")  # integer, unnamed, no label word: an image
    assert open_path(tmp_path / "plain.nii.gz")[0].kind == "image"


def test_label_word_but_image_content_opens_as_image(tmp_path):
    rng = np.random.default_rng(0)
    noisy = Volume(rng.integers(0, 4000, (6, 40, 40)).astype(np.int16))
    assert len(np.unique(noisy.array)) > MAX_LABEL_VALUES
    write_volume(noisy, tmp_path / "seg_input.nii.gz")
    assert looks_like_labels(tmp_path / "seg_input.nii.gz")  # the header alone cannot tell
    assert open_path(tmp_path / "seg_input.nii.gz")[0].kind == "image"  # too many values
    negative = Volume(np.full((2, 3, 4), -5, np.int16))
    write_volume(negative, tmp_path / "mask_neg.nii.gz")
    assert open_path(tmp_path / "mask_neg.nii.gz")[0].kind == "image"  # negative ids: not a label map
    write_volume(Volume(np.full((2, 3, 4), 0.5, np.float32)), tmp_path / "label_prob.nii.gz")
    assert not looks_like_labels(tmp_path / "label_prob.nii.gz")  # float without names


def test_multichannel_split_or_refused(tmp_path):
    import SimpleITK as sitk

    arr = np.arange(3 * 2 * 4 * 5, dtype=np.int16).reshape(3, 2, 4, 5)  # 3 volumes
    sitk.WriteImage(sitk.GetImageFromArray(arr, isVector=False), str(tmp_path / "dwi.nii.gz"))
    with pytest.raises(MultiChannelError, match="holding 3 volumes"):
        open_path(tmp_path / "dwi.nii.gz")
    with pytest.warns(UserWarning, match="opening each of its 3 channels"):
        items = open_path(tmp_path / "dwi.nii.gz", split_channels=8)
    assert [i.name for i in items] == ["dwi [0]", "dwi [1]", "dwi [2]"]
    np.testing.assert_array_equal(items[2].volume.array, arr[2])
    with pytest.raises(MultiChannelError):
        open_path(tmp_path / "dwi.nii.gz", split_channels=2)  # more than allowed: refused, not split
    [one] = open_path(tmp_path / "dwi.nii.gz", channel=1)
    assert one.kind == "image" and one.describe() == "image (volume 1 of 3)"


def test_dicom_folder_extensionless_file_and_seg(tmp_path):
    from napari_medseg.io.dicom_seg import write_dicom_seg

    info = write_dicom_series(tmp_path / "series", n=4)
    pacs = tmp_path / "pacs"
    pacs.mkdir()
    for k, f in enumerate(info["files"]):  # PACS exports: IM0001, IM0002, ... without extension
        shutil.copy(f, pacs / f"IM{k + 1:04d}")
    [folder] = open_path(pacs)
    [single] = open_path(pacs / "IM0003")
    for item in (folder, single):
        assert item.kind == "dicom-series" and not item.is_labels and item.volume.shape == (4, 6, 5)
        assert item.describe() == f"DICOM image series {info['uid']}, 4 files"
    assert folder.name == "pacs" and single.name == "IM0003"
    np.testing.assert_array_equal(folder.volume.array, single.volume.array)

    ct = read_volume(pacs)
    arr = np.zeros(ct.shape, np.uint8)
    arr[1:3, 2:4, 1:3] = 7
    write_dicom_seg(ct.with_array(arr), LabelTable.from_names({7: "tumour"}), ct, pacs / "SEG0001")
    [seg] = open_path(pacs / "SEG0001")  # beside its series: on the series grid
    assert seg.kind == "dicom-seg" and seg.is_labels and seg.table.name_of(7) == "tumour"
    np.testing.assert_array_equal(seg.volume.array, arr)
    assert seg.volume.same_grid(ct)
    assert seg.describe().startswith("DICOM Segmentation (DICOM-SEG), 1 class: tumour")
    [again] = open_path(pacs)  # the folder is still the CT, not the SEG inside it
    assert again.kind == "dicom-series"


def test_clear_messages_for_what_is_not_read(tmp_path):
    with pytest.raises(ImageReadError, match="nothing.nii.gz: no such file or folder"):
        open_path(tmp_path / "nothing.nii.gz")
    (tmp_path / "IM0001").write_bytes(b"\0" * 64 + b"not dicom")
    with pytest.raises(UnsupportedFormatError,
                       match=r"IM0001 is not in a format napari-medseg reads .*without an extension are "
                             r"recognised by their content, and this one has no DICOM preamble"):
        open_path(tmp_path / "IM0001")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UnsupportedFormatError, match=r"notes.txt is not in a format napari-medseg reads \(NIfTI"):
        open_path(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageReadError, match="empty folder"):
        open_path(tmp_path / "empty")
