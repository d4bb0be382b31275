"""GUI tests of the "Interactive segmentation" widget, docked as users dock it.

Every test docks the widget with ``viewer.window.add_plugin_dock_widget`` (napari then
hands it a ``PublicOnlyProxy`` viewer, whose every attribute access is a new object)
and drives multi-step sessions through the widget's public methods, waiting on its
``finished`` signal: the numbers must move the right way at each step.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_medseg.io.label_table import LabelTable, UNLISTED_COLOR
from napari_medseg.io.layer_data import image_layer_tuple, labels_layer_tuple
from napari_medseg.io.volume import Volume
from napari_medseg.prompts.region_growing import RegionGrowingSession
from tests.napari_open import open_as_user, viewer_after_first_use  # noqa: F401  (fixture)


pytestmark = pytest.mark.gui


PLUGIN = "napari-medseg"


TIMEOUT_MS = 60000


def _two_blobs_volume(spacing=(1.0, 1.0, 2.5), direction=None) -> Volume:
    """Two bright spheres (100 HU and 200 HU) in a 0 HU background, anisotropic voxels."""
    rng = np.random.default_rng(0)
    shape = (24, 48, 64)
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    sz = spacing[2]  # spacing is x, y, z
    arr = np.zeros(shape)
    a = ((z - 12) * sz) ** 2 + ((y - 24) * spacing[1]) ** 2 + ((x - 18) * spacing[0]) ** 2 < 12 ** 2
    b = ((z - 12) * sz) ** 2 + ((y - 24) * spacing[1]) ** 2 + ((x - 46) * spacing[0]) ** 2 < 10 ** 2
    arr[a] += 100
    arr[b] += 200
    # a scanner's point-spread (partial volume at borders), then noise
    arr = ndi.gaussian_filter(arr, 0.8) + rng.normal(0, 10, shape)
    kwargs = {} if direction is None else {"direction": direction}
    return Volume(arr.astype(np.int16), spacing=spacing, origin=(-30.0, 12.0, 5.0), modality="CT", **kwargs), a, b


def _dock(viewer, name="Interactive segmentation"):
    """Dock a widget of the plugin the way the Plugins menu does (through the proxy)."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    assert type(widget.viewer).__name__ == "PublicOnlyProxy"
    return widget


def _add_image(viewer, volume, name="ct"):
    data, kwargs, _ = image_layer_tuple(volume, name)
    return viewer.add_image(data, **kwargs)


def _widget(make_napari_viewer, volume):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    image = _add_image(viewer, volume)
    return viewer, image, widget


def _wait(qtbot, widget, timeout=30000):
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)


def _step(qtbot, widget, method, *args, **kwargs):
    """Call one of the widget's interaction methods and wait for its ``finished`` signal."""
    with qtbot.waitSignal(widget.finished, timeout=TIMEOUT_MS):
        method(*args, **kwargs)
    assert not widget.busy


def _world(image, zyx):
    return np.asarray(image.data_to_world(np.asarray(zyx, dtype=float)))


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def _inner_point(mask):
    """The voxel deepest inside ``mask`` (a click a user would make in the structure)."""
    d = ndi.distance_transform_edt(mask)
    return tuple(int(v) for v in np.unravel_index(np.argmax(d), mask.shape))


def _color(layer, label_id):
    return tuple(round(float(c), 4) for c in layer.colormap.color_dict[label_id])


# ---------------------------------------------------------------- multi-step sessions
def _phantom():
    from napari_medseg.phantom import make_phantom

    ph = make_phantom(shape=(40, 96, 96), spacing_zyx=(5.0, 2.1, 2.1), n_lesions=1)
    return ph, ph.label_ids


def layer_table_names(layer):
    from napari_medseg._widgets._layers import layer_table

    return layer_table(layer).names


def test_click_segments_into_new_labels_layer(make_napari_viewer, qtbot):
    volume, a, b = _two_blobs_volume()
    viewer, image, widget = _widget(make_napari_viewer, volume)
    widget.add_point_world(_world(image, (12, 24, 18)), positive=True)
    _wait(qtbot, widget)
    assert widget.last_error == ""
    labels = widget.labels_layer
    assert labels.data.shape == volume.shape
    assert np.allclose(labels.scale, image.scale) and np.allclose(labels.translate, image.translate)
    got = labels.data == 1
    dice = 2 * (got & a).sum() / (got.sum() + a.sum())
    assert dice > 0.9
    assert not (got & b).any()
    # the click is in the prompts layer, which lies on the image's grid, in mm
    points = viewer.layers["prompts"]
    assert len(points.data) == 1
    assert np.allclose(points.data_to_world(points.data[0]), _world(image, (12, 24, 18)))
    assert np.allclose(points.scale, image.scale) and tuple(points.units) == tuple(image.units)


