"""check_volume_for_model: what a model refuses, and non-finite voxel counts."""

import numpy as np
import pytest

from napari_medseg.errors import InvalidInputError
from napari_medseg.io import Volume, check_volume_for_model


@pytest.mark.parametrize("arr,kwargs,match", [
    (np.zeros((1, 8, 8)), {}, r"is a 2D image \(one slice\); model works on 3D volumes of at least 2 slices"),
    (np.zeros((3, 8, 8)), {"min_slices": 4, "what": "SAM-Med3D"}, r"only 3 slices; SAM-Med3D works on 3D volumes of at least 4"),
    (np.zeros((3, 1, 8)), {}, r"only 1 x 8 voxels in-plane"),
    (np.zeros((3, 8, 8), bool), {}, r"voxel type bool; model needs numbers"),
])
def test_check_volume_for_model_refuses(arr, kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        check_volume_for_model(Volume(arr), **kwargs)


def test_check_volume_counts_nonfinite():
    arr = np.zeros((4, 5, 6), np.float32)
    arr[0, 0, 0] = np.nan
    arr[3, 4, 5] = np.inf
    arr[2, 2, 2] = -np.inf
    vol = Volume(arr, metadata={"source_path": "/data/ct.nii.gz"})
    with pytest.raises(InvalidInputError, match=r"the image /data/ct.nii.gz has 3 NaN/Inf voxel\(s\) \(2.5% of 120\)"):
        check_volume_for_model(vol)
    check_volume_for_model(vol, allow_nonfinite=True)
    check_volume_for_model(Volume(np.zeros((2, 2, 2), np.int16)))
