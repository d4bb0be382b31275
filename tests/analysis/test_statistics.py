"""label_statistics against hand-computed values and direct NumPy on the real CT."""

import csv

import numpy as np
import pytest

from napari_medseg.analysis.statistics import label_statistics, to_csv, to_csv_text
from napari_medseg.io.label_table import LabelTable
from napari_medseg.io.volume import Volume


def _small():
    lab = np.zeros((2, 3, 4), np.uint8)
    lab[0, 0, 0:2] = 1  # voxels (0,0,0),(0,0,1)
    lab[1, 2, 3] = 1  # voxel (1,2,3)
    lab[1, 1, 1:3] = 4
    img = np.arange(24, dtype=np.int16).reshape(2, 3, 4)  # value = 12z + 4y + x
    # spacing x=0.5, y=2, z=3 mm; origin (10, 20, 30); voxel = 3 mm^3 = 0.003 mL
    geo = dict(spacing=(0.5, 2.0, 3.0), origin=(10.0, 20.0, 30.0))
    return Volume(img, **geo), Volume(lab, **geo)


def test_hand_computed_anisotropic():
    image, labels = _small()
    stats = label_statistics(image, labels, LabelTable.from_names({1: "liver"}))
    assert [s["label"] for s in stats] == [1, 4]
    s1, s4 = stats
    assert s1["name"] == "liver" and s4["name"] == "label 4"
    assert s1["voxels"] == 3 and s1["volume_ml"] == pytest.approx(0.009)
    vals = np.array([0, 1, 23], float)
    assert s1["mean"] == pytest.approx(vals.mean()) and s1["std"] == pytest.approx(vals.std())
    assert (s1["min"], s1["max"], s1["median"]) == (0.0, 23.0, 1.0)
    assert s1["bbox"] == [[0, 2], [0, 3], [0, 4]]
    # centroid index (z, y, x) = mean of (0,0,0), (0,0,1), (1,2,3) = (1/3, 2/3, 4/3)
    np.testing.assert_allclose(s1["centroid_zyx"], [1 / 3, 2 / 3, 4 / 3])
    # physical x = 10 + 0.5 * 4/3, y = 20 + 2 * 2/3, z = 30 + 3 * 1/3
    np.testing.assert_allclose(s1["centroid_xyz_mm"], [10 + 2 / 3, 20 + 4 / 3, 31.0])
    assert s4["voxels"] == 2 and s4["median"] == pytest.approx(17.5)
    assert s4["bbox"] == [[1, 2], [1, 2], [1, 3]]


def test_summary_only_keeps_the_summary_columns_and_skips_the_rest():
    image, labels = _small()
    table = LabelTable.from_names({1: "liver"})
    full = label_statistics(image, labels, table)
    short = label_statistics(image, labels, table, summary_only=True)
    assert len(short) == len(full) == 2
    for f, s in zip(full, short):
        for key in ("label", "name", "voxels", "volume_ml", "mean", "std"):
            assert s[key] == f[key]
        for key in ("bbox", "centroid_zyx", "centroid_xyz_mm", "min", "max", "median"):
            assert f[key] is not None and s[key] is None


def test_without_image_and_flipped_direction():
    lab = np.zeros((1, 1, 3), np.uint16)
    lab[0, 0, 2] = 300
    labels = Volume(lab, spacing=(2.0, 1.0, 1.0), origin=(5.0, 0.0, 0.0),
                    direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))
    (s,) = label_statistics(None, labels)
    assert s["label"] == 300 and s["mean"] is None and s["median"] is None
    np.testing.assert_allclose(s["centroid_xyz_mm"], [5.0 - 4.0, 0.0, 0.0])


def test_huge_ids_are_compacted():
    lab = np.zeros((1, 2, 2), np.int64)
    lab[0, 0, 0] = 10**9
    lab[0, 1, 1] = 7
    img = Volume(np.array([[[1.0, 2.0], [3.0, 4.0]]]))
    stats = label_statistics(img, Volume(lab))
    assert [(s["label"], s["voxels"], s["mean"]) for s in stats] == [(7, 1, 4.0), (10**9, 1, 1.0)]


def test_requested_absent_label_reports_zero():
    image, labels = _small()
    stats = label_statistics(image, labels, ids=[4, 9])
    assert stats[1]["voxels"] == 0 and stats[1]["mean"] is None


def test_csv_roundtrip(tmp_path):
    image, labels = _small()
    stats = label_statistics(image, labels)
    path = to_csv(stats, tmp_path / "stats.csv")
    rows = list(csv.DictReader(path.open()))
    assert [r["label"] for r in rows] == ["1", "4"]
    assert float(rows[0]["volume_ml"]) == pytest.approx(0.009)
    assert rows[0]["bbox_x1"] == "4" and float(rows[0]["centroid_z_mm"]) == pytest.approx(31.0)
    assert to_csv_text(stats) == path.read_text()
    assert not [p for p in tmp_path.iterdir() if p.name != "stats.csv"]  # no temp files left


