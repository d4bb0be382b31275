"""Thin bands on MR (``_mr_thin``): a rib-like band of one tissue inside another."""

import numpy as np
import pytest

from napari_medseg.io.volume import Volume
from napari_medseg.prompts._mr_thin import band_correction, band_thresholds, thin_band
from napari_medseg.prompts.region_growing import RegionGrowingSession
from napari_medseg.testing.clicker import deepest_point, dice, next_click

SPACING = (3.0, 1.5, 1.5)
NOISE = 18.0


def _wall(shape=(16, 40, 96), band=250.0, muscle=360.0, fat=900.0, shading=0.0, seed=0,
          rib_box=(slice(6, 9), slice(19, 22), slice(8, 88))):
    """A body wall: fat, a muscle slab and a rib-like band (3 x 3 voxels, 4.5 x 9 mm) in it.

    ``shading``: a multiplicative ramp along x (the coil's bias field), 1 -+ shading.
    Returns the magnitude image (Rician noise) and the band's mask.
    """
    rng = np.random.default_rng(seed)
    img = np.full(shape, fat, dtype=np.float32)
    img[:, 10:30, :] = muscle
    rib = np.zeros(shape, dtype=bool)
    rib[rib_box] = True
    img[rib] = band
    ramp = np.linspace(1.0 - shading, 1.0 + shading, shape[2], dtype=np.float32)
    img *= ramp[None, None, :]
    re = img + rng.standard_normal(shape).astype(np.float32) * NOISE
    im = rng.standard_normal(shape).astype(np.float32) * NOISE
    return np.sqrt(re * re + im * im), rib


def test_band_inside_one_tissue_is_grown_half_way_to_it():
    image, rib = _wall()
    found = thin_band(image, SPACING, (7, 20, 48), NOISE)
    assert found is not None
    mask = np.zeros(rib.shape, dtype=bool)
    mask[found[0]] = found[1]
    assert dice(mask, rib) > 0.95


def test_band_follows_the_coil_shading():
    """+-20 % shading along the band: the click's thresholds lose the bright end (the band
    reaches the half-way value) and take the dark end's muscle; the local mean keeps both."""
    image, rib = _wall(shading=0.2)
    scores = {}
    for follow in (False, True):
        found = thin_band(image, SPACING, (7, 20, 48), NOISE, follow_shading=follow)
        mask = np.zeros(rib.shape, dtype=bool)
        if found is not None:
            mask[found[0]] = found[1]
        scores[follow] = dice(mask, rib)
    assert scores[False] < 0.85, scores
    assert scores[True] > 0.93, scores


@pytest.mark.parametrize("z0, along, leak", [(2, 0.5, 0.02), (8, 0.95, 0.05)])
def test_thick_tissue_of_the_band_value_is_left_out(z0, along, leak):
    """A blob of the band's value touching the band (a bowel loop beside a rib) is no part of
    it, and a click inside the blob is no band. Against the band's whole side (z0=2) the
    blob and the band are one thick tissue there and the band stops; touching it along
    one edge (z0=8), the band runs on beside it (only its voxels touching the blob's thick
    part are left out: a 4 mm zone around it cut the band, 639 of its 720 voxels)."""
    image, rib = _wall()
    rng = np.random.default_rng(3)
    blob = np.zeros(rib.shape, dtype=bool)
    blob[z0:15, 22:30, 60:80] = True  # 12 mm (y) x 30 mm (x), beside the band
    image[blob] = np.abs(250.0 + rng.standard_normal(int(blob.sum())) * NOISE)
    found = thin_band(image, SPACING, (7, 20, 30), NOISE)
    assert found is not None
    mask = np.zeros(rib.shape, dtype=bool)
    mask[found[0]] = found[1]
    assert np.count_nonzero(mask & blob) < leak * blob.sum()
    assert np.count_nonzero(mask & rib) > along * rib.sum()
    assert thin_band(image, SPACING, (12, 26, 70), NOISE) is None


def test_a_neighbour_crossing_the_threshold_with_its_noise_stops_the_band():
    """Where the muscle around the band is only 3.5 noise levels beyond the half-way value,
    a third of its voxels fall inside the band: the round that reaches it adds voxels far
    from the band's value, and it is dropped."""
    image, rib = _wall()
    rng = np.random.default_rng(5)
    dark = np.zeros(rib.shape, dtype=bool)
    dark[:, 10:30, 70:] = True
    dark &= ~rib
    image[dark] = np.abs(250.0 + 0.5 * 110.0 + 0.5 * NOISE + rng.standard_normal(int(dark.sum())) * NOISE)
    found = thin_band(image, SPACING, (7, 20, 30), NOISE)
    assert found is not None
    mask = np.zeros(rib.shape, dtype=bool)
    mask[found[0]] = found[1]
    assert np.count_nonzero(mask & dark) < 0.02 * dark.sum()
    assert np.count_nonzero(mask & rib) > 0.5 * rib.sum()


