"""ObjectCompositor: one object's masks written into a label map shared with other labels."""

import numpy as np
import pytest

from napari_medseg.errors import InvalidInputError
from napari_medseg.prompts.compositing import ObjectCompositor


def _mask(shape, *box):
    m = np.zeros(shape, bool)
    m[box] = True
    return m


def test_grow_shrink_and_other_labels_kept():
    labels = np.zeros((6, 8, 8), np.uint8)
    labels[:, :, 6:] = 7  # another structure on the right
    comp = ObjectCompositor(2)
    big = _mask(labels.shape, slice(1, 5), slice(1, 7), slice(1, 8))  # reaches into label 7
    w = comp.compose(labels, big, (slice(1, 5), slice(1, 7), slice(1, 8)))
    w.apply(labels)
    assert (labels == 7).sum() == 6 * 8 * 2, "label 7 was overwritten without permission"
    assert (labels == 2).sum() == 4 * 6 * 5
    # shrink: the object's voxels outside the new mask go back to background
    small = _mask(labels.shape, slice(2, 4), slice(2, 5), slice(2, 5))
    w = comp.compose(labels, small, (slice(1, 5), slice(1, 7), slice(1, 8)))
    assert w.count == 4 * 6 * 5 - 2 * 3 * 3
    w.apply(labels)
    assert (labels == 2).sum() == 2 * 3 * 3 and (labels == 7).sum() == 6 * 8 * 2
    # a write with nothing to change is empty
    assert comp.compose(labels, small, (slice(0, 6), slice(0, 8), slice(0, 8))).count == 0


def test_overwrite_allowed_and_given_back_when_the_object_shrinks():
    labels = np.zeros((4, 6, 6), np.uint16)
    labels[1:3, 1:3, 1:3] = 5
    comp = ObjectCompositor(3)
    everything = np.ones(labels.shape, bool)
    comp.compose(labels, everything, allow_overwrite=True).apply(labels)
    assert (labels == 3).all()
    # the object shrinks to nothing: label 5 comes back exactly where it was
    comp.compose(labels, np.zeros(labels.shape, bool)).apply(labels)
    assert (labels == 5).sum() == 8 and set(np.unique(labels)) == {0, 5}


def test_refine_removes_to_background_and_reset_restores_the_base():
    labels = np.zeros((4, 6, 6), np.uint8)
    labels[:, 1:5, 1:5] = 4
    labels[0, 0, 0] = 9
    before = labels.copy()
    comp = ObjectCompositor(4, refine=True)
    assert comp.compose(labels, labels == 4).count == 0  # the initial mask is the label itself
    carved = (labels == 4) & ~_mask(labels.shape, slice(0, 4), slice(1, 3), slice(1, 5))
    comp.compose(labels, carved).apply(labels)
    assert (labels == 4).sum() == carved.sum() and labels[0, 0, 0] == 9
    assert (labels[:, 1:3, 1:5] == 0).all(), "refined voxels removed must become background"
    # a plain (not refined) object reset: every voxel returns to what it was before the object
    labels = before.copy()
    comp = ObjectCompositor(6)
    comp.compose(labels, np.ones(labels.shape, bool), allow_overwrite=True).apply(labels)
    assert (labels == 6).all()
    comp.remove(labels).apply(labels)
    np.testing.assert_array_equal(labels, before)


def test_edits_made_meanwhile_survive_and_base_is_snapshotted_lazily():
    labels = np.zeros((10, 10, 10), np.uint8)
    comp = ObjectCompositor(1)
    first = _mask(labels.shape, slice(0, 3), slice(0, 3), slice(0, 3))
    comp.compose(labels, first, (slice(0, 3),) * 3).apply(labels)
    assert comp.base_box == (slice(0, 3),) * 3  # only the touched region is kept
    labels[8, 8, 8] = 5  # the user paints elsewhere while the object is open
    labels[1, 1, 1] = 0  # and erases one of the object's voxels by hand
    grown = first | _mask(labels.shape, slice(6, 10), slice(6, 10), slice(6, 10))
    comp.compose(labels, grown, (slice(0, 10),) * 3).apply(labels)
    assert labels[8, 8, 8] == 5, "a voxel painted meanwhile was overwritten"
    assert labels[1, 1, 1] == 1  # background inside the mask is the object's again
    assert comp.base_box == (slice(0, 10),) * 3
    comp.remove(labels).apply(labels)
    assert set(np.unique(labels)) == {0, 5}


def test_label_beyond_dtype_and_bad_input_are_refused_clearly():
    labels = np.zeros((2, 3, 4), np.uint8)
    with pytest.raises(InvalidInputError, match="does not fit the label map's dtype uint8"):
        ObjectCompositor(300).compose(labels, np.ones(labels.shape, bool))
    wide = labels.astype(np.uint16)
    w = ObjectCompositor(300).compose(wide, np.ones(wide.shape, bool))
    assert w.count == wide.size and w.values.dtype == np.uint16 and (w.values == 300).all()
    with pytest.raises(InvalidInputError, match="label id > 0"):
        ObjectCompositor(0)
    comp = ObjectCompositor(1)
    with pytest.raises(InvalidInputError, match="not on the label map's grid"):
        comp.compose(labels, np.ones((2, 3, 3), bool))
    with pytest.raises(InvalidInputError, match="integer"):
        comp.compose(labels.astype(float), np.ones(labels.shape, bool))


def test_base_survives_the_map_being_widened_mid_object():
    labels = np.zeros((3, 3, 3), np.uint8)
    labels[0] = 200
    comp = ObjectCompositor(2)
    comp.compose(labels, np.ones(labels.shape, bool), allow_overwrite=True).apply(labels)
    labels = labels.astype(np.uint16)  # e.g. a later object needs id 300
    comp.compose(labels, np.zeros(labels.shape, bool)).apply(labels)
    assert (labels[0] == 200).all() and not labels[1:].any()
