"""A click on costal cartilage gives the bright bar of soft tissue (CT, ``_cartilage``).

The bar's interior is uneven (calcified spots, a darker core): intensity growing within
a few noise levels of the click stops after a part of it, and the click is no bone
click.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_medseg.io.volume import Volume
from napari_medseg.prompts._bone import started_on_bar
from napari_medseg.prompts._cartilage import bar_levels, bright_bar
from napari_medseg.prompts.region_growing import RegionGrowingSession
from napari_medseg.testing.clicker import deepest_point, dice


def _scene(seed: int = 0, bar_hu: float = 110.0, spacing: float = 1.5):
    """A curved bar (9 mm thick, 110 HU with +-35 HU mottling and calcified spots of
    170 HU) in 45 HU muscle under a fat layer, its end joined to a rib (a 350 HU tube
    with 120 HU marrow); isotropic ``spacing`` mm voxels, blurred, noisy."""
    rng = np.random.default_rng(seed)
    n = int(round(96 / spacing))
    shape = (int(round(48 / spacing)), n, n)
    mm = [np.arange(k) * spacing for k in shape]
    z, y, x = np.meshgrid(*mm, indexing="ij")
    img = np.full(shape, 45.0)
    img[y < 18.0] = -100.0  # subcutaneous fat
    # The bar: its axis an arc in the y-x plane at mid-height.
    cy = 30.0 + 0.004 * (x - 48.0) ** 2
    bar = ((z - 24.0) ** 2 + (y - cy) ** 2 <= 4.5 ** 2) & (x > 12.0) & (x < 70.0)
    mottle = ndi.gaussian_filter(rng.normal(0.0, 1.0, shape), 3.0 / spacing)
    mottle *= 35.0 / max(float(mottle.std()), 1e-6)
    img[bar] = bar_hu + mottle[bar]
    spots = bar & (ndi.gaussian_filter(rng.normal(0.0, 1.0, shape), 1.5 / spacing) > 0.12)
    img[spots] = 170.0
    # The rib the bar runs into, beyond its end.
    rib_r2 = (z - 24.0) ** 2 + (y - (30.0 + 0.004 * (x - 48.0) ** 2)) ** 2
    rib = (rib_r2 <= 4.0 ** 2) & (x >= 70.0)
    img[rib] = 350.0
    img[(rib_r2 <= 2.5 ** 2) & (x >= 72.0)] = 120.0
    img = ndi.gaussian_filter(img, 0.6 / spacing) + rng.normal(0.0, 12.0, shape)
    vol = Volume(np.rint(img).astype(np.int16), spacing=(spacing,) * 3, modality="CT")
    return vol, bar, rib


def test_click_on_a_bright_bar_gives_the_bar_not_the_muscle_or_the_rib():
    """Intensity growing alone: Dice 0.47 (the mottled interior stops it)."""
    vol, bar, rib = _scene()
    click = deepest_point(bar & ~(np.asarray(vol.array) > 160), vol.spacing_zyx)
    session = RegionGrowingSession()
    session.set_volume(vol)
    mask = np.asarray(session.add_point(click, positive=True).mask, dtype=bool)
    assert dice(mask, bar) >= 0.8, dice(mask, bar)
    assert np.count_nonzero(mask & rib) <= 0.05 * np.count_nonzero(rib)


@pytest.mark.parametrize("spacing", [1.5, 3.0])
def test_bright_bar_follows_the_bar_and_stops_at_the_bone(spacing):
    vol, bar, rib = _scene(spacing=spacing)
    raw = np.asarray(vol.array, dtype=np.float32)
    sp = np.asarray(vol.spacing_zyx)
    click = deepest_point(bar & (raw < 160), sp)
    got = bright_bar(raw, sp, click)
    assert got is not None and dice(got, bar) >= 0.8, None if got is None else dice(got, bar)
    assert np.count_nonzero(got & rib) <= 0.05 * np.count_nonzero(rib)
    # A negative click on the bar, away from the positive one, keeps its voxel out.
    idx = np.argwhere(got & bar & (raw < 160))
    neg = tuple(int(v) for v in idx[int(np.argmax(np.abs(idx - np.asarray(click)).sum(axis=1)))])
    assert not bright_bar(raw, sp, click, neg=[neg])[neg]


def test_bright_bar_is_not_muscle_beside_fat_nor_an_organ_nor_bone():
    vol, bar, rib = _scene()
    raw = np.asarray(vol.array, dtype=np.float32)
    sp = np.asarray(vol.spacing_zyx)
    # Muscle beside the fat layer: no step above the soft tissue around it.
    assert bright_bar(raw, sp, (16, 14, 10)) is None
    # The interior of an organ as bright as the bar (the bar is a small part of its
    # surroundings; the organ is all of them).
    organ = np.full((32, 48, 48), 45.0)
    organ[4:28, 6:42, 6:42] = 110.0
    organ = ndi.gaussian_filter(organ, 0.5) + np.random.default_rng(1).normal(0.0, 12.0, organ.shape)
    assert bright_bar(organ.astype(np.float32), sp, (16, 24, 24)) is None
    # A contrast-filled vessel (180 HU, 5 mm radius) in an enhancing organ (110 HU):
    # a bright tube, but not in muscle and fat.
    liver = np.full((32, 48, 48), 110.0)
    zz, yy, _ = np.ogrid[:32, :48, :48]
    liver[np.broadcast_to(((zz - 16) ** 2 + (yy - 24) ** 2) * 2.25 <= 5.0 ** 2, liver.shape)] = 180.0
    liver = ndi.gaussian_filter(liver, 0.5) + np.random.default_rng(3).normal(0.0, 12.0, liver.shape)
    assert bright_bar(liver.astype(np.float32), sp, (16, 24, 24)) is None
    # Compact bone is no bar.
    assert bright_bar(raw, sp, tuple(int(v) for v in np.argwhere(rib & (raw > 300))[0])) is None
    # A bar whose step over the muscle is too small (a muscle's own brighter part).
    dim, dim_bar, _ = _scene(bar_hu=70.0)
    dim_raw = np.asarray(dim.array, dtype=np.float32)
    assert bright_bar(dim_raw, sp, deepest_point(dim_bar & (dim_raw < 160), sp)) is None


def test_a_slab_wider_than_a_bar_is_left_to_the_growth():
    """A bright layer 24 mm thick (no bar: deeper than ``DEPTH_MM``) gives ``None``."""
    img = np.full((40, 64, 64), 45.0)
    img[8:24, 10:54, 10:54] = 110.0
    img[:, :, :4] = -100.0
    img = ndi.gaussian_filter(img, 0.5) + np.random.default_rng(2).normal(0.0, 8.0, img.shape)
    # 1.5 mm voxels: the slab's half-thickness is 12 mm; the 12 mm ball around the
    # click still holds enough of the darker muscle for the step tests.
    assert bright_bar(img.astype(np.float32), np.array([1.5, 1.5, 1.5]), (16, 32, 12)) is None


def _rib_into_cartilage(seed: int = 0):
    """A rib (a rod of 3.5 mm radius, 200 HU: partial-volumed, as at 3 mm or resampled from
    it) running on without a neck into a cartilage bar of the same radius (135 HU), in
    45 HU muscle; 1.5 mm voxels, blurred, noisy."""
    sp = 1.5
    shape = (32, 40, 80)
    z, y, x = np.meshgrid(*[np.arange(k) * sp for k in shape], indexing="ij")
    rod = (z - 24.0) ** 2 + (y - 30.0) ** 2 <= 3.5 ** 2
    rib = rod & (x >= 6.0) & (x < 60.0)
    bar = rod & (x >= 60.0) & (x < 114.0)
    img = np.full(shape, 45.0)
    img[rib] = 200.0
    img[bar] = 135.0
    img = ndi.gaussian_filter(img, 0.6 / sp) + np.random.default_rng(seed).normal(0.0, 10.0, shape)
    vol = Volume(np.rint(img).astype(np.int16), spacing=(sp,) * 3, modality="CT")
    return vol, rib, bar


def test_corrections_get_the_bar_only_for_an_object_started_on_one():
    """``_bone.started_on_bar``: a click on the bar yes; a click on the rib beside it (it
    passes the bar's level tests too, but it is a bone click) no."""
    vol, bar, rib = _scene()
    raw = np.asarray(vol.array, dtype=np.float32)
    sp = np.asarray(vol.spacing_zyx)
    assert started_on_bar(raw, deepest_point(bar & (raw < 160), sp), sp)
    vol2, rib2, _ = _rib_into_cartilage()
    raw2 = np.asarray(vol2.array, dtype=np.float32)
    sp2 = np.asarray(vol2.spacing_zyx)
    click = deepest_point(rib2 & (np.arange(rib2.shape[2])[None, None, :] < 20), sp2)
    assert bar_levels(raw2, sp2, click) is not None
    assert not started_on_bar(raw2, click, sp2)
