"""Connected components: labels, largest, small ones (SimpleITK and SciPy paths), at seeds."""

import numpy as np
import pytest
from scipy import ndimage

from napari_medseg._ndimage import (
    components_at,
    label_components,
    largest_component,
    min_voxels,
    small_components,
    structure,
)
from napari_medseg.errors import InvalidInputError


@pytest.fixture
def islands():
    m = np.zeros((8, 12, 12), bool)
    m[1:4, 1:4, 1:4] = True  # 27 voxels
    m[6, 8:10, 8:10] = True  # 4 voxels
    m[4, 4, 4] = True  # touches the cube by a corner only
    return m


def test_label_components_sizes(islands):
    comp, n, sizes = label_components(islands, 1)
    assert n == 3 and sizes[0] == 0 and sorted(sizes[1:].tolist()) == [1, 4, 27]
    _, n26, _ = label_components(islands, 3)
    assert n26 == 2


def test_largest_component(islands):
    assert largest_component(islands).sum() == 27
    assert largest_component(islands, connectivity=3).sum() == 28
    empty = np.zeros((3, 3, 3), bool)
    assert not largest_component(empty).any()
    # ties: the component found first in array order
    tie = np.zeros((1, 1, 5), bool)
    tie[0, 0, [0, 4]] = True
    assert largest_component(tie)[0, 0].tolist() == [True, False, False, False, False]


@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_small_components_every_path_agrees_with_scipy(islands, connectivity):
    small = small_components(islands, 5, connectivity)
    lab, n = ndimage.label(islands, structure=ndimage.generate_binary_structure(3, connectivity))
    sizes = np.bincount(lab.ravel())
    ref = (sizes < 5)[lab] & islands
    np.testing.assert_array_equal(small, ref)
    assert small_components(islands, 1, connectivity) is None
    assert small_components(islands, 2, 3) is None  # the corner voxel joins the cube


def test_min_voxels_is_float_exact():
    assert min_voxels(0.0, 0.5) == 0
    assert min_voxels(1.0, 0.5) == 2
    vox = 0.1 * 0.1 * 0.3  # 0.003000...: 1/vox is not an integer in floating point
    n = min_voxels(0.03, vox)
    assert n * vox >= 0.03 and (n - 1) * vox < 0.03


def test_components_at_seeds(islands):
    out = components_at(islands, [(2, 2, 2), (0, 0, 0), (99, 0, 0)])
    assert out.sum() == 27
    assert components_at(islands, [(6, 9, 9), (4, 4, 4)]).sum() == 5
    assert components_at(islands, [(4, 4, 4)], connectivity=3).sum() == 28
    assert not components_at(islands, []).any()


def test_bad_connectivity_is_refused():
    with pytest.raises(InvalidInputError, match="connectivity must be 1..3"):
        structure(3, 4)
