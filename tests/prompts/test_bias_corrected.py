"""Region growing on N4 bias-corrected MR intensities (what ``make_session(bias_correct=True)``
builds; the factory's and the command line's wiring are tested in tests/cli/test_prompt.py)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.errors import InvalidInputError
from napari_medseg.inference.bias_field import correct_bias_field
from napari_medseg.phantom import mr_contrast
from napari_medseg.prompts.bias_corrected import BiasCorrectedRegionGrowing
from napari_medseg.prompts.region_growing import RegionGrowingSession
from napari_medseg.testing.clicker import deepest_point


def test_grows_on_the_corrected_intensities(mr_phantom, n4_fits):
    """The session equals plain region growing on correct_bias_field's output, and its mask
    and volume stay on the image as given."""
    vol = mr_contrast(mr_phantom, "T1")
    liver = mr_phantom.labels == next(i for i, n in mr_phantom.names.items() if n == "liver")
    click = deepest_point(liver, vol.spacing_zyx)
    session = BiasCorrectedRegionGrowing()
    assert isinstance(session, RegionGrowingSession)
    session.set_volume(vol)
    assert session.volume is vol
    ours = session.add_point(click).mask
    plain = RegionGrowingSession()
    plain.set_volume(correct_bias_field(vol))
    expected = plain.add_point(click).mask
    assert ours.shape == vol.shape and ours.any()
    assert np.array_equal(ours, expected)
    uncorrected = RegionGrowingSession()
    uncorrected.set_volume(vol)
    assert not np.array_equal(ours, uncorrected.add_point(click).mask)  # the option matters


def test_a_new_session_on_the_same_volume_reuses_the_correction(mr_phantom, n4_fits):
    vol = mr_contrast(mr_phantom, "T2")
    progress = []
    first = BiasCorrectedRegionGrowing()
    first.set_volume(vol, progress=lambda f, text="": progress.append((f, text)))
    assert len(n4_fits) == 1
    assert any("bias field" in text for _, text in progress)
    second = BiasCorrectedRegionGrowing()
    second.set_volume(vol)  # a second object, a re-opened dock: no second N4 run
    first.set_volume(vol)
    assert len(n4_fits) == 1


# --- bad input and faults

def test_ct_is_refused(mr_phantom, n4_fits):
    session = BiasCorrectedRegionGrowing()
    with pytest.raises(InvalidInputError, match="this image is CT"):
        session.set_volume(mr_phantom.ct)
    assert not n4_fits


def test_every_first_click_gives_an_object(mr_phantom):
    # A click whose voxel the boundary opening removes (the T1 phantom's right lung
    # after N4) must still give the object nearest the click, never an empty mask.
    from napari_medseg.testing.clicker import structures

    vol = mr_contrast(mr_phantom, "T1")
    objects = structures(mr_phantom.labels, mr_phantom.names)
    for session in (RegionGrowingSession(), BiasCorrectedRegionGrowing()):
        session.set_volume(vol)
        empty = []
        for name, mask in objects.items():
            session.reset()
            update = session.add_point(deepest_point(mask, vol.spacing_zyx), positive=True)
            if not update.mask.any():
                empty.append(name)
        assert not empty, f"{session.name}: empty object for {empty}"
