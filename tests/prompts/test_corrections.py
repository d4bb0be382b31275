"""Corrective clicks on an existing mask: a negative click takes only its leak, a
positive click adds only around itself (the shape rules, on flat images where
intensity tells nothing)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from napari_medseg._ndimage import bbox
from napari_medseg.prompts._corrections import incremental_click, local_addition, negative_cut


def _uniform(shape=(40, 60, 60), spacing=(1.5, 1.5, 1.5)):
    """A flat image: only the mask's shape can tell object from leak."""
    return np.full(shape, 100.0, np.float32), np.asarray(spacing)


def _sphere(shape, centre, radius_mm, spacing):
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return ((z - centre[0]) * spacing[0]) ** 2 + ((y - centre[1]) * spacing[1]) ** 2 + \
        ((x - centre[2]) * spacing[2]) ** 2 <= radius_mm ** 2


def test_negative_click_in_a_rim_leak_keeps_the_object():
    """A mask that leaked one voxel around a sphere; a negative click in that rim takes
    rim voxels near the click, never the sphere's inside."""
    image, spacing = _uniform()
    centre = (20, 30, 30)
    obj = _sphere(image.shape, centre, 15.0, spacing)
    mask = ndi.binary_dilation(obj, iterations=1)
    click = (20, 30, 30 + int(np.argwhere(mask[20, 30, 30:] == 0)[0][0]) - 1)  # outermost rim voxel
    assert mask[click] and not ndi.binary_erosion(mask)[click]
    removed = negative_cut(image, mask, spacing, [click], [centre], click)
    assert removed[click]
    inner = ndi.binary_erosion(obj, iterations=2)
    assert not (removed & inner).any(), "the negative click cut into the object"
    assert removed.sum() < 0.02 * mask.sum()


def test_negative_click_removes_a_leak_beyond_its_neck():
    """Object and leak of the same intensity joined by a thin neck: a negative click in
    the leak removes the leak up to the neck, the object stays whole."""
    image, spacing = _uniform(shape=(40, 60, 100))
    obj = _sphere(image.shape, (20, 30, 28), 18.0, spacing)
    leak = _sphere(image.shape, (20, 30, 72), 15.0, spacing)
    neck = np.zeros(image.shape, bool)
    neck[19:22, 29:32, 28:73] = True  # 4.5 mm wide
    mask = obj | leak | neck
    removed = negative_cut(image, mask, spacing, [(20, 30, 72)], [(20, 30, 28)], (20, 30, 72))
    assert (removed & leak).sum() > 0.9 * leak.sum()
    assert (removed & obj).sum() < 0.01 * obj.sum()


def test_positive_correction_into_a_same_intensity_neighbour_stays_local():
    """A positive click next to the mask whose grown region runs into a large region of
    the same intensity (nothing bounds it) adds only a ball of about the click's depth,
    not the neighbour."""
    shape, spacing = (40, 60, 100), np.asarray((1.5, 1.5, 1.5))
    old = _sphere(shape, (20, 30, 25), 15.0, spacing)
    grown = np.ones(shape, bool)  # the click's region filled everything
    click = (20, 30, 25 + 10 + 5)  # 15 + 7.5 mm from the centre: ~7.5 mm outside the mask
    added = local_addition(grown, old, bbox(old), click, spacing)
    assert added[click] and not (added & old).any()
    ball = 4.0 / 3.0 * np.pi * 10.0 ** 3 / np.prod(spacing)  # a 10 mm ball
    assert added.sum() < ball, added.sum()


def test_negative_click_of_other_intensity_removes_that_content_whole():
    """A lesion of clearly different intensity inside the mask: a negative click in it
    removes the lesion (whatever its depth), not the organ around it."""
    image, spacing = _uniform()
    organ = _sphere(image.shape, (20, 30, 30), 25.0, spacing)
    lesion = _sphere(image.shape, (20, 30, 36), 6.0, spacing)
    image[lesion] = 40.0
    removed = negative_cut(image, organ, spacing, [(20, 30, 36)], [(20, 30, 22)], (20, 30, 36))
    assert (removed & lesion).sum() > 0.8 * lesion.sum()
    assert (removed & organ & ~ndi.binary_dilation(lesion, iterations=2)).sum() == 0


def test_incremental_click_is_one_appended_prompt():
    pts = ((1, 2, 3), (4, 5, 6))
    assert incremental_click(pts[:1], (True,), pts, (True, False)) == 1
    assert incremental_click(pts[:1], (True,), pts[::-1], (True, False)) is None
    assert incremental_click((), (), pts[:1], (True,)) is None


def test_corrections_on_a_fine_grid_use_a_strided_work_grid(monkeypatch):
    """On 0.5 mm voxels the neck case's box holds millions of voxels: the correction runs
    on a strided grid (at most WORK_VOXELS samples) and still removes the leak, not the
    object."""
    import napari_medseg.prompts._corrections as corrections

    spacing = np.asarray((0.5, 0.5, 0.5))
    shape = (120, 180, 300)
    image = np.full(shape, 100.0, np.float32)
    obj = _sphere(shape, (60, 90, 84), 18.0, spacing)
    leak = _sphere(shape, (60, 90, 216), 15.0, spacing)
    neck = np.zeros(shape, bool)
    neck[57:66, 87:96, 84:217] = True
    mask = obj | leak | neck
    seen = []
    real = corrections._negative_cut

    def spy(array, sub_mask, *args, **kwargs):
        seen.append(sub_mask.size)
        return real(array, sub_mask, *args, **kwargs)

    monkeypatch.setattr(corrections, "_negative_cut", spy)
    removed = negative_cut(image, mask, spacing, [(60, 90, 216)], [(60, 90, 84)], (60, 90, 216))
    assert seen and max(seen) <= corrections.WORK_VOXELS
    assert (removed & leak).sum() > 0.9 * leak.sum()
    assert (removed & obj).sum() < 0.01 * obj.sum()
    assert not (removed & ~mask).any()
