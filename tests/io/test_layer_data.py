"""Layer tuples (no Qt) and the one reader of a layer's class table."""

import numpy as np
import pytest

from napari_medseg.errors import GeometryMismatchError, InvalidInputError
from napari_medseg.io import LabelTable, Volume
from napari_medseg.io.layer_data import image_layer_tuple, labels_layer_tuple, volume_from_layer
from napari_medseg.io.layer_data import layer_label_table
from napari_medseg.testing.volumes import label_volume, oblique_volume


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


def _state(table, hidden_alpha=None, features=None):
    colors = table.color_dict()
    if hidden_alpha is not None:
        r, g, b, _ = colors[hidden_alpha]
        colors[hidden_alpha] = (r, g, b, 0.0)

    class Colormap:
        color_dict = colors

    return {"metadata": {"medseg_label_table": table.to_dict()},
            "features": features if features is not None else table.features(), "colormap": Colormap()}


def test_recorded_table_wins_and_keeps_provenance_and_hidden_colours():
    table = LabelTable.from_names({1: "liver", 2: "spleen"}).with_provenance("AUTOMATIC", "total")
    got = layer_label_table(_state(table, hidden_alpha=2))
    assert got.to_dict() == table.to_dict()
    assert got.color_of(2)[3] == 1.0  # hidden in the colormap only


def test_names_edited_in_napari_features_are_read_and_new_rows_added():
    table = LabelTable.from_names({1: "liver", 2: "spleen"}).with_provenance("AUTOMATIC", "total")
    features = {"index": [0, 1, 2, 7], "name": ["background", "hepar", "spleen", "marker"]}
    got = layer_label_table(_state(table, features=features))
    assert got.names == {1: "hepar", 2: "spleen", 7: "marker"}
    assert got.color_of(1) == table.color_of(1) and got.algorithm_of(2) == ("AUTOMATIC", "total")


def test_without_a_table_ids_present_are_named_or_none():
    data = np.zeros((2, 3, 3), np.uint8)
    data[0, 0, 0], data[1, 1, 1] = 3, 4
    assert layer_label_table({}, data).names == {3: "label 3", 4: "label 4"}
    assert layer_label_table({}) is None
    broken = {"metadata": {"medseg_label_table": {"labels": "not a list"}}}
    assert layer_label_table(broken, data).names == {3: "label 3", 4: "label 4"}