def test_oblique_affine_clicks_map_to_the_right_voxel(make_napari_viewer, qtbot):
    # flipped x and y (LPS-like direction): world_to_data must undo the affine
    volume, a, b = _two_blobs_volume(direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))
    viewer, image, widget = _widget(make_napari_viewer, volume)
    assert widget.world_to_voxel(_world(image, (12, 24, 46))) == (12, 24, 46)
    widget.add_point_world(_world(image, (12, 24, 46)))
    _wait(qtbot, widget)
    got = widget.labels_layer.data == 1
    assert 2 * (got & b).sum() / (got.sum() + b.sum()) > 0.9


def test_next_object_undo_and_no_overwrite(make_napari_viewer, qtbot):
    volume, a, b = _two_blobs_volume()
    viewer, image, widget = _widget(make_napari_viewer, volume)
    labels = widget.create_labels_layer()
    # a voxel of another label inside blob b must survive (default: never overwrite)
    labels.data[12, 24, 46] = 7
    widget.add_point_voxel((12, 24, 18))
    _wait(qtbot, widget)
    assert (labels.data == 1).sum() > 100
    first = labels.data == 1
    widget.next_object()
    assert widget.label_id == 8  # the next free id: above every id in use (7 is another label's)
    assert len(viewer.layers["prompts"].data) == 0
    widget.add_point_voxel((12, 24, 44))
    _wait(qtbot, widget)
    assert (labels.data == 8).sum() > 100
    assert labels.data[12, 24, 46] == 7, "another label was overwritten"
    assert np.array_equal(labels.data == 1, first), "object 2 overwrote object 1"
    # session undo (Ctrl+Z on the prompts layer): object 2 disappears, object 1 stays
    widget.undo()
    _wait(qtbot, widget)
    assert (labels.data == 8).sum() == 0
    assert (labels.data == 1).sum() > 100
    assert len(viewer.layers["prompts"].data) == 0


def test_overwrite_allowed_when_ticked(make_napari_viewer, qtbot):
    volume, a, b = _two_blobs_volume()
    viewer, image, widget = _widget(make_napari_viewer, volume)
    labels = widget.create_labels_layer()
    labels.data[12, 24, 18] = 5
    labels.data[12, 25, 18] = 5
    widget.overwrite_check.setChecked(True)
    widget.add_point_voxel((12, 24, 17))
    _wait(qtbot, widget)
    assert labels.data[12, 24, 18] == 1 and labels.data[12, 25, 18] == 1


def test_napari_undo_reverts_the_last_write(make_napari_viewer, qtbot):
    volume, a, b = _two_blobs_volume()
    viewer, image, widget = _widget(make_napari_viewer, volume)
    labels = widget.create_labels_layer()
    widget.add_point_voxel((12, 24, 18))
    _wait(qtbot, widget)
    first = labels.data.copy()
    widget.add_point_voxel((12, 24, 46))  # a second positive click adds blob b
    _wait(qtbot, widget)
    assert (labels.data[b] == 1).mean() > 0.7
    labels.undo()  # napari's own undo of the Labels layer
    assert np.array_equal(labels.data, first)
    labels.undo()
    assert not labels.data.any()


def test_negative_click_mode_toggle_and_reset(make_napari_viewer, qtbot):
    volume, a, b = _two_blobs_volume()
    viewer, image, widget = _widget(make_napari_viewer, volume)
    labels = widget.create_labels_layer()
    widget.add_point_voxel((12, 24, 18))
    _wait(qtbot, widget)
    assert widget.positive
    widget.toggle_mode()
    assert not widget.positive
    before = (labels.data == 1).sum()
    widget.add_point_voxel((12, 24, 26))  # negative click inside the blob's edge
    _wait(qtbot, widget)
    assert labels.data[12, 24, 26] == 0
    assert (labels.data == 1).sum() < before
    colors = viewer.layers["prompts"].face_color
    assert colors[0][1] > 0.5 and colors[1][0] > 0.5  # green then red
    widget.reset()
    _wait(qtbot, widget)
    assert not labels.data.any()
    assert len(viewer.layers["prompts"].data) == 0


def test_box_prompt_and_refine_existing(make_napari_viewer, qtbot):
    volume, a, b = _two_blobs_volume()
    viewer, image, widget = _widget(make_napari_viewer, volume)
    labels = widget.create_labels_layer()
    # box around blob b drawn on one slice: it spans box-depth mm across slices
    widget.box_depth.setValue(60.0)
    widget.add_box_world(_world(image, (12, 12, 34)), _world(image, (12, 36, 58)))
    _wait(qtbot, widget)
    got = labels.data == 1
    assert 2 * (got & b).sum() / (got.sum() + b.sum()) > 0.85
    # refine: start from the existing label, a negative click removes a part
    widget.next_object()
    widget.label_spin.setValue(1)
    widget.refine_existing()
    _wait(qtbot, widget)
    assert np.array_equal(labels.data == 1, got)
    widget.add_point_voxel((12, 24, 55), positive=False)
    _wait(qtbot, widget)
    assert labels.data[12, 24, 55] == 0
    assert (labels.data == 1).sum() > 0.3 * got.sum()


