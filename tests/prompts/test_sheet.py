"""A click on a thin layer between two different tissues grows the layer (``_sheet``)."""

import numpy as np
import pytest

from napari_medseg.prompts._sheet import thin_layer
from napari_medseg.prompts.region_growing import RegionGrowingSession
from napari_medseg.testing.clicker import deepest_point, dice, mr_like, structures

SPACING = (1.5, 1.5, 1.5)


def _layered(values, widths, noise, seed=0, shape=(24, 24)):
    """Slabs along x (z, y, x): ``values[i]`` over ``widths[i]`` voxels, Gaussian noise."""
    x = np.concatenate([np.full(w, v, dtype=np.float32) for v, w in zip(values, widths)])
    image = np.broadcast_to(x, shape + x.shape).copy()
    image += np.random.default_rng(seed).normal(0.0, noise, image.shape).astype(np.float32)
    return image


def test_bright_layer_between_air_and_fat_is_grown_without_the_muscle():
    # CT skin: +40 HU, 2 voxels, between air and 8 voxels of fat; muscle of the skin's
    # value beyond the fat is a thick tissue, not the layer.
    image = _layered([-1000, 40, -90, 50], [6, 2, 8, 10], noise=12.0)
    layer = thin_layer(image, SPACING, (12, 12, 6), noise=12.0)
    assert layer is not None
    skin = np.zeros(image.shape, dtype=bool)
    skin[:, :, 6:8] = True
    assert dice(layer, skin) > 0.95
    assert not layer[:, :, 16:].any()


def test_terrace_layer_between_dark_and_bright_tissue_is_grown():
    # MR skin: between dark air and bright fat, its own value over 3 voxels.
    image = _layered([20, 430, 900], [6, 3, 12], noise=18.0)
    layer = thin_layer(image, SPACING, (12, 12, 7), noise=18.0)
    assert layer is not None
    skin = np.zeros(image.shape, dtype=bool)
    skin[:, :, 6:9] = True
    assert dice(layer, skin) > 0.95


def test_partial_volume_rim_is_not_a_layer():
    # A sphere of fat in air, blurred: its one-voxel rim takes every value between
    # the two; a click on a half-way voxel of it is left to the reseed.
    from scipy import ndimage as ndi

    z, y, x = np.ogrid[:40, :40, :40]
    r = np.sqrt((z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2)
    image = np.where(r < 12, 900.0, 20.0).astype(np.float32)
    image = ndi.gaussian_filter(image, 0.7) + np.random.default_rng(1).normal(0, 18, image.shape).astype(np.float32)
    rim = np.argwhere((np.abs(image - 460) < 40) & (np.abs(r - 12) < 1.0))
    assert len(rim)
    assert thin_layer(image, SPACING, tuple(rim[0]), noise=18.0) is None


def test_click_inside_a_thick_tissue_is_not_a_layer():
    image = _layered([-1000, -90, 50], [6, 10, 14], noise=12.0)
    assert thin_layer(image, SPACING, (12, 12, 23), noise=12.0) is None  # the muscle
    assert thin_layer(image, SPACING, (12, 12, 11), noise=12.0) is None  # the fat


def test_a_barrier_holds():
    image = _layered([-1000, 40, -90], [6, 2, 12], noise=12.0)
    allowed = np.ones(image.shape, dtype=bool)
    allowed[:, 16:, :] = False
    layer = thin_layer(image, SPACING, (12, 8, 6), noise=12.0, allowed=allowed)
    assert layer is not None and layer[:, :16, 6:8].mean() > 0.9
    assert not layer[:, 16:].any()


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_phantom_skin_click_grows_the_skin(phantom_3mm, modality, first_click):
    volume = phantom_3mm.ct if modality == "CT" else mr_like(phantom_3mm)
    skin = structures(phantom_3mm.labels, phantom_3mm.names)["skin"]
    click = deepest_point(skin, volume.spacing_zyx)
    scores = {on: dice(first_click(volume, click, thin_layers=on), skin) for on in (False, True)}
    # Without the rule a click on the skin gives a handful of voxels.
    assert scores[False] < 0.05
    assert scores[True] > 0.8, scores


def test_skin_of_a_large_crop_is_found_at_full_resolution_around_the_click(phantom_3mm):
    """Beyond four working grids the layer is redone only in a box around the click (a
    whole body's skin at full resolution is ~10^8 voxels): there it is the skin, and
    the click still gives skin beyond the box at the working grid's resolution."""
    volume = phantom_3mm.ct
    skin = structures(phantom_3mm.labels, phantom_3mm.names)["skin"]
    click = deepest_point(skin, volume.spacing_zyx)
    session = RegionGrowingSession()
    session.max_layer_voxels = 300_000   # the 64 x 192 x 192 crop is larger
    session.set_volume(volume)
    mask = session.add_point(click).mask
    near = tuple(slice(max(0, c - r), c + r + 1) for c, r in zip(click, (6, 15, 15)))
    assert dice(mask[near], skin[near]) > 0.8
    far = np.ones(skin.shape, dtype=bool)
    far[near] = False
    assert np.count_nonzero(mask & far & skin) > 0.2 * np.count_nonzero(skin & far)
