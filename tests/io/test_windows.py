"""CT window presets and the default window."""

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
