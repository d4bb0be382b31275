"""Untrusted and broken checkpoints: refused with a specific error, no code ever runs."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import pytest

from napari_medseg.errors import (  # noqa: E402
    CheckpointMismatchError,
    ImageReadError,
    UnsafeCheckpointError,
)
from napari_medseg.models.safe_load import load_checkpoint, load_state_dict_strict  # noqa: E402


# --- bad input and faults


torch = pytest.importorskip("torch")


class _Payload:
    """Unpickling this runs ``os.system`` (creates a marker file) unless the loader refuses it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalPayload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def _torch_save_with(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


def _malicious_os_system(tmp: Path, marker: Path) -> Path:
    return _torch_save_with({"network_weights": {"w": torch.zeros(2)}, "x": _Payload(marker)},
                            tmp / "evil_system.pth")


def _malicious_eval_nested(tmp: Path, marker: Path) -> Path:
    return _torch_save_with({"init_args": {"plans": [1, {"deep": _EvalPayload(marker)}]}},
                            tmp / "evil_eval.pth")


def _malicious_legacy_pickle(tmp: Path, marker: Path) -> Path:
    # a plain (non-zip) pickle file named .pth: torch's legacy loader path
    path = tmp / "evil_legacy.pth"
    path.write_bytes(pickle.dumps({"x": _Payload(marker)}, protocol=2))
    return path


def _trainer_class_reference(tmp: Path, marker: Path) -> Path:
    # a checkpoint that pickles a class object (like a trainer) instead of data
    return _torch_save_with({"trainer": zipfile.ZipFile}, tmp / "class_ref.pth")


@pytest.mark.parametrize(
    "make, global_name",
    [
        (_malicious_os_system, "posix.system"),
        (_malicious_eval_nested, "builtins.eval"),
        (_malicious_legacy_pickle, "posix.system"),
        (_trainer_class_reference, "zipfile.ZipFile"),
    ],
    ids=["os.system payload", "eval nested in init_args", "legacy pickle payload", "class reference"],
)
def test_unsafe_checkpoints_refused_and_payload_never_runs(tmp_path, make, global_name):
    marker = tmp_path / "PWNED"
    path = make(tmp_path, marker)
    before = path.read_bytes()
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "nothing was executed" in message
    assert global_name.split(".")[-1] in message
    assert not marker.exists(), "the pickle payload ran"
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "content, match",
    [
        (None, "not found"),
        (b"", "empty"),
        (b"PK\x03\x04 truncated zip", "corrupt, truncated or not a PyTorch file"),
        (b"\x00\x01garbage" * 10, "could not be read safely|corrupt"),
    ],
    ids=["missing", "empty", "truncated zip", "garbage"],
)
def test_broken_files_give_read_errors(tmp_path, content, match):
    path = tmp_path / "ckpt.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageReadError, match=match):
        load_checkpoint(path)


def test_truncated_real_checkpoint(tmp_path):
    good = _torch_save_with({"network_weights": {"w": torch.randn(64, 64)}}, tmp_path / "good.pth")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ImageReadError, match="cut.pth"):
        load_checkpoint(cut)


def test_nnunet_style_checkpoint_loads_with_numpy_extras(tmp_path):
    """nnU-Net's extras (NumPy scalars, torch.device, tuples, optimizer state) are allowed."""
    from napari_medseg.testing.nnunet import make_random_model_folder

    folder = make_random_model_folder(tmp_path, n_classes=3, patch_size=(16, 16, 16),
                                      base_features=4, max_features=8, n_stages=2)
    ckpt = load_checkpoint(folder / "fold_0" / "checkpoint_final.pth")
    assert ckpt["trainer_name"] == "nnUNetTrainer"
    assert ckpt["inference_allowed_mirroring_axes"] == (0, 1, 2)
    assert ckpt["init_args"]["device"].type == "cuda"
    assert float(ckpt["_best_ema"]) == pytest.approx(0.55)
    assert "encoder.stages.0.0.convs.0.conv.weight" in ckpt["network_weights"]


def test_wrong_architecture_lists_missing_unexpected_misshaped(tmp_path):
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor
    from napari_medseg.testing.nnunet import make_random_model_folder

    small = make_random_model_folder(tmp_path / "a", n_classes=3, patch_size=(16, 16, 16),
                                     base_features=4, max_features=8, n_stages=2)
    other = make_random_model_folder(tmp_path / "b", n_classes=3, patch_size=(16, 16, 16),
                                     base_features=8, max_features=16, n_stages=3)
    # put the 3-stage, 8-feature weights under the 2-stage, 4-feature plans
    (small / "fold_0" / "checkpoint_final.pth").write_bytes(
        (other / "fold_0" / "checkpoint_final.pth").read_bytes())
    with pytest.raises(CheckpointMismatchError) as info:
        NnUNetPredictor.from_folder(small, device="cpu")
    msg = str(info.value)
    assert "fold_0/checkpoint_final.pth does not fit the network" in msg
    assert "unexpected: " in msg and "mis-shaped: " in msg and "more)" in msg
    assert "encoder.stages.0.0.convs.0.conv.weight (checkpoint (8, 1, 3, 3, 3) vs model (4, 1, 3, 3, 3))" in msg


def test_load_state_dict_strict_missing_keys():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    sd = net.state_dict()
    del sd["1.bias"]
    sd["2.weight"] = torch.zeros(1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(CheckpointMismatchError, match=r"1 missing: 1\.bias; 1 unexpected: 2\.weight"):
        load_state_dict_strict(net, sd, "test weights")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # untouched
