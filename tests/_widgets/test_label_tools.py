"""Label tools widget in a real viewer: operations, undo, class list, autosave/restore.

Every widget is docked as the Plugins menu docks it (``add_plugin_dock_widget``: the widget
holds napari's PublicOnlyProxy of the viewer).
"""

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_medseg._widgets._layers import apply_to_layer, hidden_labels, layer_key, layer_table
from napari_medseg._widgets.label_tools import LabelToolsWidget
from napari_medseg.editing import grow
from napari_medseg.editing.autosave import Autosaver, list_recoverable
from napari_medseg.io.label_table import LabelTable
from napari_medseg.io.layer_data import image_layer_tuple, labels_layer_tuple
from napari_medseg.io.volume import Volume


def dock(viewer) -> LabelToolsWidget:
    """The widget napari's Plugins menu gives (it holds a PublicOnlyProxy of the viewer)."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-medseg", "Label tools")
    assert isinstance(widget, LabelToolsWidget)
    return widget


@pytest.fixture
def setup(make_napari_viewer, tmp_path, monkeypatch):
    # the docked widget autosaves where MEDSEG_RECOVERY_DIR points (never the user's cache)
    monkeypatch.setenv("MEDSEG_RECOVERY_DIR", str(tmp_path / "rec"))
    viewer = make_napari_viewer()
    ct = Volume(np.full((8, 24, 24), -50, np.int16), spacing=(0.8, 0.8, 2.0), origin=(1, 2, 3), modality="CT")
    ct.array[:, :, 12:] = 400  # right half "bone"
    arr = np.zeros(ct.shape, np.uint8)
    arr[2:6, 6:14, 6:14] = 1
    arr[4, 20, 20] = 1  # a small island
    arr[1, 1:3, 1:3] = 2
    table = LabelTable.from_names({1: "liver", 2: "spleen"})
    data, kw, _ = image_layer_tuple(ct, "ct")
    image = viewer.add_image(data, **kw)
    data, kw, _ = labels_layer_tuple(arr, ct, table, "seg")
    labels = viewer.add_labels(data, **kw)
    widget = dock(viewer)
    widget.autosaver = Autosaver(tmp_path / "rec", session="gui")
    widget.labels_combo.set_layer(labels)
    return viewer, widget, labels, image, arr.copy(), ct


def _run(qtbot, widget):
    with qtbot.waitSignal(widget.finished, timeout=30000) as blocker:
        worker = widget.run()
        assert worker is not None
    return blocker.args[0]


# ------------------------------------------------------------ class-list undo/redo
def _class_list(labels):
    """Everything the class list stores on the layer, for exact before/after comparisons."""
    table = layer_table(labels)
    colors = {k: tuple(round(float(c), 6) for c in v) for k, v in labels.colormap.color_dict.items()}
    return table.to_dict(), list(labels.features["name"]), colors, sorted(hidden_labels(labels))


def test_grow_is_applied_and_undoable(qtbot, setup):
    viewer, widget, labels, image, original, ct = setup
    widget.set_operation("Grow margin", label=1, size=2.0, scope="3D")
    msg = _run(qtbot, widget)
    expected = grow(original, ct.spacing_zyx, 2.0, label=1)
    np.testing.assert_array_equal(labels.data, expected)
    assert "voxel(s) changed" in msg
    labels.undo()
    np.testing.assert_array_equal(labels.data, original)
    labels.redo()
    np.testing.assert_array_equal(labels.data, expected)


def test_islands_and_threshold_restriction(qtbot, setup):
    viewer, widget, labels, image, original, ct = setup
    widget.set_operation("Remove small islands", label=1, size=0.01)
    _run(qtbot, widget)
    assert labels.data[4, 20, 20] == 0 and (labels.data == 1).sum() == (original == 1).sum() - 1
    cleaned = np.array(labels.data)
    # grow restricted to the soft-tissue range: nothing grows into the "bone" half
    widget.set_operation("Grow margin", label=1, size=3.0, restrict=True, low=-100, high=100, image=image)
    _run(qtbot, widget)
    assert (labels.data[:, :, 12:] == 1).sum() == (cleaned[:, :, 12:] == 1).sum()
    assert (labels.data[:, :, :12] == 1).sum() > (cleaned[:, :, :12] == 1).sum()
    labels.undo()
    labels.undo()
    np.testing.assert_array_equal(labels.data, original)


def test_current_slice_scope(qtbot, setup):
    viewer, widget, labels, image, original, ct = setup
    viewer.dims.set_point(0, ct.index_to_physical([3, 0, 0])[2])  # world z of slice 3
    widget.set_operation("Shrink margin", label=1, size=0.8, scope="current slice")
    _run(qtbot, widget)
    changed_slices = np.unique(np.nonzero(labels.data != original)[0])
    assert changed_slices.tolist() == [3]


def test_bad_request_shows_message_and_changes_nothing(qtbot, setup):
    viewer, widget, labels, image, original, ct = setup
    widget.set_operation("Grow margin", label=9, size=1.0)
    msg = _run(qtbot, widget)
    assert "label 9 is not present" in msg and "label 9" in widget.status.text()
    np.testing.assert_array_equal(labels.data, original)
    assert widget.apply_button.isEnabled()


def test_class_list_rename_color_visibility_relabel_delete(qtbot, setup):
    viewer, widget, labels, image, original, ct = setup
    assert widget.class_table.rowCount() == 2
    widget.rename_class(2, "Spleen (edited)")
    assert layer_table(labels).name_of(2) == "Spleen (edited)"
    assert list(labels.features["name"]) == ["background", "liver", "Spleen (edited)"]
    widget.set_class_color(1, (0.0, 1.0, 0.0))
    assert tuple(labels.colormap.color_dict[1][:3]) == (0.0, 1.0, 0.0)
    widget.set_class_visible(1, False)
    assert labels.colormap.color_dict[1][3] == 0.0 and layer_table(labels).color_of(1)[3] == 1.0
    widget.set_class_visible(1, True)
    assert labels.colormap.color_dict[1][3] == 1.0
    widget.relabel_class(2, 7)
    assert (labels.data == 7).sum() == (original == 2).sum() and layer_table(labels).name_of(7) == "Spleen (edited)"
    labels.undo()
    np.testing.assert_array_equal(labels.data, original)
    widget.delete_class(1)
    assert (labels.data == 1).sum() == 0 and 1 not in layer_table(labels)
    labels.undo()
    assert (labels.data == 1).sum() == (original == 1).sum()


def test_apply_to_layer_is_one_undo_step(setup):
    viewer, widget, labels, image, original, ct = setup
    new = original.copy()
    new[0] = 2
    new[7] = 1
    assert apply_to_layer(labels, new) == 2 * 24 * 24
    labels.undo()
    np.testing.assert_array_equal(labels.data, original)


def test_autosave_and_restore(qtbot, setup, tmp_path):
    viewer, widget, labels, image, original, ct = setup
    snaps = widget.autosave_now(blocking=True)
    assert [s.layer_name for s in snaps] == ["seg"]
    assert widget.autosave_now(blocking=True) == []  # nothing changed since
    widget.set_operation("Grow margin", label=1, size=1.0)
    _run(qtbot, widget)
    snaps = widget.autosave_now(blocking=True)
    assert len(snaps) == 1
    assert len(list_recoverable(tmp_path / "rec")) == 2
    labels.undo()  # an undo is an edit too
    undone = widget.autosave_now(blocking=True)
    assert len(undone) == 1 and len(list_recoverable(tmp_path / "rec")) == 3
    labels.redo()
    assert len(widget.autosave_now(blocking=True)) == 1
    layer = widget.restore_snapshot(snaps[0].id)
    np.testing.assert_array_equal(layer.data, labels.data)
    np.testing.assert_allclose(layer.scale, labels.scale)
    assert layer_table(layer).name_of(1) == "liver"
    widget.set_autosave(True, interval_s=5)
    assert widget._timer.isActive() and widget.autosave_box.isChecked()
    widget.set_autosave(False)
    assert not widget._timer.isActive()


def test_split_beyond_dtype_widens_with_message(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    arr = np.zeros((1, 3, 5), np.uint8)
    arr[0, 1, 0] = arr[0, 1, 2] = arr[0, 1, 4] = 255
    labels = viewer.add_labels(arr)
    widget = dock(viewer)
    widget.labels_combo.set_layer(labels)
    widget.set_operation("Split into components", label=255)
    msg = _run(qtbot, widget)
    assert "now stores uint16" in msg
    assert labels.data.dtype == np.uint16 and sorted(np.unique(labels.data)) == [0, 255, 256, 257]
    labels.undo()  # widening kept napari's history: Ctrl+Z restores the ids exactly
    np.testing.assert_array_equal(np.asarray(labels.data), arr)


def test_relabel_beyond_dtype_through_the_proxy_widens_and_undoes(make_napari_viewer):
    """Relabel to 300 on a uint8 layer (docked as users dock it): no OverflowError, no
    wrapped ids; the layer widens, and both undo paths bring the old ids back."""
    viewer = make_napari_viewer()
    ct = Volume(np.zeros((4, 10, 10), np.int16), spacing=(1.0, 1.0, 2.0), modality="CT")
    arr = np.zeros(ct.shape, np.uint8)
    arr[1:3, 2:6, 2:6] = 1
    arr[0, 0, 0] = 2
    expected = arr.copy()
    data, kw, _ = labels_layer_tuple(arr, ct, LabelTable.from_names({1: "liver", 2: "spleen"}), "seg")
    labels = viewer.add_labels(data, **kw)
    labels.data_setitem((np.array([3]), np.array([9]), np.array([9])), 2)  # an earlier napari step
    expected[3, 9, 9] = 2
    _, widget = viewer.window.add_plugin_dock_widget("napari-medseg", "Label tools")
    widget.labels_combo.set_layer(widget.viewer.layers["seg"])
    n = widget.relabel_class(1, 300)
    assert n == 32 and labels.data.dtype == np.uint16
    assert (np.asarray(labels.data) == 300).sum() == 32 and layer_table(labels).name_of(300) == "liver"
    assert widget.undo_class_change()
    np.testing.assert_array_equal(np.asarray(labels.data), expected)
    assert layer_table(labels).name_of(1) == "liver" and 300 not in layer_table(labels).ids
    assert widget.redo_class_change() and (np.asarray(labels.data) == 300).sum() == 32
    labels.undo()  # Ctrl+Z in the viewer: the relabel
    np.testing.assert_array_equal(np.asarray(labels.data), expected)
    labels.undo()  # and the napari step made before the layer was widened
    assert labels.data[3, 9, 9] == 0


def test_manifest_widgets_construct(make_napari_viewer):
    from napari_medseg._widgets.export import ExportWidget
    from napari_medseg._widgets.statistics import StatisticsWidget

    viewer = make_napari_viewer()
    for cls in (LabelToolsWidget, StatisticsWidget, ExportWidget):
        w = cls(viewer)
        viewer.window.add_dock_widget(w)
        assert w.status.text() is not None


def test_rename_colour_visibility_undo_redo(setup):
    viewer, widget, labels, image, original, ct = setup
    assert not widget.undo_class_button.isEnabled() and not widget.redo_class_button.isEnabled()
    states = [_class_list(labels)]
    widget.rename_class(1, "hepar")
    states.append(_class_list(labels))
    widget.set_class_color(2, (0.0, 1.0, 0.0))
    states.append(_class_list(labels))
    widget.set_class_visible(1, False)
    states.append(_class_list(labels))
    assert states[1][1] == ["background", "hepar", "spleen"]
    assert states[2][2][2] == (0.0, 1.0, 0.0, 1.0) and states[3][2][1][3] == 0.0 and states[3][3] == [1]
    assert widget.undo_class_button.isEnabled() and not widget.redo_class_button.isEnabled()

    assert widget.undo_class_change()
    assert widget.status.text() == "undid: hide label 1"
    assert _class_list(labels) == states[2]
    assert widget.undo_class_change()
    assert _class_list(labels) == states[1]
    assert labels.colormap.color_dict[2][1] != 1.0  # the spleen's own colour is back
    widget.undo_class_button.click()  # the button does the same
    assert _class_list(labels) == states[0]
    assert widget.status.text() == "undid: rename label 1 'liver' -> 'hepar'"
    assert widget.class_table.item(0, 1).text() == "liver"
    assert not widget.undo_class_button.isEnabled() and widget.redo_class_button.isEnabled()
    assert not widget.undo_class_change() and "no class change to undo" in widget.status.text()

    for expected in states[1:]:
        assert widget.redo_class_change()
        assert _class_list(labels) == expected
    assert widget.status.text() == "redid: hide label 1"
    assert widget.class_table.item(0, 3).checkState() == Qt.CheckState.Unchecked  # hidden
    assert not widget.redo_class_change() and not widget.redo_class_button.isEnabled()
    np.testing.assert_array_equal(labels.data, original)  # class-list edits never touch voxels


def test_relabel_undo_redo_restores_voxels_and_table(setup):
    viewer, widget, labels, image, original, ct = setup
    before = _class_list(labels)
    widget.relabel_class(2, 7)
    relabeled = np.array(labels.data)
    after = _class_list(labels)
    assert (relabeled == 7).sum() == (original == 2).sum() > 0 and layer_table(labels).name_of(7) == "spleen"

    assert widget.undo_class_change()
    np.testing.assert_array_equal(labels.data, original)
    assert _class_list(labels) == before and 7 not in layer_table(labels)
    assert widget.status.text() == "undid: relabel 2 -> 7"
    assert widget.redo_class_change()
    np.testing.assert_array_equal(labels.data, relabeled)
    assert _class_list(labels) == after

    # the widget used napari's own step: napari's stack is where Ctrl+Z expects it
    widget.undo_class_change()
    labels.undo()  # nothing older in napari's history: no change
    np.testing.assert_array_equal(labels.data, original)
    labels.redo()  # Ctrl+Shift+Z in the viewer: voxels come back and the table follows
    np.testing.assert_array_equal(labels.data, relabeled)
    assert _class_list(labels) == after and not widget.redo_class_button.isEnabled()


def test_viewer_ctrl_z_of_delete_restores_the_class(setup):
    viewer, widget, labels, image, original, ct = setup
    before = _class_list(labels)
    widget.delete_class(1)
    after = _class_list(labels)
    assert (labels.data == 1).sum() == 0 and 1 not in layer_table(labels)
    labels.undo()  # what Ctrl+Z in the viewer calls
    np.testing.assert_array_equal(labels.data, original)
    assert _class_list(labels) == before and layer_table(labels).name_of(1) == "liver"
    assert "undid (Ctrl+Z in the viewer): delete label 1 'liver'" == widget.status.text()
    assert widget.redo_class_button.isEnabled() and not widget.undo_class_button.isEnabled()
    labels.redo()
    assert (labels.data == 1).sum() == 0 and _class_list(labels) == after
    assert widget.undo_class_change()  # and the widget's undo still works after that
    np.testing.assert_array_equal(labels.data, original)
    assert _class_list(labels) == before


def test_undo_relabel_after_painting_writes_voxels_back(setup):
    viewer, widget, labels, image, original, ct = setup
    before = _class_list(labels)
    widget.relabel_class(2, 7)
    with labels.block_history():  # a brush stroke after the relabel: napari's newest step
        labels.data_setitem((np.array([0, 1]), np.array([0, 1]), np.array([0, 1])), np.array([3, 3], np.uint8))
    painted = np.array(labels.data)
    assert painted[1, 1, 1] == 3 and original[1, 1, 1] == 2  # one spleen voxel painted over
    assert widget.undo_class_change()
    expected = original.copy()
    expected[0, 0, 0] = expected[1, 1, 1] = 3  # the stroke stays; the other ids go back
    np.testing.assert_array_equal(labels.data, expected)
    assert _class_list(labels) == before
    labels.undo()  # Ctrl+Z undoes the write-back: ids 7 again, and the table follows
    np.testing.assert_array_equal(labels.data, painted)
    assert layer_table(labels).name_of(7) == "spleen" and 2 not in layer_table(labels)
    labels.undo()  # then the stroke
    labels.undo()  # then the relabel's voxels: table only follows the newest class change
    np.testing.assert_array_equal(labels.data, original)
    assert _class_list(labels) == before


def test_class_history_is_per_layer_and_new_change_clears_redo(setup):
    viewer, widget, labels, image, original, ct = setup
    other = viewer.add_labels(original.copy(), name="other")
    widget.rename_class(1, "hepar")
    widget.labels_combo.set_layer(other)
    assert not widget.undo_class_button.isEnabled()
    assert not widget.undo_class_change()
    assert layer_table(labels).name_of(1) == "hepar"  # the other layer's change was not undone
    widget.add_class(5, "kidney")
    assert layer_table(other).name_of(5) == "kidney"
    widget.labels_combo.set_layer(labels)
    assert widget.undo_class_button.isEnabled()
    assert widget.undo_class_change() and layer_table(labels).name_of(1) == "liver"
    assert widget.redo_class_button.isEnabled()
    widget.rename_class(2, "lien")  # a new change: the undone rename cannot come back
    assert not widget.redo_class_button.isEnabled() and not widget.redo_class_change()
    assert layer_table(labels).name_of(1) == "liver"
    widget.rename_class(2, "lien")  # the same name again is no change
    assert widget.undo_class_change() and layer_table(labels).name_of(2) == "spleen"
    assert not widget.undo_class_change()

    widget.labels_combo.set_layer(other)
    assert widget.undo_class_change() and 5 not in layer_table(other)
    viewer.layers.remove(other)  # its history goes with it
    assert layer_key(other) not in widget.class_undo.keys and layer_key(other) not in widget._watched
    assert widget.class_undo.keys == [layer_key(labels)]


def test_erase_label_operation_is_one_class_change(qtbot, setup):
    viewer, widget, labels, image, original, ct = setup
    before = _class_list(labels)
    widget.set_operation("Erase label", label=2)
    _run(qtbot, widget)
    assert (labels.data == 2).sum() == 0 and 2 not in layer_table(labels)
    assert widget.undo_class_change()
    np.testing.assert_array_equal(labels.data, original)
    assert _class_list(labels) == before and widget.status.text() == "undid: erase label 2 'spleen'"
    assert widget.redo_class_change()
    assert (labels.data == 2).sum() == 0 and 2 not in layer_table(labels)


def test_class_undo_through_the_plugin_proxy(make_napari_viewer):
    """Docked through the plugin, the widget gets napari's PublicOnlyProxy viewer (a new
    proxy object per attribute access): class changes must still be found for undo,
    and a relabel undone with Ctrl+Z in the viewer must bring the class list back."""
    viewer = make_napari_viewer()
    ct = Volume(np.zeros((6, 16, 16), np.int16), spacing=(1.0, 1.0, 2.0), modality="CT")
    arr = np.zeros(ct.shape, np.uint8)
    arr[1:4, 2:8, 2:8] = 1
    expected = arr.copy()  # the layer may share arr's memory
    data, kw, _ = labels_layer_tuple(arr, ct, LabelTable.from_names({1: "liver"}), "seg")
    labels = viewer.add_labels(data, **kw)
    widget = dock(viewer)
    assert widget.labels_layer() is not widget.labels_layer()  # a new proxy per access
    widget.rename_class(1, "hepar")
    widget.set_class_visible(1, False)
    assert widget.undo_class_button.isEnabled()
    assert widget.undo_class_change() and widget.undo_class_change()
    assert layer_table(labels).name_of(1) == "liver" and hidden_labels(labels) == set()
    assert widget.redo_class_change()
    assert layer_table(labels).name_of(1) == "hepar"
    widget.relabel_class(1, 5)
    assert layer_table(labels).name_of(5) == "hepar" and (np.asarray(labels.data) == 5).sum() == (expected == 1).sum()
    labels.undo()  # Ctrl+Z in the viewer
    np.testing.assert_array_equal(np.asarray(labels.data), expected)
    assert layer_table(labels).name_of(1) == "hepar" and 5 not in layer_table(labels).ids