def test_click_outside_image_is_a_message(make_napari_viewer, qtbot):
    volume, a, b = _two_blobs_volume()
    viewer, image, widget = _widget(make_napari_viewer, volume)
    widget.add_point_world(_world(image, (12, 24, 500)))
    _wait(qtbot, widget)
    assert "outside the image" in widget.last_error
    assert "prompts" not in viewer.layers or len(viewer.layers["prompts"].data) == 0


def test_keyboard_shortcuts_bound_on_prompts_layer(make_napari_viewer, qtbot):
    volume, a, b = _two_blobs_volume()
    viewer, image, widget = _widget(make_napari_viewer, volume)
    widget.activate()
    layer = viewer.layers["prompts"]
    assert layer.mode == "add"
    assert viewer.layers.selection.active is layer  # selected through the proxy, on the real viewer
    keys = {str(k).lower() for k in layer.keymap}
    assert {"t", "m", "r"} <= keys
    assert any("ctrl" in k and "z" in k for k in keys)
    layer.keymap[next(k for k in layer.keymap if str(k).lower() == "t")](layer)
    assert not widget.positive


def test_mouse_added_point_segments(make_napari_viewer, qtbot):
    volume, a, b = _two_blobs_volume()
    viewer, image, widget = _widget(make_napari_viewer, volume)
    widget.activate()
    layer = viewer.layers["prompts"]
    layer.add(layer.world_to_data(_world(image, (12, 24, 18))))  # what napari does on a click in add mode
    _wait(qtbot, widget)
    got = widget.labels_layer.data == 1
    assert 2 * (got & a).sum() / (got.sum() + a.sum()) > 0.9


def test_session_through_the_plugin_proxy_on_the_phantom(make_napari_viewer, qtbot, tmp_path):
    """The path a radiologist takes: positive, negative, undo, next object, box, refine.

    Through the proxy each attribute access is a new object: keyed on id() the session
    restarted at every click (a negative click then wiped a box-shaped block and Undo
    click found nothing to undo)."""
    ph, ids = _phantom()
    liver, spleen, kidney = ph.labels == ids["liver"], ph.labels == ids["spleen"], ph.labels == ids["kidney_left"]
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    image = _add_image(viewer, ph.ct)
    assert widget.image_layer is not widget.image_layer  # a new proxy per access
    labels = widget.create_labels_layer()
    assert labels.data.dtype == np.uint8
    tools = _dock(viewer, "Label tools")  # docked beside it: its class list follows the objects
    tools.labels_combo.set_layer(tools.viewer.layers[labels.name])
    assert tools.class_table.rowCount() == 0

    # 1. positive click in the liver, named "liver"
    widget.name_edit.setText("liver")
    _step(qtbot, widget, widget.add_point_voxel, _inner_point(liver), positive=True)
    assert widget.last_error == ""
    first = np.asarray(labels.data) == 1
    c1 = int(first.sum())
    assert c1 > 0 and _dice(first, liver) > 0.8
    assert "liver" in widget.status.text() and "voxels" in widget.status.text()
    assert widget.last_report.startswith("clicked voxel")  # the click's HU and position are echoed
    # 2. negative click where the object leaked out of the liver: it shrinks, but stays
    leak = first & ~liver
    assert leak.any()
    _step(qtbot, widget, widget.add_point_voxel, _inner_point(leak), positive=False)
    second = np.asarray(labels.data) == 1
    c2 = int(second.sum())
    assert 0.5 * c1 < c2 < c1, (c1, c2)
    assert _dice(second, liver) > 0.6
    assert not (second & ~first).any() or (second & ~first).sum() < 0.01 * c1
    # 3. undo click: exactly the first result again, one prompt left
    _step(qtbot, widget, widget.undo)
    assert "nothing to undo" not in widget.status.text()
    np.testing.assert_array_equal(np.asarray(labels.data) == 1, first)
    assert len(viewer.layers["prompts"].data) == 1

    # 4. next object: a new id, a new colour, the name typed for it; the liver untouched
    widget.next_object()
    assert widget.label_id == 2 and widget.name_edit.text() == ""
    widget.name_edit.setText("spleen")
    _step(qtbot, widget, widget.add_point_voxel, _inner_point(spleen))
    obj2 = np.asarray(labels.data) == 2
    assert obj2.sum() > 0 and _dice(obj2, spleen) > 0.8
    np.testing.assert_array_equal(np.asarray(labels.data) == 1, first)
    colors = {i: _color(labels, i) for i in (1, 2)}
    assert colors[1] != colors[2] and UNLISTED_COLOR not in colors.values()
    assert all(c[3] == 1.0 for c in colors.values())

    # 5. box around the left kidney (next object)
    widget.next_object()
    assert widget.label_id == 3
    widget.name_edit.setText("kidney_left")
    box = ndi.find_objects(kidney.astype(np.uint8))[0]
    lo = [s.start for s in box]
    hi = [s.stop - 1 for s in box]
    widget.box_depth.setValue(1.0)
    _step(qtbot, widget, widget.add_box_world, _world(image, lo), _world(image, hi))
    obj3 = np.asarray(labels.data) == 3
    assert obj3.sum() > 0 and _dice(obj3, kidney) > 0.5
    outside = np.ones(obj3.shape, bool)
    outside[tuple(slice(a, b + 1) for a, b in zip(lo, hi))] = False
    assert not (obj3 & outside).any(), "the box object leaks out of its box"
    np.testing.assert_array_equal(np.asarray(labels.data) == 1, first)
    np.testing.assert_array_equal(np.asarray(labels.data) == 2, obj2)

    # 6. refine the existing liver: the Name field shows its name, a negative click carves
    widget.label_spin.setValue(1)
    assert widget.name_edit.text() == "liver"
    _step(qtbot, widget, widget.refine_existing)
    np.testing.assert_array_equal(np.asarray(labels.data) == 1, first)
    _step(qtbot, widget, widget.add_point_voxel, _inner_point(leak), positive=False)
    refined = np.asarray(labels.data) == 1
    assert 0 < refined.sum() < c1 and not (refined & ~first).any()
    assert _dice(refined, liver) > 0.5  # carved, not collapsed (0.59 with region growing)
    np.testing.assert_array_equal(np.asarray(labels.data) == 2, obj2)
    labels.undo()  # Ctrl+Z on the Labels layer reverts that write
    np.testing.assert_array_equal(np.asarray(labels.data) == 1, first)

    # names in the class table the whole plugin reads
    from napari_medseg._widgets._layers import layer_table

    table = layer_table(labels)
    assert table.names == {1: "liver", 2: "spleen", 3: "kidney_left"}
    assert list(labels.features["name"]) == ["background", "liver", "spleen", "kidney_left"]
    assert labels.metadata["medseg_label_table"]["labels"][0]["name"] == "liver"
    # what DICOM-SEG writes as each segment's algorithm: prompted objects are semi-automatic
    assert {table.algorithm_of(i) for i in (1, 2, 3)} == {("SEMIAUTOMATIC", "region-growing")}
    listed = {tools.class_table.item(r, 0).text(): tools.class_table.item(r, 1).text()
              for r in range(tools.class_table.rowCount())}
    assert listed == {"1": "liver", "2": "spleen", "3": "kidney_left"}  # kept up to date live


