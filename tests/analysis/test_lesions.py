"""Lesion geometry the liver widget uses to show a lesion."""

import csv
import dataclasses
import json

import numpy as np
import pytest

from napari_medseg.analysis.lesions import Lesion
from napari_medseg.analysis.lesions import measure_lesions
from napari_medseg.errors import GeometryMismatchError, InvalidInputError
from napari_medseg.io.volume import Volume


def test_view_point_is_the_centroid_on_the_long_axis_slice():
    values = {f.name: 0 for f in dataclasses.fields(Lesion)}
    values.update(axial_slice=7, centroid_vox=[5.4, 10.25, 20.5], slice_range=(3, 9))
    lesion = Lesion(**values)
    assert lesion.view_point_vox == (7.0, 10.25, 20.5)


def ellipsoid(shape, spacing_zyx, centre_zyx_mm, semi_zyx_mm):
    """Voxels whose centre lies in the ellipsoid (the phantom's rule)."""
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing_zyx)], indexing="ij")
    r = sum(((g - c) / a) ** 2 for g, c, a in zip(grids, centre_zyx_mm, semi_zyx_mm))
    return r <= 1.0


@pytest.fixture(scope="module")
def phantom():
    from napari_medseg.phantom import make_phantom

    return make_phantom(seed=0)


CASES = [
    # spacing zyx, centre offset (mm), semi-axes zyx (mm)
    ((2.5, 0.7, 0.7), (0.3, -0.2, 0.1), (9.0, 15.0, 8.0)),
    ((1.0, 0.5, 1.2), (0.0, 0.4, -0.6), (6.0, 7.0, 14.0)),
    ((3.0, 1.1, 0.6), (-0.7, 0.0, 0.25), (12.0, 5.0, 10.0)),
    ((0.8, 0.8, 0.8), (0.1, 0.1, 0.1), (20.0, 6.0, 9.0)),
]


def test_phantom_lesions_exact(phantom):
    report = measure_lesions(phantom.ct, phantom.labels_volume)
    assert len(report.lesions) == len(phantom.lesions) == 3
    sz, sy, sx = phantom.ct.spacing_zyx
    # both are sorted largest first; match by centroid to be order-independent
    for spec in phantom.lesions:
        lesion = min(report.lesions, key=lambda l: np.linalg.norm(np.subtract(l.centroid_xyz, spec.center_xyz_mm)))
        assert np.linalg.norm(np.subtract(lesion.centroid_xyz, spec.center_xyz_mm)) < 0.5
        assert abs(lesion.volume_ml / spec.volume_ml - 1) < 0.03
        ax, ay, az = spec.semi_axes_xyz_mm
        long_spacing = sx if ax >= ay else sy
        short_spacing = sy if ax >= ay else sx
        assert abs(lesion.long_axis_mm - spec.longest_axial_diameter_mm) <= long_spacing
        assert abs(lesion.short_axis_mm - spec.short_axial_diameter_mm) <= short_spacing
        # one voxel along the measured direction (near-equal semi-axes make it oblique)
        p, q = (np.asarray(v) for v in lesion.diameter_3d_vox)
        u = (q - p) * (sz, sy, sx)
        voxel_along = np.linalg.norm(np.asarray((sz, sy, sx)) * u / np.linalg.norm(u))
        assert abs(lesion.diameter_3d_mm - 2 * max(spec.semi_axes_xyz_mm)) <= voxel_along
        assert lesion.mean_hu == pytest.approx(spec.hu, abs=10)
        lo, hi = lesion.slice_range
        assert lo <= spec.center_zyx_vox[0] <= hi
    liver_ml = np.isin(phantom.labels, (1, 2)).sum() * phantom.ct.voxel_volume_ml
    assert report.liver_volume_ml == pytest.approx(liver_ml)
    assert report.tumour_burden_percent == pytest.approx(100 * report.lesion_volume_ml / liver_ml)


