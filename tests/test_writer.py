"""The npe2 writer: labels saved through the plugin, non-3D layers refused."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.errors import InvalidInputError
from napari_medseg.io import LabelTable, read_labels, read_volume, write_volume
from napari_medseg.testing.volumes import oblique_volume
from tests.napari_open import open_as_user, viewer_after_first_use  # noqa: F401  (fixture)


# --- bad input and faults


def test_plugin_writer_refuses_non_3d_layers(tmp_path):
    from napari_medseg._writer import write_image, write_labels as plugin_write_labels

    with pytest.raises(InvalidInputError, match=r"only 3D layers can be saved as volumes; this one has shape \(4, 5\)"):
        write_image(str(tmp_path / "x.nii.gz"), np.zeros((4, 5)), {})
    with pytest.raises(InvalidInputError, match=r"shape \(2, 3, 4, 5\)"):
        plugin_write_labels(str(tmp_path / "x.nii.gz"), np.zeros((2, 3, 4, 5), np.uint8), {})
    assert list(tmp_path.iterdir()) == []


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
