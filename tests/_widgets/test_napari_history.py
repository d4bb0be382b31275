"""ClassUndo (the napari-history adapter) on a bare napari Labels layer: no viewer, no widget."""

import numpy as np
from napari.layers import Labels

from napari_medseg._widgets._layers import layer_table, set_layer_table
from napari_medseg._widgets._napari_history import ClassUndo
from napari_medseg.io.label_table import LabelTable


def _layer():
    arr = np.zeros((3, 6, 6), np.uint8)
    arr[1, 1:4, 1:4] = 1
    layer = Labels(arr.copy())
    set_layer_table(layer, LabelTable.from_names({1: "liver"}))
    return layer, arr


def test_relabel_undo_redo_and_viewer_ctrl_z_keep_voxels_and_table_in_step():
    layer, original = _layer()
    undo = ClassUndo()
    new = original.copy()
    new[new == 1] = 5
    table = layer_table(layer).without(1).with_label(5, "liver")
    assert undo.change_voxels_and_table(layer, new, table, "relabel 1 -> 5") == 9
    assert layer_table(layer).ids == [5] and undo.can_undo(layer)

    change = undo.step(layer, undo=True)  # the widget's "Undo class change"
    assert change.description == "relabel 1 -> 5"
    np.testing.assert_array_equal(layer.data, original)
    assert layer_table(layer).ids == [1] and undo.can_redo(layer)
    assert undo.step(layer, undo=False) is not None
    assert (np.asarray(layer.data) == 5).sum() == 9

    layer.undo()  # Ctrl+Z in the viewer reverts the voxels; follow() brings the table along
    assert undo.follow(layer) == "undid (Ctrl+Z in the viewer): relabel 1 -> 5"
    assert layer_table(layer).ids == [1]
    assert undo.follow(layer) is None  # nothing more to follow


def test_undo_after_painting_writes_back_only_untouched_voxels():
    layer, original = _layer()
    undo = ClassUndo()
    out = original.copy()
    out[out == 1] = 0
    undo.change_voxels_and_table(layer, out, layer_table(layer).without(1), "delete label 1")
    with layer.block_history():  # a brush stroke over one erased voxel
        layer.data_setitem((np.array([1]), np.array([1]), np.array([1])), np.array([3], np.uint8))
    assert undo.step(layer, undo=True) is not None
    expected = original.copy()
    expected[1, 1, 1] = 3  # the stroke stays; every other erased voxel is back
    np.testing.assert_array_equal(layer.data, expected)
    assert layer_table(layer).name_of(1) == "liver"
    undo.forget(str(layer.unique_id))
    assert undo.keys == [] and not undo.can_undo(layer)