def test_names_reach_statistics_and_export(make_napari_viewer, qtbot, tmp_path):
    from napari_medseg.io.label_table import sidecar_path
    from napari_medseg.io.readers import read_labels

    ph, ids = _phantom()
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    _add_image(viewer, ph.ct)
    labels = widget.create_labels_layer()
    widget.name_edit.setText("liver")
    _step(qtbot, widget, widget.add_point_voxel, _inner_point(ph.labels == ids["liver"]))
    widget.next_object()
    _step(qtbot, widget, widget.add_point_voxel, _inner_point(ph.labels == ids["spleen"]))
    widget.name_edit.setText("spleen")
    widget.rename_object()  # a name typed after the first click names the object too
    assert layer_table_names(labels) == {1: "liver", 2: "spleen"}

    stats = _dock(viewer, "Statistics")
    stats.labels_combo.set_layer(stats.viewer.layers[labels.name])
    stats.image_combo.set_layer(stats.viewer.layers["ct"])
    with qtbot.waitSignal(stats.updated, timeout=TIMEOUT_MS):
        stats.refresh()
    assert [row["name"] for row in stats.stats] == ["liver", "spleen"]
    assert all(row["voxels"] > 0 for row in stats.stats)

    export = _dock(viewer, "Export labels")
    export.labels_combo.set_layer(export.viewer.layers[labels.name])
    for fmt, fname in [("NIfTI (.nii.gz)", "objects.nii.gz"), ("3D Slicer segmentation (.seg.nrrd)", "objects.seg.nrrd")]:
        export.set_format(fmt)
        with qtbot.waitSignal(export.exported, timeout=TIMEOUT_MS) as blocker:
            export.export(tmp_path / fname)
        assert blocker.args[0].startswith("wrote"), blocker.args[0]
        back, table = read_labels(tmp_path / fname, reference=ph.ct)
        assert table.names == {1: "liver", 2: "spleen"}, fname
        np.testing.assert_array_equal(back.array, np.asarray(labels.data))
    doc = json.loads(sidecar_path(tmp_path / "objects.nii.gz").read_text())
    assert [e["name"] for e in doc["labels"]] == ["liver", "spleen"]


