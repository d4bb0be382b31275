"""Tests of the synthetic abdominal CT phantom (napari_medseg.phantom)."""

from __future__ import annotations

import numpy as np
import pytest


def test_sample_data_layer_tuples_without_napari():
    from napari_medseg._sample_data import SAMPLE_SEED, make_sample_ct
    from napari_medseg.phantom import LABEL_COLORS

    (img, img_kw, img_kind), (lab, lab_kw, lab_kind) = make_sample_ct()
    assert (img_kind, lab_kind) == ("image", "labels")
    assert img.dtype == np.int16 and lab.dtype == np.uint8 and img.shape == lab.shape
    assert tuple(img_kw["scale"]) == tuple(lab_kw["scale"]) == (2.5, 0.8, 0.8)
    assert tuple(img_kw["translate"]) == tuple(lab_kw["translate"])
    assert img_kw["units"] == lab_kw["units"] == ("mm", "mm", "mm")
    assert lab_kw["colormap"][None] is not None and lab_kw["colormap"][0][3] == 0
    np.testing.assert_allclose(lab_kw["colormap"][2][:3], np.asarray(LABEL_COLORS[2]) / 255)
    assert dict(zip(lab_kw["features"]["index"], lab_kw["features"]["name"]))[2] == "liver_lesion"
    truth = lab_kw["metadata"]["medseg_phantom"]
    assert truth["seed"] == SAMPLE_SEED and len(truth["lesions"]) == 3
    assert lab_kw["metadata"]["medseg_label_table"]["labels"][0]["name"] == "liver"


pytestmark = pytest.mark.gui


PLUGIN, SAMPLE = "napari-medseg", "abdominal_ct_phantom"


@pytest.fixture
def sample_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample(PLUGIN, SAMPLE)
    return viewer, layers


@pytest.fixture(scope="module")
def phantom():
    from napari_medseg._sample_data import SAMPLE_SEED
    from napari_medseg.phantom import make_phantom

    return make_phantom(seed=SAMPLE_SEED)


def test_sample_opens_image_and_labels_in_physical_mm(sample_viewer, phantom):
    from napari.layers import Image, Labels

    viewer, layers = sample_viewer
    assert len(layers) == 2
    image, labels = layers
    assert isinstance(image, Image) and isinstance(labels, Labels)
    assert image.data.shape == labels.data.shape == (100, 256, 256)
    np.testing.assert_allclose(image.scale, (2.5, 0.8, 0.8))
    np.testing.assert_allclose(labels.scale, image.scale)
    np.testing.assert_allclose(image.translate, phantom.ct.origin_zyx)
    np.testing.assert_allclose(labels.translate, image.translate)
    # Same world extent: the labels cover exactly the image.
    np.testing.assert_allclose(labels.extent.world, image.extent.world)
    assert np.issubdtype(labels.data.dtype, np.integer)
    # The data are the phantom's (deterministic sample).
    assert np.array_equal(np.asarray(image.data), phantom.ct.array)
    assert np.array_equal(np.asarray(labels.data), phantom.labels)
    # Geometry kept for exact writing.
    assert image.metadata["medseg_geometry"]["spacing_xyz"] == [0.8, 0.8, 2.5]


def test_labels_overlay_the_image_voxel_for_voxel(sample_viewer, phantom):
    viewer, (image, labels) = sample_viewer
    liver_voxels = np.argwhere(phantom.labels == 1)
    rng = np.random.default_rng(0)
    for zyx in liver_voxels[rng.choice(len(liver_voxels), 5, replace=False)]:
        world_img = np.asarray(image.data_to_world(zyx))
        world_lab = np.asarray(labels.data_to_world(zyx))
        np.testing.assert_allclose(world_lab, world_img)
        # The world position is the physical position of the voxel (z, y, x mm).
        np.testing.assert_allclose(world_img, phantom.ct.index_to_physical(zyx)[::-1], atol=1e-4)
        viewer.dims.set_point(0, world_img[0])  # get_value reads the displayed slice
        assert labels.get_value(world_img, world=True) == 1
    # A lesion centre in physical mm picks the lesion in labels and a hypodense value in the image.
    for lesion in phantom.lesions:
        world = np.asarray(lesion.center_xyz_mm)[::-1]
        viewer.dims.set_point(0, world[0])
        assert labels.get_value(world, world=True) == 2
        assert image.get_value(world, world=True) < 70


def test_label_names_and_colours(sample_viewer, phantom):
    from napari.utils.colormaps import DirectLabelColormap

    from napari_medseg.phantom import LABEL_COLORS

    _, (image, labels) = sample_viewer
    names = dict(zip(labels.features["index"], labels.features["name"]))
    for i, name in phantom.names.items():
        assert names[i] == name
    assert isinstance(labels.colormap, DirectLabelColormap)
    np.testing.assert_allclose(labels.colormap.map(0)[..., 3], 0.0)  # background transparent
    np.testing.assert_allclose(labels.colormap.map(1)[..., :3].ravel(),
                               np.asarray(LABEL_COLORS[1]) / 255.0, atol=1e-3)
    lesion_rgb = labels.colormap.map(2)[..., :3].ravel()
    liver_rgb = labels.colormap.map(1)[..., :3].ravel()
    assert np.abs(lesion_rgb - liver_rgb).sum() > 0.3  # lesion clearly distinct from liver
    assert 0.3 <= labels.opacity <= 0.7
    # A soft-tissue CT window, not the full data range.
    lo, hi = image.contrast_limits
    assert -400 <= lo <= 0 <= 100 <= hi <= 500
    assert image.colormap.name == "gray"


def test_canvas_shows_the_phantom_with_lesions(make_napari_viewer, phantom, qtbot):
    # A hidden window renders nothing (a black canvas), so this viewer is shown (Xvfb).
    viewer = make_napari_viewer(show=True)
    image, labels = viewer.open_sample(PLUGIN, SAMPLE)
    lesion = phantom.lesions[0]
    viewer.dims.set_point(0, lesion.center_xyz_mm[2])
    z_index = image.world_to_data(viewer.dims.point)[0]
    assert round(z_index) == round(lesion.center_zyx_vox[0])
    viewer.reset_view()
    qtbot.wait(50)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.ndim == 3 and shot.shape[2] == 4
    rgb = shot[..., :3].astype(int)
    assert rgb.std() > 20, "the canvas is blank"
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 100
    # Yellow lesion overlay (red and green high, blue low) is visible.
    yellowish = (rgb[..., 0] > 120) & (rgb[..., 1] > 110) & (rgb[..., 2] < 90)
    assert yellowish.sum() > 50
    # With the labels hidden the same pixels are grey (no colour): the overlay is the labels.
    labels.visible = False
    qtbot.wait(50)
    grey = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    assert np.abs(grey[..., 0] - grey[..., 2]).max() <= 2
