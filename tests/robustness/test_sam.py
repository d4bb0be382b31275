"""Bad inputs and faults of the SAM backends: specific errors with actionable messages,
and nothing modified (the session keeps its previous state)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.errors import (
    CheckpointMismatchError,
    ImageReadError,
    InvalidInputError,
    MedsegError,
    UnsafeCheckpointError,
    WeightsNotFoundError,
)
from napari_medseg.io.volume import Volume


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "ts"))
    return tmp_path


def _sam():
    from napari_medseg.prompts.sam_med3d_session import SamMed3DSession

    return SamMed3DSession


def _adapter():
    from napari_medseg.prompts.sam3d_adapter_session import Sam3DAdapterSession

    return Sam3DAdapterSession


@pytest.mark.parametrize(
    "factory, fragment",
    [(_sam, "medseg weights download sam-med3d-turbo"), (_adapter, "medseg weights import 3dsam-adapter-kits")],
)
def test_missing_weights_say_what_to_run(empty_cache, factory, fragment):
    with pytest.raises(WeightsNotFoundError) as info:
        factory()(device="cpu")
    assert fragment in str(info.value)


def _write(path, what):
    if what == "empty":
        path.write_bytes(b"")
    elif what == "garbage":
        path.write_bytes(b"this is not a checkpoint" * 10)
    elif what == "nnunet":
        torch.save({"network_weights": {"a": torch.zeros(1)}, "trainer_name": "nnUNetTrainer"}, path)
    elif what == "payload":
        class Payload:
            def __reduce__(self):
                return (print, ("payload ran",))

        torch.save({"model_state_dict": {"x": Payload()}}, path)


@pytest.mark.parametrize(
    "what, error, fragment",
    [
        ("empty", ImageReadError, "empty"),
        ("garbage", ImageReadError, "corrupt"),
        ("nnunet", CheckpointMismatchError, "not a SAM-Med3D checkpoint"),
        ("payload", UnsafeCheckpointError, "nothing was executed"),
    ],
)
def test_bad_sam_checkpoint_fails_at_set_volume_and_leaves_session_empty(tmp_path, what, error, fragment):
    path = tmp_path / "sam_med3d_turbo.pth"
    _write(path, what)
    session = _sam()(weights=path, device="cpu")
    vol = Volume(np.zeros((8, 8, 8), np.int16))
    with pytest.raises(error) as info:
        session.set_volume(vol)
    assert fragment in str(info.value)
    with pytest.raises(InvalidInputError, match="no volume set"):
        session.volume


@pytest.mark.parametrize(
    "array, fragment",
    [
        (np.full((6, 8, 8), np.nan, np.float32), "NaN"),
        (np.where(np.arange(384).reshape(6, 8, 8) == 5, np.inf, 0).astype(np.float32), "NaN or infinite"),
        (np.zeros((6, 8, 8), np.complex64), "real-valued"),
    ],
)
def test_bad_volumes_are_refused(tiny_sam_net, array, fragment):
    session = _sam()(network=tiny_sam_net, device="cpu")
    with pytest.raises(InvalidInputError) as info:
        session.set_volume(Volume(array))
    assert fragment in str(info.value)
    with pytest.raises(InvalidInputError):
        session.volume


def test_adapter_bad_checkpoint(tmp_path):
    path = tmp_path / "best.pth.tar"
    torch.save({"encoder_dict": {}, "epoch": 3}, path)
    session = _adapter()(weights=path, device="cpu")
    with pytest.raises(CheckpointMismatchError, match="feature_dict"):
        session.set_volume(Volume(np.zeros((8, 8, 8), np.int16)))


def test_nninteractive_missing(monkeypatch):
    from napari_medseg.prompts import nninteractive_session as nni

    monkeypatch.setattr(nni, "package_available", lambda: False)
    with pytest.raises(MedsegError, match="pip install nninteractive"):
        nni.NnInteractiveSession(device="cpu")


def test_point_outside_volume_changes_nothing(tiny_sam_net):
    session = _sam()(network=tiny_sam_net, device="cpu")
    session.set_volume(Volume(np.zeros((6, 8, 8), np.int16)))
    with pytest.raises(InvalidInputError, match="outside the volume"):
        session.add_point((10, 2, 2))
    assert not session.can_undo and not session.mask.any()


@pytest.fixture
def tiny_sam_net():
    from napari_medseg.models.sam_med3d import build_sam_med3d

    torch.manual_seed(0)
    return build_sam_med3d(embed_dim=48, depth=2, num_heads=2, global_attn_indexes=(1,), prompt_dim=48)