def test_label_id_beyond_the_layer_dtype_widens_it(make_napari_viewer, qtbot):
    """Label 300 on a uint8 layer: no OverflowError in a Qt slot, no wrapped ids; the
    layer widens without losing a voxel and Ctrl+Z still works."""
    volume, a, b = _two_blobs_volume()
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    _add_image(viewer, volume)
    seg = np.zeros(volume.shape, np.uint8)
    seg[12, 24, 46] = 7  # another structure inside blob b
    seg[0, 0, 0] = 255
    data, kwargs, _ = labels_layer_tuple(seg, volume, LabelTable.from_names({7: "vessel", 255: "marker"}), "seg")
    labels = viewer.add_labels(data, **kwargs)
    widget.labels_combo.setCurrentText("seg")
    labels.data_setitem((np.array([1]), np.array([1]), np.array([1])), 9)  # an earlier edit, undoable
    widget.label_spin.setValue(300)
    widget.name_edit.setText("big id")
    _step(qtbot, widget, widget.add_point_voxel, (12, 24, 46))
    assert widget.last_error == ""
    assert labels.data.dtype == np.uint16 and "uint16" in widget.status.text()
    assert (np.asarray(labels.data) == 300).sum() > 100
    assert labels.data[12, 24, 46] == 7 and labels.data[0, 0, 0] == 255 and labels.data[1, 1, 1] == 9
    assert layer_table_names(labels)[300] == "big id"
    labels.undo()  # the object's write
    assert not (np.asarray(labels.data) == 300).any() and labels.data[1, 1, 1] == 9
    labels.undo()  # the edit made before the layer was widened
    assert labels.data[1, 1, 1] == 0 and labels.data[12, 24, 46] == 7


def test_real_ct_session_opened_as_a_user_opens_it(viewer_after_first_use, qtbot, shared_data):
    """The real CT opened as ``napari FILE`` opens it; liver, a leak carved, undo, then the spleen.

    Each step's Dice against TotalSegmentator's labels must move the right way: the
    negative click removes leaked voxels without losing the liver, undo restores the
    exact mask, a positive click in a missed part adds to it, and the next object gets
    the next id without touching the liver.
    """
    from napari_medseg.io.readers import read_volume

    folder = shared_data / "totalseg_example"
    reference = read_volume(folder / "example_seg.nii.gz").array  # TotalSegmentator: 5 = liver
    liver, spleen = reference == 5, reference == 1
    viewer = viewer_after_first_use
    [image] = open_as_user(viewer, folder / "example_ct_sm.nii.gz")
    assert image.data.shape == reference.shape
    widget = _dock(viewer)
    widget.name_edit.setText("liver")
    _step(qtbot, widget, widget.add_point_voxel, _inner_point(liver))
    labels = widget.labels_layer
    first = np.asarray(labels.data) == 1
    assert _dice(first, liver) > 0.8
    assert "HU" in widget.last_report
    leak = first & ~liver
    _step(qtbot, widget, widget.add_point_voxel, _inner_point(leak), positive=False)
    second = np.asarray(labels.data) == 1
    assert (second & leak).sum() < leak.sum(), "the negative click removed no leaked voxel"
    assert not (second & ~first).any(), "a negative click added voxels"
    assert _dice(second, liver) > 0.8  # the liver itself stays
    _step(qtbot, widget, widget.undo)
    np.testing.assert_array_equal(np.asarray(labels.data) == 1, first)
    missed = liver & ~first
    _step(qtbot, widget, widget.add_point_voxel, _inner_point(missed), positive=True)
    third = np.asarray(labels.data) == 1
    assert not (first & ~third).any(), "a positive click removed voxels"
    assert (third & missed).sum() > 0 and _dice(third, liver) >= _dice(first, liver) - 0.02
    assert layer_table_names(labels) == {1: "liver"}

    widget.next_object()
    widget.name_edit.setText("spleen")
    _step(qtbot, widget, widget.add_point_voxel, _inner_point(spleen))
    assert widget.label_id == 2
    assert _dice(np.asarray(labels.data) == 2, spleen) > 0.85
    np.testing.assert_array_equal(np.asarray(labels.data) == 1, third, err_msg="the spleen changed the liver")
    assert layer_table_names(labels) == {1: "liver", 2: "spleen"}


def test_refining_a_model_label_keeps_its_name_and_marks_it_edited(make_napari_viewer, qtbot):
    volume, a, b = _two_blobs_volume()
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    _add_image(viewer, volume)
    seg = np.zeros(volume.shape, np.uint8)
    seg[a] = 4
    table = LabelTable.from_names({4: "liver"}).with_provenance("AUTOMATIC", "total")
    data, kwargs, _ = labels_layer_tuple(seg, volume, table, "model output")
    labels = viewer.add_labels(data, **kwargs)
    widget.labels_combo.setCurrentText("model output")
    widget.label_spin.setValue(4)
    assert widget.name_edit.text() == "liver"
    _step(qtbot, widget, widget.refine_existing)
    _step(qtbot, widget, widget.add_point_voxel, (12, 24, 26), positive=False)
    after = np.asarray(labels.data) == 4
    assert 0 < after.sum() < a.sum() and labels.data[12, 24, 26] == 0
    refined = layer_table_names(labels)
    assert refined == {4: "liver"}
    from napari_medseg._widgets._layers import layer_table

    assert layer_table(labels).algorithm_of(4) == ("SEMIAUTOMATIC", "total")
    assert _color(labels, 4) == tuple(round(c, 4) for c in table.color_of(4))  # its colour is kept


