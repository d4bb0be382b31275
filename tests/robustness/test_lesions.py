"""Bad input and faults for the liver cascade, lesion measurement, training data and checkpoints.

Each case asserts the error type, a message that says what was wrong, and that nothing was
modified (input arrays unchanged, no output files).
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from napari_medseg.errors import (
    CheckpointMismatchError,
    GeometryMismatchError,
    ImageReadError,
    InsufficientMemoryError,
    InvalidInputError,
    UnsafeCheckpointError,
)
from napari_medseg.io.volume import Volume


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


def _nan_ct():
    arr = np.zeros((6, 32, 32), np.float32)
    arr[2, 3, 4] = np.nan
    return Volume(arr)


CASCADE_CASES = [
    ("NaN voxels", _nan_ct, {}, InvalidInputError, "NaN/Inf"),
    ("tiny slices", lambda: Volume(np.zeros((6, 4, 4), np.int16)), {}, InvalidInputError, "in-plane"),
    ("bool image", lambda: Volume(np.zeros((6, 32, 32), bool)), {}, InvalidInputError, "voxel type"),
]


@pytest.mark.parametrize("name, make, kwargs, error, message", CASCADE_CASES, ids=[c[0] for c in CASCADE_CASES])
def test_cascade_refuses_bad_volumes(name, make, kwargs, error, message, tmp_path):
    from napari_medseg.inference.liver_cascade import segment_liver

    volume = make()
    before = volume.array.copy()
    with pytest.raises(error, match=message):
        segment_liver(volume, "hybrid-liver", weights=tmp_path / "never-read.pt", device="cpu")
    assert np.array_equal(before, volume.array, equal_nan=before.dtype.kind == "f")


def test_cascade_refuses_when_memory_is_short():
    from napari_medseg.inference.liver_cascade import check_volume_for_model

    with pytest.raises(InsufficientMemoryError, match="GiB"):
        check_volume_for_model(Volume(np.zeros((4, 64, 64), np.int16)), available_bytes=1000)


# ----------------------------------------------------------------------------- checkpoints
class Payload:
    """Pickles to a call of os.system: must never run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _write(path, obj):
    import torch

    torch.save(obj, path)
    return path


def _tiny_ckpt():
    from napari_medseg.models.hybrid_liver import build_model, make_checkpoint

    cfg = {"features": 4, "levels": 2, "transformer_layers": 1, "heads": 2}
    return make_checkpoint(build_model(cfg), build_model(cfg))


CKPT_CASES = [
    ("missing file", lambda p: p / "absent.pt", ImageReadError, "not found"),
    ("not a checkpoint", lambda p: (p / "junk.pt").write_bytes(b"hello") and p / "junk.pt", ImageReadError,
     "junk.pt"),
    ("other format", lambda p: _write(p / "other.pt", {"format": "something-else", "version": 1}),
     CheckpointMismatchError, "not a hybrid-liver checkpoint"),
    ("newer version", lambda p: _write(p / "new.pt", dict(_tiny_ckpt(), version=99)), CheckpointMismatchError,
     "version 99"),
    ("no stage2", lambda p: _write(p / "half.pt", {k: v for k, v in _tiny_ckpt().items() if k != "stage2_state_dict"}),
     CheckpointMismatchError, "stage2_state_dict"),
    ("mis-shaped weights", lambda p: _write(p / "shape.pt", _reshaped()), CheckpointMismatchError, "shape"),
]


def _reshaped():
    import torch

    ckpt = _tiny_ckpt()
    key = next(k for k in ckpt["stage1_state_dict"] if k.endswith("weight"))
    ckpt["stage1_state_dict"][key] = torch.zeros(1, 1)
    return ckpt


@pytest.mark.parametrize("name, make, error, message", CKPT_CASES, ids=[c[0] for c in CKPT_CASES])
def test_bad_checkpoints(name, make, error, message, tmp_path):
    from napari_medseg.models.hybrid_liver import load_cascade

    path = make(tmp_path)
    with pytest.raises(error, match=message):
        load_cascade(path)


def test_malicious_checkpoint_never_runs(tmp_path):
    from napari_medseg.models.hybrid_liver import load_cascade

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"format": "napari-medseg/hybrid-liver", "x": Payload(marker)}, fh)
    with pytest.raises((UnsafeCheckpointError, ImageReadError)):
        load_cascade(path)
    assert not marker.exists()


# ----------------------------------------------------------------------------- training data
def _msd(tmp_path, label_values=(0, 1, 2), with_labels=True, image_names=("a.nii.gz",)):
    from napari_medseg.io import write_volume

    root = tmp_path / "data"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir(parents=True)
    for name in image_names:
        vol = Volume(_ct((4, 16, 16)))
        write_volume(vol, root / "imagesTr" / name)
        if with_labels:
            lab = np.zeros((4, 16, 16), np.uint8)
            for i, v in enumerate(label_values):
                lab[i] = v
            write_volume(vol.with_array(lab), root / "labelsTr" / name)
    return root


DATA_CASES = [
    ("no folders", lambda p: p, "imagesTr/ and labelsTr/"),
    ("no label", lambda p: _msd(p, with_labels=False), "has no label file"),
    ("bad label values", lambda p: _msd(p, label_values=(0, 1, 5)), "values \\[5\\]"),
    ("no images", lambda p: _msd(p, image_names=()), "no images"),
]


@pytest.mark.parametrize("name, make, message", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_training_data_errors(name, make, message, tmp_path):
    from napari_medseg.training.data import find_cases, read_case

    root = make(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(InvalidInputError, match=message):
        for image, label in find_cases(root):
            read_case(image, label)
    assert not out.exists()


def test_train_cli_bad_data_exit_2(tmp_path, capsys):
    from napari_medseg.cli import main

    out = tmp_path / "out"
    assert main(["train", "liver-lesion", "--data", str(tmp_path / "nothing"), "--out", str(out),
                 "--device", "cpu"]) == 2
    assert "imagesTr" in capsys.readouterr().err
    assert not (out / "best.pt").exists()


def test_lesions_cli_geometry_mismatch_writes_nothing(tmp_path, capsys):
    from napari_medseg.cli import main
    from napari_medseg.io import write_volume

    write_volume(Volume(_ct()), tmp_path / "ct.nii.gz")
    write_volume(Volume(_labels((6, 12, 10))), tmp_path / "lab.nii.gz")
    out = tmp_path / "out"
    assert main(["lesions", str(tmp_path / "ct.nii.gz"), "-o", str(out), "--labels", str(tmp_path / "lab.nii.gz")]) == 2
    assert "voxel grid" in capsys.readouterr().err
    assert not out.exists()