def test_real_ct_matches_direct_numpy(shared_data):
    from napari_medseg.io import read_labels, read_volume

    ct = read_volume(shared_data / "totalseg_example" / "example_ct_sm.nii.gz")
    labels, table = read_labels(shared_data / "totalseg_example" / "example_seg.nii.gz", reference=ct)
    stats = label_statistics(ct, labels, table)
    lab, img = labels.array, ct.array.astype(np.float64)
    ids = [int(i) for i in np.unique(lab) if i]
    assert [s["label"] for s in stats] == ids and len(ids) == 41
    by_id = {s["label"]: s for s in stats}
    assert by_id[5]["name"] == "liver" and by_id[1]["name"] == "spleen"
    for i in ids:
        m = lab == i
        vals = img[m]
        s = by_id[i]
        assert s["voxels"] == m.sum()
        assert s["volume_ml"] == pytest.approx(m.sum() * 27 / 1000)
        assert s["mean"] == pytest.approx(vals.mean(), rel=1e-9, abs=1e-9)
        assert s["std"] == pytest.approx(vals.std(), rel=1e-6, abs=1e-6)
        assert (s["min"], s["max"], s["median"]) == (vals.min(), vals.max(), np.median(vals))
        zyx = np.argwhere(m)
        assert s["bbox"] == [[int(a), int(b) + 1] for a, b in zip(zyx.min(0), zyx.max(0))]
        np.testing.assert_allclose(s["centroid_xyz_mm"], ct.index_to_physical(zyx.mean(0)), atol=1e-6)
    # liver is in HU soft-tissue range: a sanity check that the image is really CT
    assert 0 < by_id[5]["median"] < 200


def test_cli_stats_json_and_csv_match_the_function(shared_data, tmp_path, capsys):
    import json

    from napari_medseg.cli import main
    from napari_medseg.io import read_labels, read_volume

    ct_path = shared_data / "totalseg_example" / "example_ct_sm.nii.gz"
    seg_path = shared_data / "totalseg_example" / "example_seg.nii.gz"
    assert main(["stats", str(ct_path), str(seg_path), "--json", "--csv", str(tmp_path / "s.csv")]) == 0
    printed = json.loads(capsys.readouterr().out)
    ct = read_volume(ct_path)
    labels, table = read_labels(seg_path, reference=ct)
    direct = label_statistics(ct, labels, table)
    assert len(printed) == len(direct) == 41
    for a, b in zip(printed, direct):
        assert {k: a[k] for k in ("label", "name", "voxels")} == {k: b[k] for k in ("label", "name", "voxels")}
        assert a["volume_ml"] == pytest.approx(b["volume_ml"]) and a["mean"] == pytest.approx(b["mean"])
        assert a["std"] == pytest.approx(b["std"])
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert [int(r["label"]) for r in rows] == [s["label"] for s in direct]


def test_cli_stats_mismatched_grid_is_a_clean_error(shared_data, tmp_path, capsys):
    from napari_medseg.cli import main

    ct_path = shared_data / "dcmqi_ct3slice"  # 3 slices of 512 x 512 at 0.81 mm: another grid
    seg_path = shared_data / "totalseg_example" / "example_seg.nii.gz"
    assert main(["stats", str(ct_path), str(seg_path)]) == 2
    err = capsys.readouterr().err
    assert "medseg stats: error:" in err and "grid" in err


def test_phantom_lesions_split_and_measured_in_scanner_coordinates():
    """Split the phantom's lesion label into lesions; volumes and centroids match the analytic ellipsoids."""
    from napari_medseg.editing import split_components
    from napari_medseg.phantom import make_phantom

    ph = make_phantom(seed=0, shape=(40, 96, 96), spacing_zyx=(2.5, 1.6, 1.6), n_lesions=2)
    lesion_id = ph.label_ids["liver_lesion"]
    split, new_ids = split_components(ph.labels, ph.ct.spacing_zyx, lesion_id)
    assert len(new_ids) == len(ph.lesions) - 1
    stats = label_statistics(ph.ct, ph.ct.with_array(split, metadata={}), ids=[lesion_id] + new_ids)
    for spec in ph.lesions:
        # the measured lesion whose centroid is nearest to the analytic centre
        s = min(stats, key=lambda r: np.linalg.norm(np.subtract(r["centroid_xyz_mm"], spec.center_xyz_mm)))
        assert np.linalg.norm(np.subtract(s["centroid_xyz_mm"], spec.center_xyz_mm)) < 2.0
        a, b, c = spec.semi_axes_xyz_mm
        assert s["volume_ml"] == pytest.approx(4 / 3 * np.pi * a * b * c / 1000, rel=0.15)
        assert abs(s["median"] - spec.hu) < 15
