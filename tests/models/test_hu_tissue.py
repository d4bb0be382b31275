"""The weights-free HU tissue model on the phantom (ground truth) and the real CT."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.inference.segment import segment
from napari_medseg.io.volume import Volume
from napari_medseg.models.hu_tissue import CLASSES, IDS, body_mask, segment_hu_tissue
from napari_medseg.phantom import make_phantom


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(seed=3, shape=(48, 128, 128), spacing_zyx=(5.0, 1.6, 1.6))


def test_phantom_tissues_match_ground_truth(phantom):
    lab = segment_hu_tissue(phantom.ct)
    gt, ids = phantom.labels, phantom.label_ids
    assert lab.dtype == np.uint8 and lab.shape == phantom.ct.shape
    assert dice(lab == IDS["lung"], gt == ids["lung"]) > 0.95
    assert dice(lab == IDS["subcutaneous_fat"], gt == ids["subcutaneous_fat"]) > 0.85
    assert dice(lab == IDS["visceral_fat"], gt == ids["visceral_fat"]) > 0.8
    assert dice(lab == IDS["skeletal_muscle"], gt == ids["muscle"]) > 0.8
    bones = np.isin(gt, [ids["vertebrae"], ids["ribs"]])
    assert dice(lab == IDS["bone"], bones) > 0.8
    assert (lab[gt == ids["vertebrae"]] == IDS["bone"]).mean() > 0.95
    # The phantom's aorta is contrast-enhanced above 200 HU: a documented limit (bone).
    assert dice((lab == IDS["bone"]) & (gt != ids["aorta"]), bones) > 0.9
    assert dice(lab > 0, gt > 0) > 0.97  # body outline
    # Organs are mostly not muscle. The phantom's liver lies directly on a thin wall with no
    # fat between (a hard case for a distance band): ~16 % of it is taken for muscle there,
    # under 10 % of the organs on the real CT (test below; 2.4 % measured).
    assert (lab[gt == ids["liver"]] == IDS["skeletal_muscle"]).mean() < 0.17
    assert (lab[gt == ids["liver"]] == IDS["body_other"]).mean() > 0.8


def test_segment_entry_returns_named_table(phantom):
    labels, table = segment(phantom.ct)
    assert table.names == CLASSES
    assert set(np.unique(labels)) <= set(CLASSES) | {0}


def test_roi_subset_keeps_only_requested(phantom):
    labels, table = segment(phantom.ct, roi_subset=["lung", "Bone"])
    assert set(np.unique(labels)) == {0, IDS["lung"], IDS["bone"]}
    assert table.names == {4: "bone", 5: "lung"}


def test_air_only_volume_is_empty():
    vol = Volume(np.full((8, 32, 32), -1000, np.int16), modality="CT")
    assert not segment_hu_tissue(vol).any()


def test_couch_is_cut_off():
    hu = np.full((10, 80, 80), -1000, np.int16)
    hu[:, 10:60, 15:65] = 40  # body
    hu[:, 62:64, 5:75] = 300  # a thin couch 2 voxels below the body
    hu[:, 60:62, 38:42] = 40  # a thin bridge (cushion) to the couch
    body = body_mask(hu, (2.0, 1.0, 1.0))
    assert body[:, 30, 40].all() and not body[:, 63, 10].any()


def test_refuses_non_ct():
    vol = Volume(np.zeros((4, 16, 16), np.int16), modality="MR")
    from napari_medseg.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="CT only"):
        segment_hu_tissue(vol)


@pytest.mark.shared_data
def test_real_ct_against_totalsegmentator_reference(shared_data):
    from napari_medseg.io import read_volume

    base = shared_data / "totalseg_example"
    ct = read_volume(base / "example_ct_sm.nii.gz")
    ref = read_volume(base / "example_seg.nii.gz").array
    lab = segment_hu_tissue(ct.with_array(ct.array, modality="CT"))
    lungs = np.isin(ref, range(10, 15))
    bones = np.isin(ref, list(range(25, 51)) + list(range(69, 79)) + list(range(91, 118)))
    assert dice(lab == IDS["lung"], lungs) > 0.9
    assert dice(lab == IDS["bone"], bones) > 0.55
    back = np.isin(ref, [86, 87])  # autochthon: back muscles
    assert (lab[back] == IDS["skeletal_muscle"]).mean() > 0.6
    organs = np.isin(ref, [1, 2, 3, 5, 6])
    assert (lab[organs] == IDS["skeletal_muscle"]).mean() < 0.1
    assert (lab[organs] == IDS["body_other"]).mean() > 0.8


def _ring_phantom(gap_deg: float) -> tuple:
    """An abdomen at 1.5 mm: skin, a fat layer, a 4.5 mm muscle ring with an anterior gap
    of ``gap_deg`` degrees, and inside it organs with intra-abdominal fat between them and
    the wall (the situation of slice 60 of the real CT)."""
    nz, n = 12, 200
    yy, xx = np.mgrid[0:n, 0:n] - n / 2 + 0.5
    r = np.hypot(yy / 1.0, xx / 1.25)
    ang = np.degrees(np.arctan2(yy, xx))  # -90 deg: anterior (y grows towards the back)
    hu = np.full((n, n), -1000, np.int16)
    body = r < 78
    hu[body] = -100                                   # fat everywhere in the body
    hu[(r >= 76) & body] = 30                         # skin
    ring = (r >= 55) & (r < 58) & ~(np.abs(ang + 90) < gap_deg / 2)
    hu[ring] = 45                                     # muscle wall with a gap
    organs = (np.hypot(yy - 12, xx / 1.25) < 30) | (np.hypot(yy - 30, xx - 28) < 14)
    hu[organs] = 50                                   # organs, far from the anterior wall
    spine = np.hypot(yy - 42, xx) < 7
    hu[spine] = 600
    vol = Volume(np.repeat(hu[None], nz, axis=0), spacing=(1.5, 1.5, 3.0), modality="CT")
    inside = np.repeat((r < 55)[None], nz, axis=0)
    outside = np.repeat(((r >= 58) & (r < 76))[None], nz, axis=0)
    fat = vol.array == -100
    return vol, fat & inside, fat & outside


@pytest.mark.parametrize("gap_deg", [0, 20, 30])
def test_fat_inside_the_wall_is_visceral_across_wall_gaps(gap_deg):
    """The subcutaneous/visceral split follows the muscle ring: intra-abdominal fat reached
    through a gap in the wall stays visceral, the fat layer under the skin subcutaneous."""
    vol, fat_in, fat_out = _ring_phantom(gap_deg)
    lab = segment_hu_tissue(vol)
    assert (lab[fat_in] == IDS["visceral_fat"]).mean() > 0.97
    assert (lab[fat_out] == IDS["subcutaneous_fat"]).mean() > 0.97


@pytest.mark.shared_data
def test_real_ct_subcutaneous_fat_stays_outside_the_abdominal_cavity(shared_data):
    """On the real CT, fat inside the convex hull of TotalSegmentator's organs, spine, and
    back and psoas muscles (the abdominal cavity) is visceral, not subcutaneous."""
    from matplotlib.path import Path as MPath
    from scipy.spatial import ConvexHull

    from napari_medseg.io import read_volume

    base = shared_data / "totalseg_example"
    ct = read_volume(base / "example_ct.nii.gz")
    ref = read_volume(base / "example_seg.nii.gz").array
    z0 = 82  # example_ct_sm (the reference's scan) is slices 82..111 of example_ct
    small = read_volume(base / "example_ct_sm.nii.gz").array
    assert np.array_equal(ct.array[z0:z0 + small.shape[0]], small)
    lab = segment_hu_tissue(ct.with_array(ct.array, modality="CT"))[z0:z0 + small.shape[0]]
    cavity_ids = [1, 2, 3, 5, 6, 7, 18, 19, 20, 52, 63, 64, 86, 87, 88, 89] + list(range(25, 51))
    yy, xx = np.mgrid[0:ref.shape[1], 0:ref.shape[2]]
    grid = np.c_[yy.ravel(), xx.ravel()]
    subcut_inside = fat_inside = visceral_inside = subcut = 0
    for z in range(ref.shape[0]):
        pts = np.argwhere(np.isin(ref[z], cavity_ids))
        inside = MPath(pts[ConvexHull(pts).vertices]).contains_points(grid).reshape(ref.shape[1:])
        fat = np.isin(lab[z], [IDS["subcutaneous_fat"], IDS["visceral_fat"]])
        subcut_inside += (inside & (lab[z] == IDS["subcutaneous_fat"])).sum()
        visceral_inside += (inside & (lab[z] == IDS["visceral_fat"])).sum()
        fat_inside += (inside & fat).sum()
        subcut += (lab[z] == IDS["subcutaneous_fat"]).sum()
    # (with the former closing-based wall: 11.5 % of the subcutaneous label lay in the cavity
    # and 86.8 % of the cavity's fat was visceral)
    assert subcut_inside / subcut < 0.02
    assert visceral_inside / fat_inside > 0.97
    assert subcut > 20000  # the real subcutaneous layer is still found


def test_visceral_fat_and_body_other_have_distinct_colours(phantom):
    from napari_medseg.models.hu_tissue import COLORS

    rgb = {i: np.array(c[:3]) for i, c in COLORS.items()}
    assert set(rgb) == set(CLASSES)
    dist = min(np.abs(rgb[a] - rgb[b]).sum() for a in rgb for b in rgb if a < b)
    assert dist > 0.3
    assert np.abs(rgb[IDS["visceral_fat"]] - rgb[IDS["body_other"]]).sum() > 1.0
    table = segment(phantom.ct)[1]  # what the widget and the CLI put on the layer / in the file
    assert table.color_of(IDS["visceral_fat"]) == COLORS[IDS["visceral_fat"]]


@pytest.mark.parametrize("f", [(2, 3), (3, 3), (3, 1)])
def test_block_resampling_equals_padded_reference(f):
    from napari_medseg.models import hu_tissue

    rng = np.random.default_rng(7)
    mask = rng.random((3, 31, 29)) > 0.6  # sizes that are no multiple of the factors
    fy, fx = f
    py, px = (-31) % fy, (-29) % fx
    blocks = np.pad(mask, ((0, 0), (0, py), (0, px))).reshape(3, (31 + py) // fy, fy,
                                                              (29 + px) // fx, fx)
    np.testing.assert_array_equal(hu_tissue._downsample(mask, f, any_=True), blocks.any(axis=(2, 4)))
    np.testing.assert_array_equal(hu_tissue._downsample(mask, f),
                                  blocks.sum(axis=(2, 4)) * 2 >= fy * fx)
    small = rng.random((3, 11, 10)) > 0.5
    up = hu_tissue._upsample(small, f, (3, 31, 29))
    np.testing.assert_array_equal(up, np.repeat(np.repeat(small, fy, 1), fx, 2)[:, :31, :29])


def _chest_with_airway() -> Volume:
    """Two lungs (noisy -860 HU), a pure-air trachea touching the left one, a vertebra."""
    rng = np.random.default_rng(0)
    hu = np.full((30, 120, 140), -1000, np.int16)
    yy, xx = np.mgrid[0:120, 0:140]
    hu[:, ((yy - 60) / 50) ** 2 + ((xx - 70) / 62) ** 2 <= 1] = 40
    for cx in (45, 95):
        lung = ((yy - 60) / 30) ** 2 + ((xx - cx) / 18) ** 2 <= 1
        hu[:, lung] = (-860 + rng.normal(0, 30, size=(30, int(lung.sum())))).astype(np.int16)
    hu[:, ((yy - 45) / 5) ** 2 + ((xx - 70) / 5) ** 2 <= 1] = -1000
    hu[:, 45, 62:66] = -1000
    hu[:, 92:104, 62:78] = 500  # a vertebra with marrow inside its cortex
    hu[:, 95:101, 66:74] = 150
    return Volume(hu, spacing=(1.0, 1.0, 2.0), modality="CT")


@pytest.mark.parametrize("case", ["phantom", "airway"])
def test_work_inside_boxes_gives_the_whole_volume_result(case, phantom, monkeypatch):
    """Labelling and hole filling inside the boxes of the masks (air, pure air, each slab
    of lung, body and bone) give the voxels that the whole volume gives."""
    from napari_medseg.models import hu_tissue

    vol = phantom.ct if case == "phantom" else _chest_with_airway()
    fast = segment_hu_tissue(vol)
    monkeypatch.setattr(hu_tissue, "bbox", lambda m, pad=0: tuple(slice(0, n) for n in m.shape))
    whole = segment_hu_tissue(vol)
    np.testing.assert_array_equal(fast, whole)
    for name in ("lung", "bone", "body_other") + (("airway",) if case == "airway" else ()):
        assert (fast == IDS[name]).any(), name  # the paths compared were taken
