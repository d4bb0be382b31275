"""prompts.plausibility.click_report: the click is echoed and implausible objects warned about."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.errors import InvalidInputError
from napari_medseg.io import Volume
from napari_medseg.phantom import make_phantom
from napari_medseg.prompts.plausibility import click_report, tissue_of_hu


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(seed=0, shape=(24, 80, 80), spacing_zyx=(2.5, 0.8, 0.8), n_lesions=1)


def _voxel_of(mask):
    idx = np.argwhere(mask)
    centre = idx.mean(axis=0)
    return tuple(int(v) for v in idx[np.argmin(((idx - centre) ** 2).sum(axis=1))])


def test_liver_click_is_plausible_and_echoed(phantom):
    liver = phantom.labels == 1
    point = _voxel_of(liver)
    rep = click_report(phantom.ct, point, liver)
    assert rep.plausible and rep.warnings == []
    assert rep.unit == "HU" and rep.value == float(phantom.ct.array[point])
    assert rep.voxels == int(liver.sum())
    assert rep.volume_ml == pytest.approx(liver.sum() * phantom.ct.voxel_volume_ml)
    np.testing.assert_allclose(rep.position_mm, phantom.ct.index_to_physical(point))
    text = rep.text()
    assert "HU" in text and "mm" in text and "warning" not in text
    doc = rep.to_dict()
    assert doc["plausible"] is True and doc["point_zyx"] == list(point)


def test_object_flooding_the_body_warns(phantom):
    body = phantom.ct.array > -500
    fat = phantom.labels == 10
    point = _voxel_of(fat)
    rep = click_report(phantom.ct, point, body)
    assert not rep.plausible
    assert rep.tissue == "fat"
    assert any("of the body" in w for w in rep.warnings)
    # the background grown from an air click touches every border
    air = ~body
    rep_air = click_report(phantom.ct, (0, 1, 1), air)
    assert rep_air.tissue == "air"
    assert any("borders" in w for w in rep_air.warnings)


def test_volume_bound_is_a_parameter(phantom):
    liver = phantom.labels == 1
    point = _voxel_of(liver)
    ml = liver.sum() * phantom.ct.voxel_volume_ml
    assert click_report(phantom.ct, point, liver, max_volume_ml=ml * 2).plausible
    rep = click_report(phantom.ct, point, liver, max_volume_ml=ml / 2)
    assert any("more than any single organ" in w for w in rep.warnings)


def test_empty_and_missed_clicks_warn(phantom):
    liver = phantom.labels == 1
    empty = click_report(phantom.ct, (5, 5, 5), np.zeros_like(liver))
    assert any("nothing was segmented" in w for w in empty.warnings)
    missed = click_report(phantom.ct, (0, 0, 0), liver)
    assert any("does not contain the clicked voxel" in w for w in missed.warnings)


def test_non_ct_has_no_hu_unit():
    rng = np.random.default_rng(0)
    mr = Volume(rng.uniform(0, 800, (10, 20, 20)).astype(np.float32), spacing=(1, 1, 2), modality="MR")
    mask = np.zeros(mr.shape, bool)
    mask[4:6, 8:12, 8:12] = True
    rep = click_report(mr, (5, 10, 10), mask)
    assert rep.unit == "" and rep.tissue == "" and rep.plausible
    assert "HU" not in rep.text()


def test_bad_arguments_are_refused(phantom):
    with pytest.raises(InvalidInputError, match="outside the image"):
        click_report(phantom.ct, (-1, 5, 5), phantom.labels == 1)
    with pytest.raises(InvalidInputError, match="mask shape"):
        click_report(phantom.ct, (1, 5, 5), np.zeros((2, 2, 2), bool))


def test_tissue_words():
    assert tissue_of_hu(-1000) == "air" and tissue_of_hu(-700) == "lung"
    assert tissue_of_hu(-100) == "fat" and tissue_of_hu(50) == "soft tissue"
    assert tissue_of_hu(1000).startswith("bone")