# --- bad input and faults


@pytest.mark.gui
def test_widget_cancel_and_backend_error_leave_layers_unchanged(make_napari_viewer, qtbot, monkeypatch):
    """A failing backend and a cancelled click leave the labels as they were; the
    widget stays usable and the next click works."""
    from napari_medseg._widgets.interactive import InteractiveSegmentationWidget
    from napari_medseg.io.layer_data import image_layer_tuple

    rng = np.random.default_rng(0)
    arr = rng.normal(0, 10, (10, 40, 40)).astype(np.int16)
    arr[3:7, 10:30, 10:30] += 100
    volume = Volume(arr, spacing=(1.0, 1.0, 2.0), modality="CT")
    viewer = make_napari_viewer()
    data, kwargs, _ = image_layer_tuple(volume, "ct")
    viewer.add_image(data, **kwargs)
    widget = InteractiveSegmentationWidget(viewer)
    labels = widget.create_labels_layer()
    labels.data[0, 0, 0] = 9
    before = labels.data.copy()

    original = RegionGrowingSession._predict

    def broken(self, prompts, state):
        raise RuntimeError("simulated out of memory")

    monkeypatch.setattr(RegionGrowingSession, "_predict", broken)
    widget.add_point_voxel((5, 20, 20))
    qtbot.waitUntil(lambda: not widget.busy, timeout=30000)
    assert "simulated out of memory" in widget.last_error
    assert np.array_equal(labels.data, before)
    assert len(viewer.layers["prompts"].data) == 0

    # a cancelled click: the worker finishes its step, then nothing is written
    monkeypatch.setattr(RegionGrowingSession, "_predict", original)
    widget.add_point_voxel((5, 20, 20))
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30000)
    assert np.array_equal(labels.data, before)
    assert len(viewer.layers["prompts"].data) == 0
    assert not widget._session.prompts.points if widget._session is not None else True

    widget.add_point_voxel((5, 20, 20))
    qtbot.waitUntil(lambda: not widget.busy, timeout=30000)
    assert (labels.data == 1).sum() > 100
    assert labels.data[0, 0, 0] == 9


# ---------------------------------------------------------------- where it runs: a server
def _use_server(widget, url, token_file):
    """Fill in Options > Where it runs as a user does (pick "a server", type URL and file)."""
    fields = widget.server
    fields.where_combo.setCurrentIndex(fields.where_combo.findData(True))
    for edit, text in ((fields.url_edit, url), (fields.token_edit, str(token_file))):
        edit.setText(text)
        edit.editingFinished.emit()


def _session_steps(qtbot, widget, labels):
    """Positive click, negative click, undo, next object, positive click: label counts after each."""
    counts = []
    for step in (lambda: widget.add_point_voxel((12, 24, 18), positive=True),
                 lambda: widget.add_point_voxel((12, 24, 26), positive=False),
                 widget.undo,
                 lambda: (widget.next_object(), widget.add_point_voxel((12, 24, 46), positive=True))):
        _step(qtbot, widget, step)
        assert widget.last_error == "", widget.last_error
        counts.append((int((labels.data == 1).sum()), int((labels.data == 2).sum()), labels.data.copy()))
    return counts


def test_a_server_session_writes_what_a_local_one_writes(make_napari_viewer, qtbot, medseg_server):
    """The same clicks on this computer and on a loopback server give the same labels at
    every step; the choice is remembered for the next dock (the token file's path only)."""
    from napari_medseg.serve.settings import load_setting, settings_path

    volume, a, b = _two_blobs_volume()
    runs = {}
    for where in ("here", "server"):
        viewer, image, widget = _widget(make_napari_viewer, volume)
        if where == "server":
            assert not widget.server.setting().remote  # this computer until the user picks a server
            _use_server(widget, medseg_server.url, medseg_server.token_file)
        labels = widget.create_labels_layer()
        runs[where] = _session_steps(qtbot, widget, labels)
        if where == "server":
            assert len(medseg_server.handle.app.state.sessions) == 1  # one upload, reused by every click
            assert "ms" in widget.status.text() and widget.server.setting().remote
    for (l1, l2, here), (r1, r2, there) in zip(runs["here"], runs["server"]):
        assert (l1, l2) == (r1, r2) and np.array_equal(here, there)
    counts = [(c1, c2) for c1, c2, _ in runs["server"]]
    assert counts[0][0] > 100 and counts[0][1] == 0  # the click finds blob a
    assert counts[1][0] < counts[0][0]  # the negative click removes voxels
    assert counts[2][0] == counts[0][0]  # undo brings them back
    assert counts[3][0] == counts[0][0] and counts[3][1] > 100  # object 2 is blob b, object 1 kept
    # remembered: a new dock (next napari session) shows the server; the file holds no token
    saved = load_setting()
    assert saved.remote and saved.url == medseg_server.url and saved.token_file == str(medseg_server.token_file)
    token = medseg_server.token_file.read_text().strip()
    assert token not in settings_path().read_text()
    viewer = make_napari_viewer()
    assert _dock(viewer).server.setting() == saved