def test_tissue_valued_between_band_and_plateau_is_not_crossed():
    """A bright band (880, a T2 disc) in a darker tissue (380): the lower threshold lies at
    630. A thin sheet of a third tissue at 700 (fat) that the click's ball does not see
    touches the band further along: only its voxels beside the band's own are partial
    volume, the sheet itself is not the band's."""
    image, rib = _wall(band=880.0, muscle=380.0, fat=380.0)
    rng = np.random.default_rng(7)
    sheet = np.zeros(rib.shape, dtype=bool)
    sheet[7, 22:30, 60:80] = True  # one slice thick, against the band's side, 18 mm from the click
    image[sheet] = np.abs(700.0 + rng.standard_normal(int(sheet.sum())) * NOISE)
    found = thin_band(image, SPACING, (7, 20, 30), NOISE)
    assert found is not None
    mask = np.zeros(rib.shape, dtype=bool)
    mask[found[0]] = found[1]
    assert np.count_nonzero(mask & rib) > 0.9 * rib.sum()
    assert np.count_nonzero(mask & sheet) <= 20  # its first row, beside the band (20 voxels)


def test_band_many_voxels_across_is_left_to_the_growth():
    """The same rib on a 1 x 0.8 x 0.8 mm grid is 7 voxels across: the edge-aware growth
    spans it, and the click is no thin band's (a band is at most ~4 voxels across)."""
    spacing = (1.0, 0.8, 0.8)
    image, rib = _wall(shape=(20, 40, 96), rib_box=(slice(6, 13), slice(17, 24), slice(8, 88)))
    assert thin_band(image, spacing, (9, 20, 48), NOISE) is None
    # nor is a click on its rim (a corrective click in a missed partial-volume shell)
    assert thin_band(image, spacing, (6, 20, 48), NOISE) is None
    found = thin_band(image, spacing, (9, 20, 48), NOISE, max_depth_voxels=10.0)
    assert found is not None and found[1].sum() > 0.5 * rib.sum()


def test_thresholds_need_another_tissue_on_one_side_only():
    rng = np.random.default_rng(0)
    organ = rng.normal(600.0, NOISE, 300)
    assert band_thresholds(organ, 600.0, NOISE) is None  # nothing else near
    valley = np.concatenate([rng.normal(250.0, NOISE, 100), rng.normal(360.0, NOISE, 200)])
    v, lower, upper = band_thresholds(valley, 250.0, NOISE)
    assert abs(v - 250.0) < 10 and abs(upper - 305.0) < 10 and abs((v - lower) - (upper - v)) < 1e-6
    # a layer between a darker and a brighter tissue is the skin's rule (``_sheet``)
    layer = np.concatenate([rng.normal(15.0, NOISE, 100), rng.normal(420.0, NOISE, 100),
                            rng.normal(900.0, NOISE, 100)])
    assert band_thresholds(layer, 420.0, NOISE) is None


def test_correction_moves_the_cut_only_at_the_click():
    image, rib = _wall()
    leak = np.zeros(rib.shape, dtype=bool)
    leak[6:9, 22, 40:46] = True  # a strip of muscle beside the band
    mask = rib | leak
    click = (7, 22, 42)
    image[click] = 340.0
    found = band_correction(image, mask, SPACING, click, False, NOISE)
    assert found is not None
    removed = np.zeros(rib.shape, dtype=bool)
    removed[found[0]] = found[1]
    assert removed[click] and not (removed & rib).any()
    # A positive click on a missed partial-volume voxel adds voxels at least as like the band.
    missed = rib.copy()
    missed[6:9, 21, 50:56] = False
    click = (7, 21, 52)
    image[click] = 290.0
    found = band_correction(image, missed, SPACING, click, True, NOISE)
    added = np.zeros(rib.shape, dtype=bool)
    added[found[0]] = found[1]
    assert added[click] and not (added & missed).any()
    assert np.count_nonzero(added & rib) >= 6 and np.count_nonzero(added & ~rib) <= 2
    # A click of the band's own value is no boundary correction.
    assert band_correction(image, mask, SPACING, (7, 20, 48), False, NOISE) is None


def _session(image, modality):
    session = RegionGrowingSession()
    session.set_volume(Volume(image.astype(np.uint16), spacing=SPACING[::-1], modality=modality))
    return session


def test_session_grows_the_band_on_mr_and_keeps_corrections_monotone():
    image, rib = _wall(shading=0.2, seed=1)
    session = _session(image, "MR")
    click = deepest_point(rib, SPACING)
    scores = [dice(session.add_point(click).mask, rib)]
    for _ in range(4):
        nxt = next_click(session.mask, rib, SPACING)
        if nxt is None:
            break
        scores.append(dice(session.add_point(nxt[0], positive=nxt[1]).mask, rib))
    assert scores[0] > 0.9, scores
    assert all(b >= a - 0.02 for a, b in zip(scores, scores[1:])), scores
    # The rule is the MR model's: off, the growth gives what it gave before.
    session.mr_bands = False
    session.set_volume(session.volume)
    assert dice(session.add_point(click).mask, rib) < scores[0] - 0.1


def test_ct_is_not_affected():
    image, rib = _wall()
    hu = image - 300.0  # the same image as a CT's values
    click = deepest_point(rib, SPACING)
    masks = []
    for bands in (None, False, True):
        session = RegionGrowingSession()
        session.mr_bands = bands
        session.set_volume(Volume(hu.astype(np.int16), spacing=SPACING[::-1], modality="CT"))
        masks.append(session.add_point(click).mask.copy())
    assert np.array_equal(masks[0], masks[1])
    assert not np.array_equal(masks[0], masks[2])  # forced on, the rule would change it


@pytest.mark.parametrize("click", [(-1, 0, 0), (0, 40, 0)])
def test_click_outside_the_image_is_an_error(click):
    image, _ = _wall()
    with pytest.raises(ValueError, match="outside the image"):
        thin_band(image, SPACING, click, NOISE)
