"""Bad input to the phantom generator and to ``medseg sample``: clear errors, nothing written."""

from __future__ import annotations

import pytest

from napari_medseg.errors import InsufficientMemoryError, InvalidInputError
from napari_medseg.phantom import make_phantom

PHANTOM_CASES = [
    # (id, kwargs, error, message fragment)
    ("negative seed", {"seed": -1}, InvalidInputError, "seed must be a whole number >= 0"),
    ("fractional seed", {"seed": 1.5}, InvalidInputError, "seed must be a whole number"),
    ("2D shape", {"shape": (256, 256)}, InvalidInputError, "3 sizes (z, y, x)"),
    ("tiny shape", {"shape": (4, 64, 64)}, InvalidInputError, "at least 8 voxels"),
    ("zero spacing", {"spacing_zyx": (2.5, 0.0, 0.8)}, InvalidInputError, "positive"),
    ("negative spacing", {"spacing_zyx": (-2.5, 0.8, 0.8)}, InvalidInputError, "positive"),
    ("nan spacing", {"spacing_zyx": (2.5, float("nan"), 0.8)}, InvalidInputError, "positive"),
    ("too many lesions", {"n_lesions": 9}, InvalidInputError, "between 0 and 8"),
    ("negative noise", {"noise_hu": -5.0}, InvalidInputError, "must not be negative"),
    ("grid too small for the lesions", {"shape": (16, 48, 48)}, InvalidInputError,
     "could not fit liver lesion"),
]


@pytest.mark.parametrize("kwargs,error,message", [c[1:] for c in PHANTOM_CASES],
                         ids=[c[0] for c in PHANTOM_CASES])
def test_make_phantom_bad_input(kwargs, error, message):
    with pytest.raises(error) as info:
        make_phantom(**kwargs)
    assert message in str(info.value)


def test_make_phantom_refuses_what_does_not_fit_in_memory(monkeypatch):
    monkeypatch.setenv("MEDSEG_AVAILABLE_MEMORY", str(10 * 2**20))  # 10 MiB
    with pytest.raises(InsufficientMemoryError, match=r"256 x 256 x 100 phantom needs about"):
        make_phantom()


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
