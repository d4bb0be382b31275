"""SamMed3DSession: the published recipe around the user's clicks.

Geometry is checked with a transparent stand-in network (its "embedding" is the
normalised crop pooled to 32^3 and its logits are that minus a level, i.e. an
intensity threshold), so the expected mask is known: a bright sphere must come back
where it is in the volume, through the 1.5 mm resampling, the crop, the 32^3 logits
and the map back. A small real SAM-Med3D runs the same path end to end.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_medseg._ndimage import bbox, nearest_index, resample_linear, target_shape
from napari_medseg.errors import CheckpointMismatchError, ImageReadError, InvalidInputError, UnsafeCheckpointError
from napari_medseg.io.volume import Volume
from napari_medseg.prompts.sam_med3d_session import (
    CROP,
    TARGET_SPACING_MM,
    SamMed3DSession,
    _AxisMap,
    normalise_crop,
)
from napari_medseg.testing import assert_close_to_scale


def resampled_shape(shape, spacing):
    """The 1.5 mm grid SAM-Med3D works on."""
    return target_shape(shape, spacing, TARGET_SPACING_MM)


class ThresholdNet(torch.nn.Module):
    """encode = 4x average pool of the crop; decode = pooled crop - level."""

    def __init__(self, level: float = -4.0) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.level = level
        self.crops: list = []
        self.calls: list = []

    def encode(self, crop):
        self.crops.append(crop.detach().clone())
        return F.avg_pool3d(crop, 4)

    def decode(self, emb, coords, labels, mask_logits=None, multimask_output=False):
        self.calls.append((coords.clone(), labels.clone(), None if mask_logits is None else mask_logits.clone()))
        return emb - self.level, torch.full((1, 1), 0.5)


def _spheres(shape, spacing_zyx, centres_zyx, radius_mm, seed=0):
    rng = np.random.default_rng(seed)
    arr = rng.normal(-100, 5, size=shape).astype(np.int16)
    truth = np.zeros(shape, bool)
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    for c in centres_zyx:
        d2 = sum(((g - ci) * s) ** 2 for g, ci, s in zip(grids, c, spacing_zyx))
        truth |= d2 <= radius_mm**2
    arr[truth] = rng.normal(100, 10, size=int(truth.sum())).astype(np.int16)
    vol = Volume(arr, spacing=tuple(reversed(spacing_zyx)))
    return vol, truth


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


SPACING = (2.5, 0.8, 0.8)  # z, y, x (anisotropic, like a routine abdominal CT)


@pytest.fixture
def sphere():
    return _spheres((48, 160, 170), SPACING, [(24, 80, 85)], radius_mm=25)


def test_sphere_is_found_where_it_is(sphere):
    vol, truth = sphere
    net = ThresholdNet()
    s = SamMed3DSession(network=net, device="cpu")
    s.set_volume(vol)
    up = s.add_point((24, 80, 85))
    assert up.mask.shape == vol.shape and up.mask.dtype == bool
    assert _dice(up.mask, truth) > 0.85
    # the changed box holds the whole mask, and is no larger than the crop
    zs, ys, xs = up.changed
    inside = np.zeros_like(up.mask)
    inside[up.changed] = True
    assert not (up.mask & ~inside).any()
    # the click is the centre of the crop, in crop voxels (z, y, x order)
    coords = net.calls[0][0][0, 0].numpy()
    assert np.allclose(coords, CROP // 2, atol=1.0)
    # the crop was z-scored over its voxels > 0 (sphere): sphere ~ N(0, 1)
    crop = net.crops[0][0, 0].numpy()
    assert abs(float(crop[crop > -5].mean())) < 0.5


def test_clicks_inside_the_crop_reuse_the_embedding_and_feed_back_logits(sphere):
    vol, _ = sphere
    net = ThresholdNet()
    s = SamMed3DSession(network=net, device="cpu")
    s.set_volume(vol)
    s.add_point((24, 80, 85))
    first_state = s._state["low_res"]
    s.add_point((24, 90, 95))
    s.add_point((24, 20, 20), positive=False)
    assert len(net.crops) == 1  # encoded once
    assert torch.all(net.calls[0][2] == 0)  # first click: zero mask prompt (reference recipe)
    assert torch.equal(net.calls[1][2], first_state)  # previous low-res logits fed back
    assert net.calls[2][1].tolist() == [[1, 1, 0]]  # all clicks of the object, with labels
    # undo restores the state, so the next click feeds back the first click's logits again
    s.undo()
    s.undo()
    s.add_point((20, 80, 85))
    assert torch.equal(net.calls[-1][2], first_state)


def test_positive_click_outside_the_crop_extends_the_object():
    # two bright spheres 26 cm apart along x: one crop (19.2 cm) cannot hold both
    vol, truth = _spheres((40, 120, 400), SPACING, [(20, 60, 60), (20, 60, 340)], radius_mm=20)
    net = ThresholdNet()
    s = SamMed3DSession(network=net, device="cpu")
    s.set_volume(vol)
    first = s.add_point((20, 60, 60)).mask.copy()
    assert first[:, :, :200].any() and not first[:, :, 300:].any()
    up = s.add_point((20, 60, 340))
    assert len(net.crops) == 2  # re-encoded around the new click
    mask_prompt = net.calls[-1][2]
    assert set(torch.unique(mask_prompt).tolist()) <= {0.0, 1.0}  # binary prompt after a re-crop
    assert _dice(up.mask, truth) > 0.85  # both parts: the first one was kept
    assert (up.mask & first).sum() == first.sum()


def test_negative_click_alone_gives_no_object(sphere):
    vol, _ = sphere
    s = SamMed3DSession(network=ThresholdNet(), device="cpu")
    s.set_volume(vol)
    up = s.add_point((24, 80, 85), positive=False)
    assert not up.mask.any()
    assert "positive" in s.message


def test_box_adds_a_centre_click_and_clips(sphere):
    vol, truth = sphere
    net = ThresholdNet()
    s = SamMed3DSession(network=net, device="cpu")
    s.set_volume(vol)
    up = s.add_box((10, 60, 60), (38, 80, 110))  # upper half of the sphere in y
    assert up.mask.any()
    assert not up.mask[:, 81:, :].any() and not up.mask[:, :60, :].any()
    assert not up.mask[:9].any() and not up.mask[39:].any()


def test_object_larger_than_the_crop_is_reported():
    vol, _ = _spheres((60, 300, 300), SPACING, [(30, 150, 150)], radius_mm=110)
    s = SamMed3DSession(network=ThresholdNet(), device="cpu")
    s.set_volume(vol)
    s.add_point((30, 150, 150))
    assert "edge of the 128" in s.message


def test_initial_mask_is_the_first_mask_prompt(sphere):
    vol, truth = sphere
    net = ThresholdNet()
    s = SamMed3DSession(network=net, device="cpu")
    s.set_volume(vol)
    s.set_initial_mask(truth)
    s.add_point((24, 80, 85))
    prompt = net.calls[0][2]
    assert float(prompt.sum()) > 0 and set(torch.unique(prompt).tolist()) <= {0.0, 1.0}


def test_map_back_equals_reference_pipeline():
    """Upsample 32^3 -> 128^3 (trilinear), threshold, nearest back to the original grid:
    our separable, region-limited version gives the same voxels."""
    rng = np.random.default_rng(1)
    logits = rng.normal(-1, 1, size=(32, 32, 32)).astype(np.float32)
    logits[:4] = -5  # some empty margin
    shape, spacing = (70, 230, 250), (2.0, 0.7, 0.9)
    res_shape = resampled_shape(shape, spacing)
    start = (10, 40, 60)
    maps = [_AxisMap(n, r, s0) for n, r, s0 in zip(shape, res_shape, start)]
    bounds, mask = SamMed3DSession._map_back(maps, logits)
    # reference: 128^3 mask pasted into the resampled grid, nearest back to the original
    up = F.interpolate(torch.from_numpy(logits)[None, None], size=(128,) * 3, mode="trilinear", align_corners=False)
    crop_mask = (torch.sigmoid(up[0, 0]) > 0.5).numpy()
    full_res = np.zeros(res_shape, bool)
    dst = tuple(slice(max(s0, 0), min(s0 + 128, r)) for s0, r in zip(start, res_shape))
    src = tuple(slice(d.start - s0, d.stop - s0) for d, s0 in zip(dst, start))
    full_res[dst] = crop_mask[src]
    idx = [np.clip(np.floor((np.arange(n) + 0.5) * r / n).astype(int), 0, r - 1) for n, r in zip(shape, res_shape)]
    expected = full_res[np.ix_(*idx)]
    got = np.zeros(shape, bool)
    got[tuple(slice(a, b) for a, b in bounds)] = mask
    assert got.sum() > 1000
    assert (got != expected).sum() <= int(0.0005 * expected.sum())  # float rounding at logit == 0 only


def test_resample_matches_trilinear_interpolation():
    rng = np.random.default_rng(2)
    arr = rng.normal(size=(20, 33, 41)).astype(np.float32)
    shape = resampled_shape(arr.shape, (2.5, 0.8, 0.7))
    ours = resample_linear(arr, shape, chunk=7).numpy()
    ref = F.interpolate(torch.from_numpy(arr)[None, None], size=shape, mode="trilinear", align_corners=False)[0, 0]
    assert ours.shape == tuple(shape) == (33, 18, 19)
    assert_close_to_scale(ours, ref.numpy(), name="trilinear resampling")


def test_normalisation_uses_voxels_above_zero():
    crop = np.zeros((8, 8, 8), np.float32)
    crop[:4] = np.arange(4 * 64).reshape(4, 8, 8) + 1
    out = normalise_crop(crop)
    fg = out[:4]
    assert abs(fg.mean()) < 1e-5 and abs(fg.std() - 1) < 1e-4
    assert np.all(np.isfinite(normalise_crop(np.zeros((4, 4, 4), np.float32))))


def test_small_real_network_end_to_end(tiny_net, sphere):
    vol, _ = sphere
    s = SamMed3DSession(network=tiny_net, device="cpu")
    s.set_volume(vol)
    up = s.add_point((24, 80, 85))
    assert up.mask.shape == vol.shape
    assert s.last_iou is not None and np.isfinite(s.last_iou)
    up2 = s.add_point((24, 80, 95), positive=False)
    assert up2.mask.dtype == bool
    assert len(s._embeddings) == 1
    s.reset()
    assert not s.mask.any()


def test_real_ct_click_reaches_the_model_at_the_clicked_voxel(shared_data):
    """On the real CT: the crop the encoder sees is centred on the clicked voxel (same
    intensity after normalisation), and the returned mask contains the click."""
    from napari_medseg.io import read_volume

    vol = read_volume(shared_data / "totalseg_example" / "example_ct_sm.nii.gz")
    seg = read_volume(shared_data / "totalseg_example" / "example_seg.nii.gz").array
    liver = np.argwhere(seg == 5)  # TotalSegmentator id 5: liver
    click = tuple(int(v) for v in liver[len(liver) // 2])
    net = ThresholdNet(level=-1.5)
    s = SamMed3DSession(network=net, device="cpu")
    s.set_volume(vol)
    up = s.add_point(click)
    crop = net.crops[0][0, 0].numpy()
    from scipy.ndimage import map_coordinates

    start = s._state["start"]
    raw = s._crop_image(start)
    fg = raw[raw > 0]
    # original (continuous) coordinates of the crop centre voxel, interpolated linearly
    orig = [(st + 64 + 0.5) * n / r - 0.5 for st, n, r in zip(start, vol.shape, s._res_shape)]
    assert np.allclose(orig, click, atol=0.75)  # the crop centre is the clicked voxel
    value = map_coordinates(vol.array.astype(np.float64), np.array(orig)[:, None], order=1, mode="nearest")[0]
    expected = (value - fg.mean()) / fg.std()
    assert abs(float(crop[64, 64, 64]) - expected) < 1e-3
    assert up.mask[click]
    assert up.mask[seg == 5].mean() > 0.5  # most of the liver is in the intensity band


@pytest.mark.parametrize("shape, spacing, start", [
    ((40, 60, 70), (3.0, 3.0, 3.0), (-20, 5, 10)),  # original coarser than the crop grid
    ((300, 120, 110), (0.5, 1.6, 1.5), (30, -40, 0)),  # finer along z; crop beyond the edge
])
def test_map_back_on_coarse_and_fine_grids(shape, spacing, start):
    """The original-grid mask equals nearest-neighbour sampling of the thresholded
    128^3 upsampled logits, whether original voxels are larger or smaller than crop voxels."""
    rng = np.random.default_rng(3)
    logits = -np.ones((32, 32, 32), np.float32)
    logits[8:20, 10:25, 12:22] = rng.uniform(0.2, 2.0, size=(12, 15, 10))
    res_shape = resampled_shape(shape, spacing)
    maps = [_AxisMap(n, r, s0) for n, r, s0 in zip(shape, res_shape, start)]
    bounds, mask = SamMed3DSession._map_back(maps, logits)
    up = F.interpolate(torch.from_numpy(logits)[None, None], size=(128,) * 3, mode="trilinear", align_corners=False)
    crop_mask = (up[0, 0] > 0).numpy()
    expected = np.zeros(shape, bool)
    idx = [np.clip(np.floor((np.arange(n) + 0.5) * r / n).astype(int), 0, r - 1) - s0
           for n, r, s0 in zip(shape, res_shape, start)]
    inside = [(i >= 0) & (i < 128) for i in idx]
    sub = crop_mask[np.ix_(*(np.clip(i, 0, 127) for i in idx))]
    sub &= inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]
    expected[:] = sub
    got = np.zeros(shape, bool)
    got[tuple(slice(a, b) for a, b in bounds)] = mask
    assert expected.sum() > 100
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("shape, spacing, start, objects", [
    ((112, 101, 122), (3.0, 3.0, 3.0), (124, 102, 144), 12),  # coarser than the crop grid on every axis
    ((50, 400, 300), (5.0, 0.4, 0.6), (-20, 30, 0), 12),  # coarse z, fine y and x; crop beyond the edge
    ((300, 512, 512), (1.0, 0.7, 0.7), (36, 55, 55), 2),  # finer on every axis (0.7 mm in-plane)
])
def test_map_back_gives_the_reference_voxels_in_a_tight_box(shape, spacing, start, objects):
    """Along axes whose original voxels are at least as coarse as the crop's, the logits are
    interpolated at the crop voxels those original voxels sample; elsewhere on the crop grid
    and gathered. Either way: the reference's voxels, and the returned box is the mask's own
    bounding box (a loose box costs every later step: paste, undo copy, merge)."""
    from napari_medseg._ndimage import bbox

    rng = np.random.default_rng(4)
    res_shape = resampled_shape(shape, spacing)
    maps = [_AxisMap(n, r, s0) for n, r, s0 in zip(shape, res_shape, start)]
    idx = [np.clip(np.floor((np.arange(n) + 0.5) * r / n).astype(int), 0, r - 1) - s0
           for n, r, s0 in zip(shape, res_shape, start)]
    inside = [(i >= 0) & (i < 128) for i in idx]
    for _ in range(objects):  # blobs of ~13 mm radius at random places in the crop
        grid = np.indices((32, 32, 32)) - rng.uniform(8, 24, 3)[:, None, None, None]
        logits = (9.0 - np.sqrt((grid**2).sum(0)) + rng.normal(0, 0.3, (32, 32, 32))).astype(np.float32)
        bounds, mask = SamMed3DSession._map_back(maps, logits)
        up = F.interpolate(torch.from_numpy(logits)[None, None], size=(128,) * 3, mode="trilinear",
                           align_corners=False)
        expected = (up[0, 0] > 0).numpy()[np.ix_(*(np.clip(i, 0, 127) for i in idx))]
        expected &= inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]
        if not expected.any():
            assert mask is None
            continue
        got = np.zeros(shape, bool)
        got[tuple(slice(a, b) for a, b in bounds)] = mask
        assert (got != expected).sum() <= int(1e-5 * expected.sum())  # float rounding at logit == 0 only
        assert mask.shape == tuple(b - a for a, b in bounds)
        assert bbox(mask) == tuple(slice(0, n) for n in mask.shape)


@pytest.mark.parametrize("prev_box, new_box", [
    (((4, 10), (8, 20), (8, 20)), ((3, 12), (6, 22), (6, 22))),  # old object inside the new box
    (((4, 10), (8, 20), (8, 20)), ((5, 8), (10, 14), (12, 16))),  # the new mask is smaller
    (((4, 10), (8, 20), (8, 20)), None),  # nothing found this time
    (((4, 10), (8, 20), (30, 44)), ((3, 12), (6, 22), (28, 36))),  # the object leaves the crop
])
def test_merge_replaces_the_crop_part_and_keeps_the_rest(prev_box, new_box):
    """Applying the merged prediction as the base session does gives: the previous object
    outside the crop, plus the new mask (the previous object's crop part is dropped)."""
    from napari_medseg._ndimage import bbox

    shape = (16, 30, 48)
    crop_bounds = ((0, 16), (0, 30), (0, 34))
    rng = np.random.default_rng(5)
    s = SamMed3DSession(network=ThresholdNet(), device="cpu")
    s.set_volume(Volume(np.zeros(shape, np.int16)))
    prev = np.zeros(shape, bool)
    prev[tuple(slice(a, b) for a, b in prev_box)] = rng.random([b - a for a, b in prev_box]) < 0.7
    s._mask, s._mask_box = prev.copy(), bbox(prev)  # as PromptSession keeps them
    new = None
    if new_box is not None:
        new = rng.random([b - a for a, b in new_box]) < 0.6
    pred = s._merge(new_box, new, crop_bounds, {"start": (0, 0, 0)})
    expected = prev.copy()
    expected[tuple(slice(a, b) for a, b in crop_bounds)] = False
    if new_box is not None:
        expected[tuple(slice(a, b) for a, b in new_box)] |= new
    got = prev.copy()
    got[s._mask_box] = False  # what PromptSession._apply does with the prediction
    got[pred.region] = pred.mask
    assert np.array_equal(got, expected)
    if pred.box is not None:  # a box the prediction carries is the mask's own
        assert pred.box == bbox(pred.mask)


def test_clicks_in_the_crop_carry_their_box_and_undo_restores_them(sphere, monkeypatch):
    """Clicks inside one crop: each answer carries its mask's bounding box, so the session
    pastes it without scanning the mask (a 128^3 crop is 14 M voxels on a 0.7 mm grid); the
    box it keeps is the mask's own, and undo gives back every earlier mask."""
    import napari_medseg.prompts.base as base

    vol, truth = sphere
    s = SamMed3DSession(network=ThresholdNet(), device="cpu")
    s.set_volume(vol)
    monkeypatch.setattr(base, "bbox", lambda *a: pytest.fail("the session scanned a mask whose box it was given"))
    masks = []
    for zyx, positive in [((24, 80, 85), True), ((24, 90, 95), True), ((24, 20, 20), False), ((20, 75, 80), True)]:
        masks.append(s.add_point(zyx, positive=positive).mask.copy())
        assert s._mask_box == bbox(masks[-1])
    assert _dice(masks[-1], truth) > 0.85
    for expected in reversed(masks[:-1]):
        np.testing.assert_array_equal(s.undo().mask, expected)
        assert s._mask_box == bbox(expected)


@pytest.mark.parametrize("tile", [(2048, 64), (7, 5)])
def test_banded_product_equals_the_whole_product(tile, monkeypatch):
    """The last axis' interpolation product, tile by tile over the columns each tile uses
    (the weights left out are zeros): the same voxels as the whole product."""
    from napari_medseg._ndimage import linear_upsample_matrix
    from napari_medseg.prompts import sam_med3d_session as sam

    monkeypatch.setattr(sam, "TILE", tile)
    rng = np.random.default_rng(6)
    up = linear_upsample_matrix(32, CROP)
    for n_orig, lo, hi in [(274, 3, 30), (64, 0, 32), (300, 10, 14)]:
        rows = up[nearest_index(n_orig, CROP)][:, lo:hi]  # the original voxels' rows, some all zero
        t = torch.from_numpy(rng.normal(0, 2, (9, 13, hi - lo)).astype(np.float32))
        r = torch.from_numpy(np.ascontiguousarray(rows))
        got = sam._positive_product(t, r)
        assert np.array_equal(got, torch.matmul(t, r.t()).numpy() > 0)
        assert got.shape == (9, 13, n_orig)


# --- bad input and faults


def _sam():
    from napari_medseg.prompts.sam_med3d_session import SamMed3DSession

    return SamMed3DSession


def _write(path, what):
    if what == "empty":
        path.write_bytes(b"")
    elif what == "garbage":
        path.write_bytes(b"this is not a checkpoint" * 10)
    elif what == "nnunet":
        torch.save({"network_weights": {"a": torch.zeros(1)}, "trainer_name": "nnUNetTrainer"}, path)
    elif what == "payload":
        class Payload:
            def __reduce__(self):
                return (print, ("payload ran",))

        torch.save({"model_state_dict": {"x": Payload()}}, path)


@pytest.fixture
def tiny_sam_net():
    from napari_medseg.models.sam_med3d import build_sam_med3d

    torch.manual_seed(0)
    return build_sam_med3d(embed_dim=48, depth=2, num_heads=2, global_attn_indexes=(1,), prompt_dim=48)


@pytest.mark.parametrize(
    "what, error, fragment",
    [
        ("empty", ImageReadError, "empty"),
        ("garbage", ImageReadError, "corrupt"),
        ("nnunet", CheckpointMismatchError, "not a SAM-Med3D checkpoint"),
        ("payload", UnsafeCheckpointError, "nothing was executed"),
    ],
)
def test_bad_sam_checkpoint_fails_at_set_volume_and_leaves_session_empty(tmp_path, what, error, fragment):
    path = tmp_path / "sam_med3d_turbo.pth"
    _write(path, what)
    session = _sam()(weights=path, device="cpu")
    vol = Volume(np.zeros((8, 8, 8), np.int16))
    with pytest.raises(error) as info:
        session.set_volume(vol)
    assert fragment in str(info.value)
    with pytest.raises(InvalidInputError, match="no volume set"):
        session.volume


@pytest.mark.parametrize(
    "array, fragment",
    [
        (np.full((6, 8, 8), np.nan, np.float32), "NaN"),
        (np.where(np.arange(384).reshape(6, 8, 8) == 5, np.inf, 0).astype(np.float32), "NaN or infinite"),
        (np.zeros((6, 8, 8), np.complex64), "real-valued"),
    ],
)
def test_bad_volumes_are_refused(tiny_sam_net, array, fragment):
    session = _sam()(network=tiny_sam_net, device="cpu")
    with pytest.raises(InvalidInputError) as info:
        session.set_volume(Volume(array))
    assert fragment in str(info.value)
    with pytest.raises(InvalidInputError):
        session.volume


def test_point_outside_volume_changes_nothing(tiny_sam_net):
    session = _sam()(network=tiny_sam_net, device="cpu")
    session.set_volume(Volume(np.zeros((6, 8, 8), np.int16)))
    with pytest.raises(InvalidInputError, match="outside the volume"):
        session.add_point((10, 2, 2))
    assert not session.can_undo and not session.mask.any()


def test_one_object_longer_than_the_crop_is_reported_then_completed_by_recrops():
    """A 32 cm bar (crop: 19.2 cm at 1.5 mm): the first click says the object was cut at the
    crop along x; clicks in the missing parts re-crop and merge; Dice rises at each step and
    no step loses what an earlier one found."""
    shape = (24, 60, 440)  # z, y, x at 2.5 x 0.8 x 0.8 mm: 35 cm along x
    rng = np.random.default_rng(3)
    arr = rng.normal(-100, 5, size=shape).astype(np.int16)
    truth = np.zeros(shape, bool)
    truth[6:18, 20:40, 20:420] = True  # 32 cm long
    arr[truth] = rng.normal(100, 10, size=int(truth.sum())).astype(np.int16)
    vol = Volume(arr, spacing=(0.8, 0.8, 2.5))
    net = ThresholdNet()
    s = SamMed3DSession(network=net, device="cpu")
    s.set_volume(vol)
    first = s.add_point((12, 30, 220)).mask.copy()
    assert "edge of the 128" in s.message and "along x" in s.message
    d1 = _dice(first, truth)
    xs = np.flatnonzero(first.any(axis=(0, 1)))
    assert 20 < xs[0] and xs[-1] < 419  # cut at the crop: only the middle
    left = s.add_point((12, 30, 40)).mask.copy()
    d2 = _dice(left, truth)
    assert len(net.crops) == 2 and d2 > d1 + 0.05 and (left & first).sum() == first.sum()
    right = s.add_point((12, 30, 400)).mask.copy()
    d3 = _dice(right, truth)
    assert len(net.crops) == 3 and d3 > d2 + 0.05 and (right & left).sum() == left.sum()
    xs = np.flatnonzero(right.any(axis=(0, 1)))
    assert xs[0] <= 22 and xs[-1] >= 417  # end to end (the stand-in's 4x pooling thins z)
    assert s.message == ""  # the last crop's left face lies inside what earlier crops found


def test_face_check_skips_planes_outside_the_mask_box():
    """A plane outside the mask's bounding box is empty: the answer without reading it
    is the one reading it gives."""
    rng = np.random.default_rng(5)
    mask = np.zeros((20, 30, 40), bool)
    mask[4:11, 9:25, 3:17] = rng.random((7, 16, 14)) > 0.7
    box = bbox(mask)
    for axis, n in enumerate(mask.shape):
        got = [SamMed3DSession._continues(mask, axis, i, box[axis]) for i in range(-1, n + 1)]
        assert got == [SamMed3DSession._continues(mask, axis, i) for i in range(-1, n + 1)]
        assert any(got)


@pytest.mark.parametrize("load, expected", [(0.5, 2), (7.0, 1)])
def test_decoder_runs_on_one_thread_while_the_cpus_are_oversubscribed(sphere, monkeypatch, load, expected):
    """A load average above this process's cores: the per-click decoder runs on one thread
    (OpenMP workers would wait for descheduled siblings: 680 ms instead of 78 ms at load 7
    on 2 cores); otherwise on the session's threads. Torch's setting is restored after."""
    import os

    threads_seen = []

    class ThreadProbe(ThresholdNet):
        def decode(self, *args, **kwargs):
            threads_seen.append(torch.get_num_threads())
            return super().decode(*args, **kwargs)

    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        vol, _ = sphere
        s = SamMed3DSession(network=ThreadProbe(), device="cpu")
        s.set_volume(vol)
        s.add_point((24, 80, 85))
        assert threads_seen == [expected] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