def test_a_lost_server_leaves_the_layers_and_says_so(make_napari_viewer, qtbot, medseg_server):
    """The server stops between clicks: the click is taken back, the labels are untouched and
    the status names the server and what to check; this computer then works again."""
    volume, a, b = _two_blobs_volume()
    viewer, image, widget = _widget(make_napari_viewer, volume)
    _use_server(widget, medseg_server.url, medseg_server.token_file)
    labels = widget.create_labels_layer()
    _step(qtbot, widget, widget.add_point_voxel, (12, 24, 18))
    before = labels.data.copy()
    assert (before == 1).sum() > 100
    medseg_server.handle.stop()
    _step(qtbot, widget, widget.add_point_voxel, (12, 24, 46))
    assert "cannot reach the medseg server" in widget.last_error or "lost the medseg server" in widget.last_error
    assert medseg_server.url in widget.last_error and "Server URL" in widget.last_error
    assert "Error:" in widget.status.text()
    assert np.array_equal(labels.data, before)
    assert len(viewer.layers["prompts"].data) == 1  # the failed click left the prompts layer
    # back to this computer: the next click works (a new local session, same object)
    widget.server.where_combo.setCurrentIndex(widget.server.where_combo.findData(False))
    _step(qtbot, widget, widget.add_point_voxel, (12, 24, 46))
    assert widget.last_error == ""
    assert (labels.data == 1).sum() > 100 and (labels.data[b] == 1).mean() > 0.7


