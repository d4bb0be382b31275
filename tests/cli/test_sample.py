"""``medseg sample``: the phantom's files and names, bad arguments, nothing written on refusal."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.phantom import make_phantom


# ------------------------------------------------------------ medseg sample CLI
def test_medseg_sample_writes_ct_labels_and_names(tmp_path, capsys):
    from napari_medseg.cli import main
    from napari_medseg.io import read_labels, read_volume

    out = tmp_path / "sample"
    rc = main(["sample", str(out), "--seed", "4", "--shape", "40,96,96", "--spacing", "3,1.2,1.2"])
    assert rc == 0
    printed = capsys.readouterr().out
    for name in ("ct.nii.gz", "labels.nii.gz", "labels.json", "lesions.json"):
        assert (out / name).is_file()
        assert name in printed
    expected = make_phantom(seed=4, shape=(40, 96, 96), spacing_zyx=(3, 1.2, 1.2))
    ct = read_volume(out / "ct.nii.gz")
    assert np.array_equal(ct.array, expected.ct.array)
    np.testing.assert_allclose(ct.spacing, (1.2, 1.2, 3.0))
    np.testing.assert_allclose(ct.origin, expected.ct.origin, atol=1e-4)
    labels, table = read_labels(out / "labels.nii.gz", reference=ct)
    assert np.array_equal(labels.array, expected.labels)
    assert table.names == expected.names
    import json

    lesions = json.loads((out / "lesions.json").read_text())["lesions"]
    np.testing.assert_allclose([l["semi_axes_xyz_mm"] for l in lesions],
                               [l.semi_axes_xyz_mm for l in expected.lesions])


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--shape", "10,20"], "--shape"),
        (["--shape", "10,20.5,30"], "whole numbers"),
        (["--spacing", "1,0,1"], "positive"),
        (["--lesions", "12"], "between 0 and 8"),
    ],
)
def test_medseg_sample_bad_arguments(tmp_path, capsys, argv, message):
    from napari_medseg.cli import main

    out = tmp_path / "sample"
    assert main(["sample", str(out)] + argv) == 2
    assert message in capsys.readouterr().err
    assert not (out / "ct.nii.gz").exists()


def test_medseg_sample_refuses_a_file_as_outdir(tmp_path, capsys):
    from napari_medseg.cli import main

    target = tmp_path / "afile"
    target.write_text("keep me")
    assert main(["sample", str(target), "--shape", "40,96,96"]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert target.read_text() == "keep me"


# --- bad input and faults


CLI_CASES = [
    # (id, extra argv, message fragment)
    ("shape with two numbers", ["--shape", "10,20"], "--shape must be 3"),
    ("fractional shape", ["--shape", "10,20.5,30"], "whole numbers"),
    ("text spacing", ["--spacing", "a,b,c"], "--spacing must be 3"),
    ("zero spacing", ["--spacing", "2.5,0,0.8"], "positive"),
    ("too many lesions", ["--lesions", "12"], "between 0 and 8"),
    ("negative seed", ["--seed", "-3"], "seed must be a whole number"),
]


@pytest.mark.parametrize("argv,message", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_medseg_sample_bad_input_leaves_old_files(tmp_path, capsys, argv, message):
    from napari_medseg.cli import main

    out = tmp_path / "sample"
    out.mkdir()
    (out / "ct.nii.gz").write_bytes(b"previous run")
    assert main(["sample", str(out)] + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("medseg sample: error:") and message in err
    assert (out / "ct.nii.gz").read_bytes() == b"previous run"
    assert sorted(p.name for p in out.iterdir()) == ["ct.nii.gz"]


def test_medseg_sample_memory_refusal_writes_nothing(tmp_path, capsys, monkeypatch):
    from napari_medseg.cli import main

    monkeypatch.setenv("MEDSEG_AVAILABLE_MEMORY", str(2**20))
    out = tmp_path / "sample"
    assert main(["sample", str(out)]) == 2
    assert "needs about" in capsys.readouterr().err
    assert not out.exists()


def test_medseg_sample_output_folder_that_cannot_be_made(tmp_path, capsys):
    from napari_medseg.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["sample", str(blocker / "sub"), "--shape", "40,96,96"]) == 2
    assert "cannot create the output folder" in capsys.readouterr().err
    assert blocker.read_text() == "not a folder"


def test_medseg_sample_mr_writes_t1_t2_of_the_same_anatomy(tmp_path):
    import json as _json
    import subprocess
    import sys

    import numpy as np

    from napari_medseg.io import read_labels, read_volume
    from napari_medseg.io.windows import image_modality

    out = tmp_path / "mr"
    res = subprocess.run([sys.executable, "-m", "napari_medseg.cli", "sample", str(out),
                          "--modality", "MR", "--shape", "40,96,96", "--spacing", "5,2,2", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    info = _json.loads(res.stdout)
    assert info["modality"] == "MR" and "ct" not in info and not (out / "ct.nii.gz").exists()
    t1, t2 = read_volume(info["t1"]), read_volume(info["t2"])
    labels, table = read_labels(info["labels"])
    assert t1.modality == t2.modality == "MR" and image_modality(t1) == "MR"  # sidecar says so
    assert t1.same_grid(labels) and t2.same_grid(labels)
    ids = {n: i for i, n in table.names.items()}

    def mean(img, name):
        return float(img.array[labels.array == ids[name]].mean())

    # T1: liver brighter than spleen, fluid dark; T2: the reverse; fat bright on both
    assert mean(t1, "liver") > mean(t1, "spleen") and mean(t2, "liver") < mean(t2, "spleen")
    assert mean(t1, "spinal_canal") < mean(t1, "muscle") < mean(t2, "spinal_canal") / 3
    assert mean(t2, "liver_lesion") > 2 * mean(t2, "liver")
    assert mean(t1, "subcutaneous_fat") > 800 and mean(t2, "subcutaneous_fat") > 600
    # Rician noise: the air outside the body is positive, never zero on average
    air = t1.array[labels.array == 0]
    assert air.min() >= 0 and 10 < air.mean() < 60
    # the bias field shades the fat smoothly by several percent across the body
    fat = np.where(labels.array == ids["subcutaneous_fat"], t1.array.astype(float), np.nan)
    halves = [np.nanmean(fat[:, :, :48]), np.nanmean(fat[:, :, 48:])]
    assert abs(halves[0] - halves[1]) / np.mean(halves) > 0.01
    # the CT phantom command is unchanged by default
    res = subprocess.run([sys.executable, "-m", "napari_medseg.cli", "sample", str(tmp_path / "ct"),
                          "--shape", "20,48,48", "--spacing", "5,4,4", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert _json.loads(res.stdout)["modality"] == "CT" and (tmp_path / "ct" / "ct.nii.gz").exists()
