"""Window presets (CT: HU level/width; MR: percentile windows) and the default window."""

import numpy as np
import pytest

from napari_medseg.errors import InvalidInputError
from napari_medseg.io.windows import (PRESETS, default_contrast_limits, looks_like_hu, preset_contrast_limits,
                                      window_to_contrast_limits)


def test_windows():
    assert window_to_contrast_limits(40, 400) == (-160.0, 240.0)
    assert preset_contrast_limits("lung") == (-1350.0, 150.0)
    assert preset_contrast_limits("Bone") == (-500.0, 1300.0)
    assert set(PRESETS) >= {"soft tissue", "lung", "bone", "liver", "brain", "full range"}
    assert preset_contrast_limits("full range", np.array([[-3.0, 7.0]])) == (-3.0, 7.0)
    with pytest.raises(InvalidInputError, match="unknown window preset 'abdomen'"):
        preset_contrast_limits("abdomen")
    with pytest.raises(InvalidInputError, match="positive width"):
        window_to_contrast_limits(0, 0)


def test_default_window_ct_vs_other():
    rng = np.random.default_rng(0)
    ct = np.concatenate([np.full(1000, -1000), rng.normal(40, 30, 5000), np.full(200, 900)]).astype(np.int16)
    assert looks_like_hu(ct)
    assert default_contrast_limits(ct.reshape(1, 1, -1)) == (-160.0, 240.0)
    mr = rng.gamma(2.0, 200.0, 10000).astype(np.float32)
    assert not looks_like_hu(mr)
    lo, hi = default_contrast_limits(mr)
    assert lo >= 0 and hi < mr.max()
    assert default_contrast_limits(mr, modality="CT") == (-160.0, 240.0)


# ------------------------------------------------------------------------------ MR
def _mr(seed=0):
    rng = np.random.default_rng(seed)
    return rng.gamma(2.0, 200.0, (8, 30, 40)).astype(np.float32)


def test_mr_presets_are_percentiles_of_the_image_and_hu_presets_are_refused_for_mr():
    from napari_medseg.io.windows import MR_PRESETS, presets_for

    mr = _mr()
    lo, hi = preset_contrast_limits("robust (1-99 %)", mr, modality="MR")
    assert np.isclose(lo, np.percentile(mr, 1), rtol=0.05) and np.isclose(hi, np.percentile(mr, 99), rtol=0.05)
    # the same window on an image twice as bright is twice as high (no fixed scale on MR)
    lo2, hi2 = preset_contrast_limits("robust (1-99 %)", 2 * mr, modality="MR")
    assert np.isclose(hi2, 2 * hi) and np.isclose(lo2, 2 * lo)
    assert preset_contrast_limits("full range", mr, modality="MR") == (float(mr.min()), float(mr.max()))
    with pytest.raises(InvalidInputError, match="Hounsfield units and this image is MR"):
        preset_contrast_limits("lung", mr, modality="MR")
    with pytest.raises(InvalidInputError, match="needs the image data"):
        preset_contrast_limits("robust (1-99 %)")
    assert presets_for("MR") == list(MR_PRESETS) and "lung" not in presets_for("MR")
    assert presets_for("CT") == list(PRESETS)
    assert "lung" in presets_for(None) and "robust (1-99 %)" in presets_for(None)


def test_image_modality_override_then_file_then_values():
    from napari_medseg.io.volume import Volume
    from napari_medseg.io.windows import image_modality, infer_modality_from_values, intensity_unit

    rng = np.random.default_rng(1)
    ct = np.concatenate([np.full(1000, -1000), rng.normal(40, 30, 5000), np.full(200, 900)]).astype(np.int16)
    assert infer_modality_from_values(ct.reshape(1, 1, -1)) == "CT"
    assert infer_modality_from_values(_mr()) == "MR"
    assert infer_modality_from_values(np.rint(_mr()).astype(np.uint16)) == "MR"  # integer MR
    labels = np.zeros((4, 8, 8), np.uint8)
    labels[1:3, 2:5, 2:5] = 3
    assert infer_modality_from_values(labels) is None  # a label map is neither
    assert infer_modality_from_values(rng.normal(0, 1, (4, 8, 8))) is None  # signed, not HU
    untagged = Volume(_mr())
    assert image_modality(untagged) == "MR"
    assert image_modality(Volume(_mr(), modality="CT")) == "CT"  # the file's statement wins
    assert image_modality(Volume(_mr(), modality="MRI")) == "MR"
    override = Volume(_mr(), modality="CT", metadata={"medseg_modality": "MR"})
    assert image_modality(override) == "MR"  # the user's override wins over the file
    assert image_modality(Volume(_mr(), metadata={"medseg_modality": "auto"})) == "MR"
    assert intensity_unit("CT") == "HU" and intensity_unit("MR") == "intensity"
    assert intensity_unit(None) == "intensity"
