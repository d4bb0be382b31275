"""Bounding boxes: against argwhere, with padding, clipping and label maps."""

import numpy as np
import pytest

from napari_medseg._ndimage import bbox, bbox_mm, grow_box, label_boxes, union_box


def _argwhere_box(mask, pad=0):
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(0) - pad, 0)
    hi = np.minimum(idx.max(0) + 1 + pad, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


@pytest.mark.parametrize("ndim", [1, 2, 3, 4])
def test_bbox_matches_argwhere(ndim):
    rng = np.random.default_rng(ndim)
    for _ in range(20):
        mask = rng.random((7,) * ndim) > 0.97
        if not mask.any():
            assert bbox(mask) is None
            continue
        assert bbox(mask) == _argwhere_box(mask)
        assert bbox(mask, pad=2) == _argwhere_box(mask, pad=2)


def test_bbox_per_axis_pad_clips_at_the_array():
    mask = np.zeros((10, 10, 10), bool)
    mask[0, 5, 9] = True
    assert bbox(mask, pad=(1, 2, 3)) == (slice(0, 2), slice(3, 8), slice(6, 10))
    assert bbox(np.zeros((3, 3, 3), bool)) is None


def test_bbox_mm_grows_by_millimetres():
    mask = np.zeros((5, 20, 20), bool)
    mask[2, 10, 10] = True
    # 2 mm: 1 slice of 2.5 mm (ceil 0.8), 3 voxels of 0.7 mm (ceil 2.86)
    assert bbox_mm(mask, (2.5, 0.7, 1.0), 2.0) == (slice(1, 4), slice(7, 14), slice(8, 13))


def test_union_and_grow():
    a = (slice(1, 3), slice(0, 2))
    b = (slice(2, 5), slice(4, 6))
    assert union_box(a, b) == (slice(1, 5), slice(0, 6))
    assert union_box(None, b) == b and union_box(a, None) == a and union_box(None, None) is None
    assert grow_box(a, (2, 1), (4, 2)) == (slice(0, 4), slice(0, 2))


def test_label_boxes_every_id_and_requested_ids():
    lab = np.zeros((6, 6, 6), np.uint16)
    lab[1:3, 2, 2] = 1
    lab[4, 0:5, 1] = 7
    boxes = label_boxes(lab)
    assert sorted(boxes) == [1, 7]
    assert boxes[7] == (slice(4, 5), slice(0, 5), slice(1, 2))
    assert label_boxes(lab, [7, 3]) == {7: boxes[7]}  # an absent id is left out
    assert label_boxes(lab, []) == {}
    assert label_boxes(np.zeros((2, 2, 2), np.uint8)) == {}
    # ids beyond 2**20 would make find_objects list a million entries: None, caller falls back
    big = np.zeros((2, 2, 2), np.int32)
    big[0, 0, 0] = 2**21
    assert label_boxes(big) is None
    assert label_boxes(big, [2**21]) == {2**21: (slice(0, 1),) * 3}
