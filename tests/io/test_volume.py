"""Volume geometry used by the interactive widget: clicks to voxels, flat boxes to depth."""

import numpy as np
import pytest

from napari_medseg.errors import InvalidInputError
from napari_medseg.io.volume import Volume


def _vol():
    return Volume(np.zeros((10, 20, 30), np.int16), spacing=(0.5, 0.8, 2.5))  # x, y, z mm


def test_voxel_of_rounds_and_refuses_outside():
    v = _vol()
    assert v.voxel_of((2.4, 3.6, 29.4)) == (2, 4, 29)
    assert v.voxel_of((-0.4, 0.0, 0.0)) == (0, 0, 0)
    with pytest.raises(InvalidInputError, match="outside the volume"):
        v.voxel_of((10.6, 0, 0))


def test_flat_box_gets_the_depth_in_millimetres():
    v = _vol()
    # drawn on one axial slice: 10 mm across along z (2.5 mm slices) = 2 slices each side
    lo, hi = v.box_from_corners((4, 2, 3), (4, 12, 20), 10.0)
    assert lo == (2, 2, 3) and hi == (6, 12, 20)
    # at the edge of the volume the depth is clipped; corners in any order
    lo, hi = v.box_from_corners((9, 12, 20), (9, 2, 3), 10.0)
    assert lo == (7, 2, 3) and hi == (9, 12, 20)
    # a thin depth still gives one slice each side
    assert v.box_from_corners((4, 2, 3), (4, 12, 20), 0.1)[0][0] == 3
