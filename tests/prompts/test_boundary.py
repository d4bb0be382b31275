"""The object's boundary at its 50 % partial-volume surface (``prompts._boundary``)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_medseg.errors import InvalidInputError
from napari_medseg.io.volume import Volume
from napari_medseg.prompts._boundary import half_way_surface, partial_volume_boundary
from napari_medseg.prompts.region_growing import RegionGrowingSession

ORGAN, FAT, AIR = 50.0, -100.0, -1000.0


def _profile_volume(profile) -> np.ndarray:
    """A volume whose value depends on x only (a flat border), 5 x 5 voxels in z and y."""
    return np.broadcast_to(np.asarray(profile, dtype=np.float32), (5, 5, len(profile))).copy()


def _slab(n: int) -> np.ndarray:
    mask = np.zeros((5, 5, 24), dtype=bool)
    mask[:, :, :n] = True
    return mask


def test_ramp_is_cut_half_way():
    """On a blurred edge the voxels more than half object join, the others do not."""
    profile = [100.0] * 10 + [80.0, 60.0, 40.0, 20.0] + [0.0] * 10
    out = partial_volume_boundary(_slab(10), _profile_volume(profile), 100.0, 1.0, (1.0, 1.0, 1.0))
    assert out[2, 2].tolist() == [True] * 12 + [False] * 12


def test_third_tissue_behind_the_neighbour_is_not_the_tissue_beyond():
    """Fat (two voxels) beside the object with air behind it: the fat stays out.

    The value the boundary voxel is compared with is the plateau right behind it (the
    fat), not the most different value nearby (the air), which would put the half-way
    threshold far out and let the fat in.
    """
    profile = [ORGAN] * 10 + [-25.0 + 10.0] + [FAT] * 2 + [AIR] * 11
    out = partial_volume_boundary(_slab(10), _profile_volume(profile), ORGAN, 5.0, (1.5, 1.5, 1.5))
    assert out[2, 2].tolist() == [True] * 11 + [False] * 13


def test_second_edge_behind_a_short_plateau():
    """The ramp behind a voxel ends on a short plateau, not at the edge beyond it.

    A voxel 14 % organ beside two blurred voxels of fat with gas behind them: its steps
    outward shrink (the organ's edge fading into the fat) and then grow again (the gas's
    edge). The tissue beyond it is the fat, so it stays out.
    """
    profile = [ORGAN] * 10 + [-64.0, -112.0, -316.0, -800.0] + [AIR] * 10
    out = partial_volume_boundary(_slab(10), _profile_volume(profile), ORGAN, 5.0, (1.0, 1.0, 1.0))
    assert int(out[2, 2].sum()) == 10
    # A linear ramp (equal steps, within the noise) is followed to its end.
    profile = [100.0] * 10 + [70.0, 41.0, 10.0] + [0.0] * 11
    out = partial_volume_boundary(_slab(10), _profile_volume(profile), 100.0, 2.0, (1.0, 1.0, 1.0))
    assert int(out[2, 2].sum()) == 11


def test_boundary_is_voxel_size_independent():
    """A two-voxel ramp (an edge resampled to half the voxel size) still reaches half-way."""
    coarse = [100.0] * 6 + [50.0 + 20.0] + [0.0] * 9
    fine = [100.0] * 12 + [85.0, 55.0, 15.0, 0.0] + [0.0] * 16
    out_c = partial_volume_boundary(_slab(6)[:, :, :16], _profile_volume(coarse), 100.0, 2.0, (3.0,) * 3)
    out_f = partial_volume_boundary(np.zeros((5, 5, 32), bool) | (np.arange(32) < 12), _profile_volume(fine), 100.0,
                                    2.0, (1.5,) * 3)
    # Coarse: the 70 % voxel joins (7 voxels = 21 mm); fine: 85 % and 55 % join (14 voxels = 21 mm).
    assert int(out_c[2, 2].sum()) * 3.0 == int(out_f[2, 2].sum()) * 1.5 == 21.0


def test_objects_plateau_continues_and_another_plateau_stays_out():
    """Voxels of the object's value beside it continue it; a plateau of another tissue does not join.

    The growth may stop a few voxels short of the border (its edge test on the smoothed
    image): the object's own voxels there join layer by layer (at most ``reach_mm``), the
    other tissue's plateau (no ramp behind it, value far from the object's) stays out.
    """
    profile = [100.0] * 8 + [101.0, 99.0] + [30.0] * 14
    out = partial_volume_boundary(_slab(8), _profile_volume(profile), 100.0, 2.0, (1.0, 1.0, 1.0))
    assert out[2, 2].tolist() == [True] * 10 + [False] * 14
    same = [100.0] * 24
    out = partial_volume_boundary(_slab(8), _profile_volume(same), 100.0, 2.0, (1.0, 1.0, 1.0), reach_mm=3.0)
    assert int(out[2, 2].sum()) == 11


def test_join_and_allowed():
    """``join`` voxels join whenever they touch the object; ``allowed`` limits the rule."""
    profile = [100.0] * 8 + [80.0] + [0.0] * 15
    vol = _profile_volume(profile)
    blocked = np.ones(vol.shape, dtype=bool)
    blocked[:, :, 8] = False
    out = partial_volume_boundary(_slab(8), vol, 100.0, 1.0, (1.0,) * 3, allowed=blocked)
    assert int(out[2, 2].sum()) == 8
    join = np.zeros(vol.shape, dtype=bool)
    join[:, :, 8:10] = True
    out = partial_volume_boundary(_slab(8), vol, 100.0, 1.0, (1.0,) * 3, join=join, allowed=blocked)
    assert int(out[2, 2].sum()) == 10


def test_bad_input():
    with pytest.raises(InvalidInputError, match="3-D"):
        partial_volume_boundary(np.zeros((4, 4), bool), np.zeros((4, 4)), 0.0, 1.0, (1.0, 1.0))
    with pytest.raises(InvalidInputError, match="shape"):
        partial_volume_boundary(np.zeros((4, 4, 4), bool), np.zeros((4, 4, 5)), 0.0, 1.0, (1.0,) * 3)


def _organ_by_fat_and_gas(spacing: float, radius_mm: float = 12.0, seed: int = 0):
    """A blurred organ sphere in fat; 3 mm of fat beside it, gas beyond (+x side).

    The blur is the scanner's (sigma 0.7 mm) and the noise 10 HU; the reference is the
    sphere itself: an ideal blurred step crosses half-way on the true surface.
    """
    n = int(round(48.0 / spacing))
    z, y, x = (np.mgrid[:n, :n, :n] + 0.5) * spacing - 24.0
    r = np.sqrt(z ** 2 + y ** 2 + x ** 2)
    # Supersampled tissue fractions (4^3 points per voxel) so that the truth is the
    # volume of the sphere, not a voxelised one.
    k = 4
    sub = (np.arange(k) + 0.5) / k - 0.5
    frac = np.zeros((n, n, n), dtype=np.float32)
    gas = np.zeros((n, n, n), dtype=np.float32)
    for dz in sub:
        for dy in sub:
            for dx in sub:
                rr = np.sqrt((z + dz * spacing) ** 2 + (y + dy * spacing) ** 2 + (x + dx * spacing) ** 2)
                frac += rr < radius_mm
                gas += (x + dx * spacing) > radius_mm + 3.0
    frac /= k ** 3
    gas /= k ** 3
    img = frac * ORGAN + gas * AIR + (1.0 - frac - gas) * FAT
    img = ndi.gaussian_filter(img, 0.7 / spacing) + np.random.default_rng(seed).normal(0.0, 10.0, img.shape)
    return Volume(img.astype(np.float32), spacing=(spacing,) * 3, modality="CT"), (n // 2,) * 3, r


@pytest.mark.parametrize("spacing", [1.5, 1.0])
def test_organ_radius_at_the_true_surface(spacing):
    """One click in a blurred 12 mm sphere beside fat and gas: the mask's radius is the sphere's.

    With ``partial_volume_surface`` (the wider boundary, the default, ends 1.5 mm out at
    1.5 mm voxels and 2 mm out at 1 mm voxels towards the gas).

    Measured as the equivalent radius (volume) and as the extent towards the gas, both
    within half a voxel of 12 mm. The fat beside the gas is not taken: its value is the
    tissue right behind it, not a mix of organ and gas.
    """
    volume, click, r = _organ_by_fat_and_gas(spacing)
    session = RegionGrowingSession()
    session.partial_volume_surface = True
    session.set_volume(volume)
    mask = session.add_point(click).mask.astype(bool)
    radius = (3.0 * np.count_nonzero(mask) * spacing ** 3 / (4.0 * np.pi)) ** (1.0 / 3.0)
    assert abs(radius - 12.0) <= 0.5 * spacing, radius
    # Towards the gas: the outer face of the last voxel on the line through the click
    # lies within half a voxel of the surface.
    centres = (np.arange(mask.shape[2]) + 0.5) * spacing - 24.0
    line = mask[click[0], click[1]]
    face = centres[line].max() + 0.5 * spacing
    assert abs(face - 12.0) <= 0.5 * spacing, face


def _interpolated_step(level: float, neighbour: float, extra: int):
    """A flat border of the object (x < 10 mm) on a 3 mm grid, linearly interpolated to 1.5 mm.

    The fine voxels just inside the border read 0.75 object + 0.25 neighbour, those just
    outside 0.25 + 0.75: the 50 % surface is the coarse border. Returns the profile, the
    object's 50 % mask and a mask ``extra`` fine voxels wider.
    """
    coarse = np.array([level] * 4 + [neighbour] * 4, dtype=np.float32)
    centres = (np.arange(16) + 0.5) * 1.5
    profile = np.interp(centres, (np.arange(8) + 0.5) * 3.0, coarse)
    truth = _profile_volume(centres < 12.0) > 0.5
    wide = _profile_volume(centres < 12.0 + 1.5 * extra) > 0.5
    return _profile_volume(profile), truth, wide


@pytest.mark.parametrize("extra", [1, 2])
def test_half_way_surface_peels_the_neighbours_mixes(extra):
    """A mask one or two fine voxels past an interpolated border loses those voxels and no more."""
    image, truth, wide = _interpolated_step(ORGAN, FAT, extra)
    out = half_way_surface(wide, image, ORGAN, 5.0, (1.5,) * 3)
    assert np.array_equal(out[2, 2], truth[2, 2]), out[2, 2].astype(int)


def test_half_way_surface_keeps_a_neighbour_the_noise_hides():
    """A neighbour less than 4 noise levels from the object is not told apart from it."""
    image, truth, wide = _interpolated_step(ORGAN, ORGAN - 30.0, 2)
    assert np.array_equal(half_way_surface(wide, image, ORGAN, 10.0, (1.5,) * 3), wide)
    assert np.array_equal(half_way_surface(wide, image, ORGAN, 5.0, (1.5,) * 3)[2, 2], truth[2, 2])


def test_half_way_surface_ceiling_keeps_the_rim_towards_bone():
    """A rim facing a level at or above ``ceiling`` (bone on CT) stays: marrow's cortex is the object's."""
    image, truth, wide = _interpolated_step(ORGAN, 400.0, 2)
    assert np.array_equal(half_way_surface(wide, image, ORGAN, 5.0, (1.5,) * 3, ceiling=120.0), wide)
    assert np.array_equal(half_way_surface(wide, image, ORGAN, 5.0, (1.5,) * 3)[2, 2], truth[2, 2])


def test_half_way_surface_bad_input():
    with pytest.raises(InvalidInputError, match="3-D"):
        half_way_surface(np.zeros((4, 4), bool), np.zeros((4, 4)), 0.0, 1.0, (1.0, 1.0))
    with pytest.raises(InvalidInputError, match="shape"):
        half_way_surface(np.zeros((4, 4, 4), bool), np.zeros((4, 4, 5)), 0.0, 1.0, (1.0,) * 3)