def test_a_wrong_or_missing_token_is_a_clear_message(make_napari_viewer, qtbot, medseg_server, tmp_path):
    import os

    volume, a, b = _two_blobs_volume()
    viewer, image, widget = _widget(make_napari_viewer, volume)
    labels = widget.create_labels_layer()
    wrong = tmp_path / "wrong-token"
    fd = os.open(wrong, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("a-token-the-server-does-not-know\n")
    for token_file, words in ((wrong, "refused the token (401)"), (tmp_path / "nothing-here", "does not exist")):
        _use_server(widget, medseg_server.url, token_file)
        _step(qtbot, widget, widget.add_point_voxel, (12, 24, 18))
        assert words in widget.last_error, widget.last_error
        assert not labels.data.any() and len(viewer.layers["prompts"].data) == 0
        if token_file == wrong:  # widget wording: the field to change, no command-line flag
            assert "Options > Token file" in widget.last_error and "--token-file" not in widget.last_error
    assert len(medseg_server.handle.app.state.sessions) == 0
    # the right file: the same dock now works
    _use_server(widget, medseg_server.url, medseg_server.token_file)
    _step(qtbot, widget, widget.add_point_voxel, (12, 24, 18))
    assert widget.last_error == "" and (labels.data == 1).sum() > 100


def test_a_session_the_server_dropped_is_uploaded_again(make_napari_viewer, qtbot, medseg_server):
    """The server reaped the session (idle timeout, restart): that click says so and is taken
    back; the next click uploads the image again and segments."""
    import time

    volume, a, b = _two_blobs_volume()
    viewer, image, widget = _widget(make_napari_viewer, volume)
    _use_server(widget, medseg_server.url, medseg_server.token_file)
    labels = widget.create_labels_layer()
    _step(qtbot, widget, widget.add_point_voxel, (12, 24, 18))
    before = labels.data.copy()
    store = medseg_server.handle.app.state.sessions
    assert len(store.reap(now=time.monotonic() + 1e6)) == 1 and len(store) == 0
    _step(qtbot, widget, widget.add_point_voxel, (12, 24, 46))
    assert "404" in widget.last_error and "uploaded anew" in widget.last_error
    assert np.array_equal(labels.data, before) and len(viewer.layers["prompts"].data) == 1
    _step(qtbot, widget, widget.add_point_voxel, (12, 24, 46))
    assert widget.last_error == "" and len(store) == 1
    assert (labels.data[b] == 1).mean() > 0.7


def test_what_the_session_says_reaches_the_status_line(make_napari_viewer, qtbot):
    """A session's message (SAM-Med3D: the object reaches the edge of its crop; nnInteractive:
    spacing ignored) is shown with the click's result, and goes when the session stops saying it."""
    volume, a, b = _two_blobs_volume()
    viewer, image, widget = _widget(make_napari_viewer, volume)
    widget.add_point_world(_world(image, (12, 24, 18)), positive=True)
    _wait(qtbot, widget)
    assert "crop" not in widget.status.text()
    said = "the object reaches the edge of the 128³ SAM-Med3D crop (19 cm) along z"
    widget._session.message = said  # what a backend sets during its click
    widget.add_point_world(_world(image, (12, 25, 18)), positive=True)
    _wait(qtbot, widget)
    assert said in widget.status.text() and "voxels" in widget.status.text()
    widget._session.message = ""
    widget.add_point_world(_world(image, (12, 23, 18)), positive=True)
    _wait(qtbot, widget)
    assert said not in widget.status.text()


# ------------------------------------------------------- N4 bias-field correction (MR)
def test_bias_correction_option_on_an_mr_volume(make_napari_viewer, qtbot, monkeypatch):
    """Off by default; offered for the MR phantom with the weights-free backend, not for CT or a
    network backend; ticked, the clicks give what the core's bias-corrected session gives, and
    the correction runs once for the image however many objects are clicked."""
    from napari_medseg.inference import bias_field
    from napari_medseg.phantom import make_phantom, mr_contrast
    from napari_medseg.prompts.factory import make_session

    ph = make_phantom(seed=0, shape=(48, 128, 128), spacing_zyx=(4.0, 1.6, 1.6), n_lesions=2)
    t1 = mr_contrast(ph, "T1")
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    ct_layer = _add_image(viewer, ph.ct, "ct")
    mr_layer = _add_image(viewer, t1, "t1")
    check = widget.bias_check
    widget.image_combo.set_layer(ct_layer)
    assert not check.isEnabled() and not check.isChecked() and "CT" in check.toolTip()
    widget.image_combo.set_layer(mr_layer)
    assert check.isEnabled() and not check.isChecked()  # offered, default off
    widget.backend_combo.setCurrentIndex(widget.backend_combo.findData("sam-med3d"))
    assert not check.isEnabled() and "weights-free" in check.toolTip()
    widget.backend_combo.setCurrentIndex(widget.backend_combo.findData("region-growing"))
    assert check.isEnabled()
    check.setChecked(True)

    bias_field.clear_cache()
    fits = []
    real = bias_field._fit_and_divide
    monkeypatch.setattr(bias_field, "_fit_and_divide", lambda *a, **k: fits.append(1) or real(*a, **k))
    ids = {n: i for i, n in ph.names.items()}
    expected = make_session("region-growing", bias_correct=True)
    expected.set_volume(t1)
    for n, organ in enumerate(("liver", "spleen")):
        point = _inner_point(ph.labels == ids[organ])
        if n:
            widget.next_object()
            _wait(qtbot, widget)
        _step(qtbot, widget, widget.add_point_voxel, point, positive=True)
        assert widget.last_error == ""
        expected.reset()
        assert np.array_equal(np.asarray(widget.labels_layer.data) == n + 1, expected.add_point(point).mask)
    assert len(fits) == 1  # computed once for the image (by the test's own session: the cache)
    bias_field.clear_cache()


# ------------------------------------------------------------------ CPU runtime
def test_cpu_runtime_choice_reaches_network_sessions_and_is_reported(make_napari_viewer, qtbot,
                                                                     monkeypatch, tmp_path, tiny_net):
    """Options > CPU runtime: offered for network backends only; the choice reaches the
    session (a new one when it changes) and the status line says what ran the encoder."""
    pytest.importorskip("openvino")
    from napari_medseg.prompts import factory
    from napari_medseg.prompts.sam_med3d_session import SamMed3DSession

    monkeypatch.setenv("MEDSEG_COMPILED_DIR", str(tmp_path))
    asked = []

    def tiny_sessions(backend, **kwargs):  # SAM-Med3D's architecture with small seeded weights
        asked.append(kwargs.get("runtime"))
        session = SamMed3DSession(network=tiny_net, device="cpu")
        session.runtime = kwargs.get("runtime", "auto")
        return session

    monkeypatch.setattr(factory, "make_session", tiny_sessions)
    volume, a, b = _two_blobs_volume()
    viewer, image, widget = _widget(make_napari_viewer, volume)
    assert not widget.runtime_combo.isEnabled()  # region growing: no network
    widget.backend_combo.setCurrentIndex(widget.backend_combo.findData("sam-med3d"))
    assert widget.runtime_combo.isEnabled()
    widget.set_runtime("openvino")
    widget.add_point_world(_world(image, (12, 24, 18)), positive=True)
    _wait(qtbot, widget, timeout=300_000)
    assert asked == ["openvino"]
    assert widget._session.runtime_report.used == "openvino"
    assert "Network: OpenVINO (runtime openvino, compiled now)" in widget.status.text()
    widget.set_runtime("torch")
    widget.add_point_world(_world(image, (12, 25, 18)), positive=True)
    _wait(qtbot, widget, timeout=300_000)
    assert asked == ["openvino", "torch"]
    assert "Network: PyTorch (runtime torch)." in widget.status.text()
