"""Layer tuples, windows, validation and the `medseg info` command (no Qt)."""

import json

import numpy as np
import pytest

from io_helpers import label_volume, oblique_volume
from napari_medseg.errors import GeometryMismatchError, InvalidInputError
from napari_medseg.io import LabelTable, Volume, check_volume_for_model
from napari_medseg.io.layer_data import image_layer_tuple, labels_layer_tuple, volume_from_layer
from napari_medseg.io.windows import (PRESETS, default_contrast_limits, looks_like_hu, preset_contrast_limits,
                                      window_to_contrast_limits)


def test_windows():
    assert window_to_contrast_limits(40, 400) == (-160.0, 240.0)
    assert preset_contrast_limits("lung") == (-1350.0, 150.0)
    assert preset_contrast_limits("Bone") == (-500.0, 1300.0)
    assert set(PRESETS) >= {"soft tissue", "lung", "bone", "liver", "brain", "full range"}
    assert preset_contrast_limits("full range", np.array([[-3.0, 7.0]])) == (-3.0, 7.0)
    with pytest.raises(InvalidInputError, match="unknown window preset 'abdomen'"):
        preset_contrast_limits("abdomen")
    with pytest.raises(InvalidInputError, match="positive width"):
        window_to_contrast_limits(0, 0)


def test_default_window_ct_vs_other():
    rng = np.random.default_rng(0)
    ct = np.concatenate([np.full(1000, -1000), rng.normal(40, 30, 5000), np.full(200, 900)]).astype(np.int16)
    assert looks_like_hu(ct)
    assert default_contrast_limits(ct.reshape(1, 1, -1)) == (-160.0, 240.0)
    mr = rng.gamma(2.0, 200.0, 10000).astype(np.float32)
    assert not looks_like_hu(mr)
    lo, hi = default_contrast_limits(mr)
    assert lo >= 0 and hi < mr.max()
    assert default_contrast_limits(mr, modality="CT") == (-160.0, 240.0)


def test_image_layer_tuple_oblique():
    vol = oblique_volume()
    data, kw, kind = image_layer_tuple(vol, "ct")
    assert kind == "image" and data is vol.array and kw["name"] == "ct"
    assert kw["scale"] == vol.spacing_zyx
    np.testing.assert_allclose(kw["affine"][:3, :3], vol.direction_zyx)
    assert kw["contrast_limits"] == [-160.0, 240.0]  # modality CT
    assert kw["metadata"]["medseg_geometry"] == vol.geometry_dict()
    back = volume_from_layer(data, {"metadata": kw["metadata"]})
    assert back.same_grid(vol)


def test_image_layer_keeps_dicom_uids():
    vol = Volume(np.zeros((2, 3, 4), np.int16), modality="CT",
                 metadata={"dicom": {"SeriesInstanceUID": "1.2"}, "source_path": "/x", "huge": np.zeros(10)})
    _, kw, _ = image_layer_tuple(vol)
    assert kw["metadata"]["dicom"] == {"SeriesInstanceUID": "1.2"} and "huge" not in kw["metadata"]


def test_labels_layer_tuple():
    ref = label_volume()
    table = LabelTable.from_names({1: "liver", 2: "lesion", 5: "kidney"})
    data, kw, kind = labels_layer_tuple(ref.array, ref, table, "seg")
    assert kind == "labels" and kw["name"] == "seg"
    assert kw["colormap"] == table.color_dict() and kw["features"] == table.features()
    assert kw["metadata"]["medseg_label_table"] == table.to_dict()
    assert kw["metadata"]["medseg_geometry"] == ref.geometry_dict()
    with pytest.raises(GeometryMismatchError, match="do not match the image grid"):
        labels_layer_tuple(ref.array[:-1], ref, table)
    with pytest.raises(InvalidInputError, match="integer array"):
        labels_layer_tuple(ref.array.astype(float), ref, table)


def test_volume_from_layer_without_metadata_uses_affine():
    vol = oblique_volume()
    kw = vol.layer_kwargs()
    back = volume_from_layer(vol.array, {"scale": kw["scale"], "translate": kw["translate"], "affine": kw["affine"]})
    np.testing.assert_allclose(back.spacing, vol.spacing)
    np.testing.assert_allclose(back.origin, vol.origin)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-12)
    axis = Volume(np.zeros((2, 2, 2)), spacing=(1, 2, 3), origin=(4, 5, 6))
    back = volume_from_layer(axis.array, dict(axis.layer_kwargs(), affine=np.eye(4)))
    assert back.same_grid(axis)
    with pytest.raises(GeometryMismatchError, match="no longer matches its recorded geometry"):
        volume_from_layer(np.zeros((3, 3, 3)), {"metadata": {"medseg_geometry": vol.geometry_dict()}})


@pytest.mark.parametrize("arr,kwargs,match", [
    (np.zeros((1, 8, 8)), {}, r"is a 2D image \(one slice\); model works on 3D volumes of at least 2 slices"),
    (np.zeros((3, 8, 8)), {"min_slices": 4, "what": "SAM-Med3D"}, r"only 3 slices; SAM-Med3D works on 3D volumes of at least 4"),
    (np.zeros((3, 1, 8)), {}, r"only 1 x 8 voxels in-plane"),
    (np.zeros((3, 8, 8), bool), {}, r"voxel type bool; model needs numbers"),
])
def test_check_volume_for_model_refuses(arr, kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        check_volume_for_model(Volume(arr), **kwargs)


def test_check_volume_counts_nonfinite():
    arr = np.zeros((4, 5, 6), np.float32)
    arr[0, 0, 0] = np.nan
    arr[3, 4, 5] = np.inf
    arr[2, 2, 2] = -np.inf
    vol = Volume(arr, metadata={"source_path": "/data/ct.nii.gz"})
    with pytest.raises(InvalidInputError, match=r"the image /data/ct.nii.gz has 3 NaN/Inf voxel\(s\) \(2.5% of 120\)"):
        check_volume_for_model(vol)
    check_volume_for_model(vol, allow_nonfinite=True)
    check_volume_for_model(Volume(np.zeros((2, 2, 2), np.int16)))


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
