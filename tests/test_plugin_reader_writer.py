"""The npe2 reader/writer and the window-presets widget, in a real napari viewer."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "io"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from io_helpers import label_volume, oblique_volume, write_dicom_series  # noqa: E402
from napari_open import open_as_user, viewer_after_first_use  # noqa: E402,F401  (fixture)

from napari_medseg._reader import napari_get_reader, read_layers  # noqa: E402
from napari_medseg.errors import ImageReadError  # noqa: E402
from napari_medseg.io import LabelTable, Volume, read_labels, read_volume, write_labels, write_volume  # noqa: E402


# ------------------------------------------------------------------ no Qt
def test_get_reader_returns_none_for_unhandled(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "img.tif").write_bytes(b"II*\x00" + bytes(50))
    (tmp_path / "noext").write_bytes(b"just bytes")
    (tmp_path / "empty").mkdir()
    for p in ["notes.txt", "img.tif", "noext", "empty", "missing.nii.gz", "missing_folder/"]:
        assert napari_get_reader(str(tmp_path / p)) is None, p
    assert napari_get_reader([str(tmp_path / "notes.txt"), str(tmp_path / "img.tif")]) is None
    assert napari_get_reader([]) is None
    assert napari_get_reader(12345) is None  # not even a path


def test_get_reader_accepts_volumes_and_dicom(tmp_path):
    write_volume(oblique_volume(), tmp_path / "ct.nrrd")
    info = write_dicom_series(tmp_path / "dicom", n=3)
    (tmp_path / "other").mkdir()
    noext = tmp_path / "other" / "IM0001"
    noext.write_bytes(info["files"][0].read_bytes())  # DICOM files often have no extension
    for p in [tmp_path / "ct.nrrd", tmp_path / "dicom", info["files"][0], noext]:
        assert napari_get_reader(str(p)) is read_layers, p
    # several files of one series are read once, as one volume
    layers = read_layers([str(f) for f in info["files"]])
    assert len(layers) == 1 and layers[0][0].shape == (3, 6, 5)


def test_reader_image_vs_labels_heuristic(tmp_path):
    rng = np.random.default_rng(0)
    ct = Volume(rng.integers(-1000, 1500, (4, 5, 6)).astype(np.int16))
    write_volume(ct, tmp_path / "ct.nii.gz")
    write_volume(ct, tmp_path / "ct_mask.nii.gz")  # "mask" in the name but thousands of values
    write_volume(Volume(rng.integers(0, 3, (4, 5, 6)).astype(np.uint8)), tmp_path / "liver_seg.nrrd")
    write_volume(Volume(rng.integers(0, 3, (4, 5, 6)).astype(np.uint8)), tmp_path / "t1.nrrd")  # no hint: image
    write_labels(Volume(rng.integers(0, 3, (4, 5, 6)).astype(np.uint8)), tmp_path / "case.mha",
                 LabelTable.from_names({1: "liver", 2: "tumour"}))  # names in sidecar
    kinds = {p: read_layers(str(tmp_path / p))[0][2] for p in
             ["ct.nii.gz", "ct_mask.nii.gz", "liver_seg.nrrd", "t1.nrrd", "case.mha"]}
    assert kinds == {"ct.nii.gz": "image", "ct_mask.nii.gz": "image", "liver_seg.nrrd": "labels",
                     "t1.nrrd": "image", "case.mha": "labels"}
    data, kwargs, _ = read_layers(str(tmp_path / "case.mha"))[0]
    assert kwargs["features"]["name"] == ["background", "liver", "tumour"] and kwargs["name"] == "case"


def test_float_label_map_with_sidecar_opens_as_labels(tmp_path):
    from napari_medseg.io.label_table import sidecar_dict

    import json

    write_volume(Volume(np.array([[[0.0, 1.0], [2.0, 1.0]]], np.float32)), tmp_path / "pred.nii.gz")
    (tmp_path / "pred.json").write_text(json.dumps(sidecar_dict(LabelTable.from_names({1: "liver", 2: "tumour"}))))
    data, kwargs, kind = read_layers(str(tmp_path / "pred.nii.gz"))[0]
    assert kind == "labels" and data.dtype == np.uint8 and kwargs["features"]["name"][2] == "tumour"


def test_reader_opens_multichannel_as_layers(tmp_path):
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(2, 3, 4, 5), isVector=False),
                    str(tmp_path / "t.nii.gz"))
    with pytest.warns(UserWarning, match="opening each of its 2 channels as its own layer"):
        layers = read_layers(str(tmp_path / "t.nii.gz"))
    assert [kw["name"] for _, kw, _ in layers] == ["t [0]", "t [1]"]


def test_reader_error_names_file(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_text("not an image")
    reader = napari_get_reader(str(bad))
    assert reader is not None  # we handle .nii.gz ...
    with pytest.raises(ImageReadError, match=r"broken.nii.gz is a text file, not a NIfTI image"):
        reader(str(bad))  # ... and say exactly what is wrong


def test_real_totalseg_labels_open_as_named_labels(shared_data):
    data, kwargs, kind = read_layers(str(shared_data / "totalseg_example" / "example_seg.nii.gz"))[0]
    assert kind == "labels" and data.dtype == np.uint8
    names = dict(zip(kwargs["features"]["index"], kwargs["features"]["name"]))
    assert names[5] == "liver" and names[52] == "aorta"


# -------------------------------------------------------------------- GUI
@pytest.mark.gui
def test_open_oblique_nifti_in_viewer(viewer_after_first_use, tmp_path):
    vol = oblique_volume(dtype=np.int16, shape=(6, 7, 8))
    write_volume(vol, tmp_path / "ct.nrrd")
    labels = label_volume()
    lab = Volume(np.zeros(vol.shape, np.uint8), spacing=vol.spacing, origin=vol.origin, direction=vol.direction)
    lab.array[2:4, 3:5, 1:6] = 2
    write_labels(lab, tmp_path / "ct_seg.nii.gz", LabelTable.from_names({2: "lesion"}))
    viewer = viewer_after_first_use
    [image] = open_as_user(viewer, tmp_path / "ct.nrrd")
    [seg] = open_as_user(viewer, tmp_path / "ct_seg.nii.gz")
    assert type(image).__name__ == "Image" and type(seg).__name__ == "Labels"
    np.testing.assert_allclose(image.scale, vol.spacing_zyx)
    np.testing.assert_allclose(image.affine.affine_matrix[:3, :3], vol.direction_zyx, atol=1e-12)
    np.testing.assert_allclose(image.affine.affine_matrix[:3, 3], vol.origin_zyx)
    assert image.metadata["medseg_geometry"] == read_volume(tmp_path / "ct.nrrd").geometry_dict()
    assert list(image.contrast_limits) == [-160.0, 240.0]  # modality CT from the NRRD header
    # Labels overlay the image in physical mm: same voxel -> same world point (NIfTI float32 tolerance).
    for idx in [(0, 0, 0), (5, 6, 7), (3, 2, 4)]:
        world_img = np.asarray(image.data_to_world(idx))
        world_seg = np.asarray(seg.data_to_world(idx))
        np.testing.assert_allclose(world_img, world_seg, atol=1e-3)
        np.testing.assert_allclose(world_img, vol.index_to_physical(idx)[::-1], atol=1e-9)
    assert seg.features["name"].tolist() == ["background", "lesion"]
    np.testing.assert_allclose(seg.colormap.map(np.array([0]))[0][3], 0.0)  # background transparent
    assert labels.shape == (6, 8, 9)


@pytest.mark.gui
def test_save_labels_layer_through_plugin(viewer_after_first_use, tmp_path):
    vol = oblique_volume(shape=(5, 6, 7))
    write_volume(vol, tmp_path / "ct.mha")
    viewer = viewer_after_first_use
    [image] = open_as_user(viewer, tmp_path / "ct.mha")
    from napari_medseg.io.layer_data import labels_layer_tuple

    arr = np.zeros(vol.shape, np.uint8)
    arr[1:3, 2:4, 2:5] = 1
    data, kwargs, _ = labels_layer_tuple(arr, read_volume(tmp_path / "ct.mha"), LabelTable.from_names({1: "liver"}), "seg")
    layer = viewer.add_labels(data, **kwargs)
    layer.save(str(tmp_path / "out.nrrd"))  # File > Save Selected Layer: napari picks the writer
    back, table = read_labels(tmp_path / "out.nrrd", reference=read_volume(tmp_path / "ct.mha"))
    np.testing.assert_array_equal(back.array, arr)
    assert table.names == {1: "liver"}
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-15)
    image.save(str(tmp_path / "img.nii.gz"))
    again = read_volume(tmp_path / "img.nii.gz")
    np.testing.assert_array_equal(again.array, vol.array)
    np.testing.assert_allclose(again.direction, vol.direction, atol=1e-6)


@pytest.mark.gui
def test_window_presets_widget(make_napari_viewer, qtbot):
    from napari_medseg._widgets.window_presets import WindowPresetsWidget

    viewer = make_napari_viewer()
    widget = WindowPresetsWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.apply_preset("lung") is None
    assert "no image layer" in widget.status.text()
    layer = viewer.add_image(np.linspace(-1000, 1000, 64).reshape(4, 4, 4))
    widget.buttons["lung"].click()
    assert list(layer.contrast_limits) == [-1350.0, 150.0]
    assert widget.apply_preset("bone") == (-500.0, 1300.0)
    assert list(layer.contrast_limits) == [-500.0, 1300.0]
    assert widget.apply_preset("full range") == (-1000.0, 1000.0)
    assert widget.apply_preset("nonsense") is None and "unknown window preset" in widget.status.text()
    widget.apply_preset("liver")
    assert (widget.level.value(), widget.width.value()) == (60.0, 160.0)  # shows the preset's L/W
    widget.level.setValue(50)
    widget.width.setValue(350)
    widget.apply_button.click()
    assert list(layer.contrast_limits) == [-125.0, 225.0]
    assert widget.apply_window(0, 0) is None and "positive width" in widget.status.text()


def test_dicom_seg_opens_as_labels_on_the_ct_grid(shared_data):
    folder = shared_data / "dcmqi_ct3slice"
    data, kwargs, kind = read_layers(str(folder / "liver.dcm"))[0]
    ct = read_volume(folder)
    assert kind == "labels" and data.shape == ct.shape
    assert kwargs["metadata"]["medseg_geometry"]["origin_xyz"] == list(ct.origin)
    assert "liver" in " ".join(kwargs["features"]["name"]).lower()
    # the same liver as the NRRD export of this SEG
    nrrd, _ = read_labels(folder / "liver_seg.nrrd", reference=ct)
    np.testing.assert_array_equal(data > 0, nrrd.array > 0)


@pytest.mark.gui
def test_open_real_ct_nifti_in_viewer(viewer_after_first_use, shared_data):
    """The TotalSegmentator CT (LPS flip diag(-1, -1, 1)) and its labels line up in napari."""
    path = shared_data / "totalseg_example" / "example_ct_sm.nii.gz"
    vol = read_volume(path)
    viewer = viewer_after_first_use
    [image] = open_as_user(viewer, path)
    [seg] = open_as_user(viewer, shared_data / "totalseg_example" / "example_seg.nii.gz")
    assert type(seg).__name__ == "Labels" and seg.features["name"].tolist()[5] == "liver"
    np.testing.assert_allclose(image.scale, (3.0, 3.0, 3.0))
    np.testing.assert_allclose(image.affine.affine_matrix[:3, :3], np.diag([1.0, -1.0, -1.0]))  # zyx order
    assert list(image.contrast_limits) == [-160.0, 240.0]  # HU-like values: soft-tissue window
    assert image.metadata["medseg_geometry"]["origin_xyz"] == list(vol.origin)
    corner = (29, 100, 121)
    np.testing.assert_allclose(image.data_to_world(corner), vol.index_to_physical(corner)[::-1], atol=1e-6)
    np.testing.assert_allclose(seg.data_to_world(corner), image.data_to_world(corner), atol=1e-6)


@pytest.mark.gui
def test_open_dicom_folder_in_viewer(viewer_after_first_use, shared_data):
    [image] = open_as_user(viewer_after_first_use, shared_data / "dcmqi_ct3slice")
    assert image.data.shape == (3, 512, 512) and image.name == "dcmqi_ct3slice"
    np.testing.assert_allclose(image.scale, (1.0, 0.810547, 0.810547))
    np.testing.assert_allclose(image.translate, (-128.690002, -226.800003, -235.199997))
    assert image.metadata["dicom"]["Modality"] == "CT" and len(image.metadata["dicom"]["SOPInstanceUIDs"]) == 3
    assert list(image.contrast_limits) == [-160.0, 240.0]
