"""The size prior that cuts a click's region when it has run into a same-intensity neighbour."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.prompts._leak_guard import click_depth, fills_in, guard_leak, is_sheet
from napari_medseg.prompts.region_growing import RegionGrowingSession
from napari_medseg.testing.clicker import deepest_point, dice


def _tube_into_slab(spacing=(1.0, 1.0, 1.0)):
    """A tube (radius 3 voxels) that touches a big slab of the same value."""
    shape = (60, 60, 60)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    tube = ((y - 30) ** 2 + (x - 15) ** 2 <= 9) & (z >= 5) & (z < 55)
    slab = (x >= 18) & (x < 58)
    return tube, tube | slab


def _box_shell():
    """A 3-voxel shell around a box (40 x 80 x 80, 1 mm voxels) and a click in it."""
    shape = (40, 80, 80)
    outer = np.zeros(shape, bool)
    outer[:, 5:75, 5:75] = True
    inner = np.zeros(shape, bool)
    inner[:, 8:72, 8:72] = True
    return outer & ~inner, (20, 6, 40)


def test_plausible_region_is_kept_as_is():
    tube, _ = _tube_into_slab()
    click = (30, 30, 15)
    assert guard_leak(tube, click, np.ones(3)) is tube


def test_leak_into_same_intensity_neighbour_is_cut():
    """The tube touches a slab 16 x its own volume: the slab part is cut, the tube kept."""
    tube, leaked = _tube_into_slab()
    click = (30, 30, 15)
    out = guard_leak(leaked, click, np.ones(3))
    assert out[click]
    assert (out & ~tube).sum() < 0.2 * (leaked & ~tube).sum()
    # The last resort keeps 4 depths around the click: part of a long tube.
    assert (out & tube).sum() >= 0.4 * tube.sum()
    assert dice(out, tube) > 3 * dice(leaked, tube)


def test_click_depth_ignores_volume_faces_and_pinholes():
    region = np.ones((10, 40, 40), bool)
    region[5, 20, 25] = False  # a noisy pinhole next to the click
    # The click on the last slice: the object goes on past the field of view.
    assert click_depth(region, (9, 20, 20), np.ones(3), cap_mm=15.0) >= 15.0
    assert click_depth(region, (5, 20, 20), np.ones(3), cap_mm=15.0) >= 15.0


@pytest.mark.shared_data
@pytest.mark.parametrize("organ, label, before_max, after_min", [
    ("inferior_vena_cava", 63, 0.2, 0.6),  # leaked into the liver
    ("stomach", 6, 0.2, 0.45),  # leaked into the bowel
])
def test_real_ct_first_click_leak_is_cut(shared_data, organ, label, before_max, after_min):
    """One click on real CT: with the guard off the region leaks into a neighbour
    (Dice below ``before_max``); with it on, Dice reaches ``after_min``. The vessel walk is
    off in both sessions: it trims the vena cava's leak by itself, and this measures the
    guard alone."""
    import SimpleITK as sitk

    from napari_medseg.io.volume import Volume

    folder = shared_data / "totalseg_example"
    volume = Volume.from_sitk(sitk.ReadImage(str(folder / "example_ct_sm.nii.gz")), modality="CT")
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "example_seg.nii.gz")))
    ref = seg == label
    assert ref.sum() >= 200
    click = deepest_point(ref, volume.spacing_zyx)
    scores = {}
    for guard in (0.0, 50.0):
        session = RegionGrowingSession()
        session.leak_guard = guard
        session.tube_aware = False
        session.set_volume(volume)
        scores[guard] = dice(session.add_point(click).mask, ref)
    assert scores[0.0] < before_max, scores
    assert scores[50.0] >= after_min, scores


def test_sheet_of_the_clicks_thickness_is_kept():
    """A shell 3 voxels thick around a box (the subcutaneous fat around the body) holds
    far more than 50 balls of the click's depth, but it is as thin everywhere as at the
    click: no thicker neighbour was reached, nothing is cut (the guard cut such a shell
    to 4 depths around the click: CT phantom subcutaneous fat 0.24 -> 0.68 Dice after
    one click, measured)."""
    shell, click = _box_shell()
    out = guard_leak(shell, click, np.ones(3))
    assert out is shell
    # The same shell touching a thick block of the same value is still cut.
    leaked = shell.copy()
    leaked[:, 8:40, 8:40] = True
    cut = guard_leak(leaked, click, np.ones(3))
    assert (cut & ~shell).sum() < 0.2 * (leaked & ~shell).sum()


def test_click_depth_is_the_distance_transform_at_the_click():
    from scipy import ndimage as ndi

    from napari_medseg.prompts._leak_guard import click_depth

    rng = np.random.default_rng(4)
    z, y, x = np.ogrid[:30, :50, :50]
    blob = ((z - 15) ** 2 / 144 + (y - 25) ** 2 / 400 + (x - 25) ** 2 / 300) < 1
    blob &= rng.random(blob.shape) > 0.02  # pinholes: closed and filled first
    spacing = np.array([2.5, 0.8, 0.9])
    for click in ((15, 25, 25), (12, 20, 30), (15, 10, 25)):
        sub = ndi.binary_closing(np.pad(blob, 2, mode="edge"), ndi.generate_binary_structure(3, 1),
                                 iterations=2)[2:-2, 2:-2, 2:-2] | blob
        sub = ndi.binary_fill_holes(sub)
        want = ndi.distance_transform_edt(np.pad(sub, 1, constant_values=True), sampling=spacing)[1:-1, 1:-1, 1:-1]
        assert click_depth(blob, click, spacing, closing=True) == min(60.0, float(want[click]))


def test_click_depth_near_the_click_is_the_distance_transforms_maximum():
    # The near-click depth searches only the region's outer rim (k-d tree): the same
    # value as the largest distance transform within near_mm of the click, on
    # irregular regions, anisotropic voxels, and boxes cut by the volume's faces.
    from scipy import ndimage as ndi

    rng = np.random.default_rng(5)
    spacing = np.array([2.5, 0.8, 0.9])
    z, y, x = np.ogrid[:30, :50, :50]
    for trial in range(6):
        c = rng.integers(8, 22), rng.integers(15, 35), rng.integers(15, 35)
        blob = ((z - c[0]) ** 2 / rng.uniform(40, 200) + (y - c[1]) ** 2 / rng.uniform(100, 500)
                + (x - c[2]) ** 2 / rng.uniform(100, 500)) < 1
        blob &= rng.random(blob.shape) > 0.1  # holes and channels the distance must respect
        for near, cap in ((6.0, 9.0), (4.0, 60.0)):
            click = tuple(int(v) for v in c)
            if not ndi.binary_fill_holes(blob)[click]:
                continue
            sub = ndi.binary_fill_holes(blob)  # no closing: click_depth's own pre-step is fill_holes only
            want = ndi.distance_transform_edt(np.pad(sub, 1, constant_values=True), sampling=spacing)[1:-1, 1:-1, 1:-1]
            d2 = (z - click[0]) ** 2 * spacing[0] ** 2 + (y - click[1]) ** 2 * spacing[1] ** 2 + (x - click[2]) ** 2 * spacing[2] ** 2
            expected = min(cap, float(want[(d2 <= near ** 2) & sub].max()))
            assert click_depth(blob, click, spacing, cap_mm=cap, near_mm=near) == pytest.approx(expected, rel=1e-12)


def _sponge_and_leak():
    """A cube of 10^3 voxels, the same cube wrapped in a shell 3 voxels thick (a noisy
    tissue's next tolerance step joining it along its whole surface), and the cube with
    a block as large as that shell joined through a one-voxel bridge (a leak)."""
    shape = (40, 40, 60)
    cube = np.zeros(shape, bool)
    cube[15:25, 15:25, 15:25] = True
    shell = np.zeros(shape, bool)
    shell[12:28, 12:28, 12:28] = True
    bridged = cube.copy()
    bridged[20, 20, 25:30] = True  # the bridge
    bridged[12:28, 12:28, 30:42] = True  # 3072 voxels, as many as the shell adds
    return cube, shell, bridged


def test_fills_in_tells_a_sponge_from_a_leak():
    """A step that touches the previous region along its whole surface fills it in; one
    through a one-voxel bridge leaks; a region already larger than the size prior gets
    no exception (it has leaked at the lower tolerance)."""
    cube, shell, bridged = _sponge_and_leak()
    click = (20, 20, 20)
    spacing = np.ones(3)
    assert (shell & ~cube).sum() > 2 * cube.sum() and (bridged & ~cube).sum() > 2 * cube.sum()
    assert fills_in(cube, shell, click, spacing, ratio=50.0)
    assert not fills_in(cube, bridged, click, spacing, ratio=50.0)
    # The cube holds ~2 balls of its click's depth: over a prior of 1 ball it is a leak already.
    assert not fills_in(cube, shell, click, spacing, ratio=1.0)


def test_growth_steps_over_a_noisy_tissue_filling_in():
    """The growth's leak test (a tolerance step more than doubling the region) keeps the
    lower level at a leak through a bridge, but takes the step that fills in the tissue
    around the click (without the exception it stopped at the cube: a back muscle of the
    3 mm CT grew 815 of its 7050 voxels)."""
    cube, shell, bridged = _sponge_and_leak()
    click = (20, 20, 20)
    session = RegionGrowingSession()
    for grown, expected in ((shell, shell), (bridged, cube)):
        kmap = np.full(cube.shape, np.float32(10.0))
        kmap[grown] = 1.6  # joins at the step 1.5 -> 1.75
        kmap[cube] = 0.5
        comp, k = session._adaptive_component(kmap, [click], 27, np.ones(3))
        assert np.array_equal(comp, expected)
        assert (k > 1.5) == (expected is shell)
    # Without a spacing (the caller cannot measure depths) every doubling is a leak.
    kmap = np.full(cube.shape, np.float32(10.0))
    kmap[shell] = 1.6
    kmap[cube] = 0.5
    assert session._adaptive_component(kmap, [click], 27)[1] == 1.5


@pytest.mark.shared_data
def test_real_ct_noisy_back_muscle_one_click(shared_data):
    """Real CT at 3 mm, autochthon left: its tissue (6 HU spread around the click, fat
    streaks) percolates at the lowest tolerance and the next step more than doubled the
    region; one click gave 0.54 Dice. Now the step is taken (>= 0.75)."""
    import SimpleITK as sitk

    from napari_medseg.io.volume import Volume

    folder = shared_data / "totalseg_example"
    volume = Volume.from_sitk(sitk.ReadImage(str(folder / "example_ct_sm.nii.gz")), modality="CT")
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "example_seg.nii.gz"))) == 86
    session = RegionGrowingSession()
    session.set_volume(volume)
    assert dice(session.add_point(deepest_point(ref, volume.spacing_zyx)).mask, ref) >= 0.75


def test_is_sheet_needs_a_large_region_thin_everywhere():
    """The shell around a box is a sheet; the same shell with a thick block joined to it
    is not (a leak into a thicker neighbour), nor is a region the size prior allows."""
    shell, click = _box_shell()
    assert is_sheet(shell, click, np.ones(3), ratio=50.0)
    leaked = shell.copy()
    leaked[:, 8:40, 8:40] = True
    assert not is_sheet(leaked, click, np.ones(3), ratio=50.0)
    assert not is_sheet(shell, click, np.ones(3), ratio=1e6)
    assert not is_sheet(shell, (20, 40, 40), np.ones(3), ratio=50.0)  # click outside


def _fat_sheet_volume():
    """A CT-like box (40 HU) wrapped in a fat sheet (-100 HU, noise 5): 16 voxels thick
    at the front, 7 at the sides and back (thinner than the opening's 8 mm)."""
    from napari_medseg.io.volume import Volume

    rng = np.random.default_rng(0)
    shape = (40, 110, 110)
    _, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    outer = (np.abs(y - 55) <= 50) & (np.abs(x - 55) <= 50)
    inner = (y >= 21) & (y <= 98) & (np.abs(x - 55) <= 43)
    sheet = np.broadcast_to(outer & ~inner, shape).copy()
    image = np.where(sheet, -100.0, 40.0) + rng.normal(0.0, 5.0, shape)
    return Volume(image.astype(np.float32), spacing=(1.0, 1.0, 1.0), modality="CT"), sheet


def test_one_click_on_a_fat_sheet_keeps_its_thin_parts():
    """One click in the thick front of a fat sheet: the growth's light opening (4 mm)
    cut its thinner sides off as if they were bridges (0.62 Dice, measured); a region
    far larger than its click's depth allows and no thicker anywhere is a sheet, and is
    not opened (CT phantom subcutaneous fat 0.68 -> 0.87 after one click)."""
    volume, sheet = _fat_sheet_volume()
    session = RegionGrowingSession()
    session.set_volume(volume)
    assert dice(session.add_point((20, 13, 55)).mask, sheet) >= 0.95


def test_beyond_prior_flags_a_leak_and_spares_an_organ_beside_a_gap():
    """``beyond_prior``: a tube that ran into a slab has leaked; a ball has not; a ball
    clicked beside a channel of another tissue (a kidney's sinus) has not when a voxel
    near the click is deeper, for a first click only."""
    from napari_medseg.prompts._leak_guard import beyond_prior

    spacing = np.ones(3)
    tube, leaked = _tube_into_slab()
    assert beyond_prior(leaked, (30, 30, 15), spacing, 50.0)[0]
    z, y, x = np.ogrid[:60, :60, :60]
    ball = (z - 30) ** 2 + (y - 30) ** 2 + (x - 30) ** 2 <= 18 ** 2
    assert not beyond_prior(ball, (30, 30, 30), spacing, 50.0)[0]
    organ = ball & ~(((y - 30) ** 2 + (z - 30) ** 2 <= 9) & (x >= 30))  # a channel to the surface
    click = (30, 26, 40)  # 1 voxel beside the channel
    out, (limit, depth) = beyond_prior(organ, click, spacing, 50.0, near_mm=6.0, first=False)
    assert out and depth < 2.5 and np.count_nonzero(organ) > limit
    assert not beyond_prior(organ, click, spacing, 50.0, near_mm=6.0, first=True)[0]
