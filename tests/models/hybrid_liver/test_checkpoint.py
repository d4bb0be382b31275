"""The hybrid liver checkpoint: wrong architectures list their keys; broken and malicious files are refused."""

from __future__ import annotations

import os
import pickle

import pytest

from napari_medseg.errors import CheckpointMismatchError
from napari_medseg.errors import CheckpointMismatchError, ImageReadError, UnsafeCheckpointError
from napari_medseg.models import hybrid_liver as hl


def test_wrong_architecture_lists_keys(tmp_path):
    a = hl.build_model({"features": 4, "heads": 2, "transformer_layers": 1})
    b = hl.build_model({"features": 4, "heads": 2, "transformer_layers": 1})
    ckpt = hl.make_checkpoint(a, b)
    ckpt["config"]["stage2"]["transformer_layers"] = 2  # the weights have only one layer
    hl.save_checkpoint(ckpt, tmp_path / "x.pt")
    with pytest.raises(CheckpointMismatchError, match="missing") as info:
        hl.load_cascade(tmp_path / "x.pt")
    assert "transformer.1" in str(info.value) and "stage2" in str(info.value)


# --- bad input and faults


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