@pytest.mark.parametrize("spacing, offset, semi", CASES)
def test_hand_built_ellipsoid(spacing, offset, semi):
    shape = tuple(int(2 * a / s) + 10 for a, s in zip(semi, spacing))
    centre = tuple(n * s / 2 + o for n, s, o in zip(shape, spacing, offset))
    mask = ellipsoid(shape, spacing, centre, semi)
    labels = np.zeros(shape, np.uint8)
    labels[mask] = 2
    vol = Volume(labels, spacing=tuple(reversed(spacing)), origin=(10.0, -20.0, 30.0))
    image = vol.with_array(np.where(mask, 40, 100).astype(np.int16))
    (lesion,) = measure_lesions(image, vol).lesions
    sz, sy, sx = spacing
    az, ay, ax = semi
    # the analytic cross-section on the measured slice (the centre need not lie on a slice)
    zc = lesion.axial_slice * sz
    f = np.sqrt(max(0.0, 1 - ((zc - centre[0]) / az) ** 2))
    long_ref, short_ref = 2 * max(ax, ay) * f, 2 * min(ax, ay) * f
    assert abs(lesion.long_axis_mm - long_ref) <= (sx if ax >= ay else sy)
    assert abs(lesion.short_axis_mm - short_ref) <= (sy if ax >= ay else sx)
    assert abs(lesion.volume_ml / (4 / 3 * np.pi * ax * ay * az / 1000) - 1) < 0.03
    assert lesion.mean_hu == 40 and lesion.std_hu == 0
    # endpoints: consistent voxel and physical coordinates, length matches the long axis
    p, q = (np.asarray(v) for v in lesion.long_axis_xyz)
    assert np.linalg.norm(p - q) == pytest.approx(lesion.long_axis_mm, rel=1e-6)
    for vox, xyz in zip(lesion.long_axis_vox + lesion.short_axis_vox, lesion.long_axis_xyz + lesion.short_axis_xyz):
        assert np.allclose(vol.index_to_physical(vox), xyz)
        assert vox[0] == lesion.axial_slice
    a, b = (np.asarray(v) for v in lesion.short_axis_xyz)
    assert abs(np.dot((q - p) / np.linalg.norm(q - p), (b - a) / np.linalg.norm(b - a))) < 1e-6
    assert np.allclose(lesion.centroid_xyz, vol.index_to_physical(np.argwhere(mask).mean(0)))


def test_connectivity_26_and_ordering():
    labels = np.zeros((10, 20, 20), np.uint8)
    labels[2:4, 2:4, 2:4] = 2  # 8 voxels
    labels[4, 4, 4] = 2  # touches the first only at a corner -> same lesion (26-connectivity)
    labels[6:9, 10:15, 10:15] = 2  # 75 voxels, separate
    labels[labels == 0] = 1
    rep = measure_lesions(None, Volume(labels, spacing=(1.0, 1.0, 2.0)))
    assert [l.n_voxels for l in rep.lesions] == [75, 9]
    assert [l.id for l in rep.lesions] == [1, 2]
    assert rep.lesions[0].mean_hu is None
    assert rep.lesions[1].slice_range == (2, 4)


def test_oblique_direction_uses_array_slices():
    mask = ellipsoid((12, 40, 40), (2.0, 1.0, 1.0), (12.0, 20.0, 20.0), (6.0, 12.0, 8.0))
    labels = np.where(mask, 2, 1).astype(np.uint8)
    c, s = np.cos(0.4), np.sin(0.4)
    direction = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)
    straight = measure_lesions(None, Volume(labels, spacing=(1.0, 1.0, 2.0))).lesions[0]
    rotated = measure_lesions(None, Volume(labels, spacing=(1.0, 1.0, 2.0), direction=direction)).lesions[0]
    assert rotated.long_axis_mm == pytest.approx(straight.long_axis_mm)
    assert rotated.axial_slice == straight.axial_slice
    assert not np.allclose(rotated.centroid_xyz, straight.centroid_xyz)


def test_empty_and_exports(tmp_path):
    labels = np.ones((5, 10, 10), np.uint8)
    rep = measure_lesions(None, Volume(labels))
    assert rep.lesions == [] and rep.tumour_burden_percent == 0.0
    labels[1:3, 2:5, 2:5] = 2
    rep = measure_lesions(None, Volume(labels))
    rep.to_csv(tmp_path / "l.csv")
    rep.to_json(tmp_path / "l.json")
    rows = list(csv.DictReader(open(tmp_path / "l.csv")))
    assert len(rows) == 1 and float(rows[0]["volume_ml"]) == pytest.approx(0.018)
    data = json.loads((tmp_path / "l.json").read_text())
    assert data["n_lesions"] == 1 and data["connectivity"] == 26
    assert len(data["lesions"][0]["long_axis_xyz"]) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --- bad input and faults


def _labels(shape=(6, 12, 12)):
    arr = np.ones(shape, np.uint8)
    arr[2:4, 3:6, 3:6] = 2
    return arr


def _ct(shape=(6, 12, 12)):
    return np.full(shape, 100, np.int16)


MEASURE_CASES = [
    ("float labels", lambda: (None, Volume(_labels().astype(np.float32))), {}, InvalidInputError, "must hold integers"),
    ("same ids", lambda: (None, Volume(_labels())), {"liver_id": 2, "lesion_id": 2}, InvalidInputError, "must differ"),
    ("grid mismatch", lambda: (Volume(_ct((6, 12, 13))), Volume(_labels())), {}, GeometryMismatchError, "voxel grid"),
    ("spacing mismatch", lambda: (Volume(_ct(), spacing=(1, 1, 3)), Volume(_labels())), {}, GeometryMismatchError,
     "spacing"),
]


@pytest.mark.parametrize("name, make, kwargs, error, message", MEASURE_CASES, ids=[c[0] for c in MEASURE_CASES])
def test_measure_bad_input(name, make, kwargs, error, message):
    from napari_medseg.analysis.lesions import measure_lesions

    image, labels = make()
    before = labels.array.copy()
    with pytest.raises(error, match=message):
        measure_lesions(image, labels, **kwargs)
    assert np.array_equal(before, labels.array)
