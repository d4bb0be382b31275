"""Label tools widget in a real viewer: operations, undo, class list, autosave/restore."""

import numpy as np
import pytest

from napari_medseg._widgets.label_tools import LabelToolsWidget, apply_to_layer, layer_table
from napari_medseg.editing import grow
from napari_medseg.editing.autosave import Autosaver, list_recoverable
from napari_medseg.io.label_table import LabelTable
from napari_medseg.io.layer_data import image_layer_tuple, labels_layer_tuple
from napari_medseg.io.volume import Volume


@pytest.fixture
def setup(make_napari_viewer, tmp_path):
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
    widget = LabelToolsWidget(viewer, autosaver=Autosaver(tmp_path / "rec", session="gui"))
    widget.labels_combo.set_layer(labels)
    return viewer, widget, labels, image, arr.copy(), ct


def _run(qtbot, widget):
    with qtbot.waitSignal(widget.finished, timeout=30000) as blocker:
        worker = widget.run()
        assert worker is not None
    return blocker.args[0]


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
    widget = LabelToolsWidget(viewer)
    widget.labels_combo.set_layer(labels)
    widget.set_operation("Split into components", label=255)
    msg = _run(qtbot, widget)
    assert "cannot be undone" in msg
    assert labels.data.dtype == np.uint16 and sorted(np.unique(labels.data)) == [0, 255, 256, 257]


def test_manifest_widgets_construct(make_napari_viewer):
    from napari_medseg._widgets.export import ExportWidget
    from napari_medseg._widgets.statistics import StatisticsWidget

    viewer = make_napari_viewer()
    for cls in (LabelToolsWidget, StatisticsWidget, ExportWidget):
        w = cls(viewer)
        viewer.window.add_dock_widget(w)
        assert w.status.text() is not None
