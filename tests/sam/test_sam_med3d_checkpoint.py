"""Loading SAM-Med3D checkpoints in the published structure, safely and strictly."""

from __future__ import annotations

import pytest
import torch

from napari_medseg.errors import CheckpointMismatchError, ImageReadError, UnsafeCheckpointError
from napari_medseg.models.sam_med3d import (
    build_sam_med3d,
    extract_state_dict,
    load_sam_med3d,
    sam_med3d_from_state_dict,
)


@pytest.fixture(scope="module")
def published_checkpoint(tmp_path_factory, deterministic_net):
    """A file with exactly the released structure: model_state_dict + training state."""
    path = tmp_path_factory.mktemp("ckpt") / "sam_med3d_turbo.pth"
    sd = deterministic_net.state_dict()
    opt_state = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(4)}},
                 "param_groups": [{"lr": 8e-5, "betas": (0.9, 0.999), "params": [0]}]}
    torch.save({"epoch": 199, "model_state_dict": sd, "optimizer_state_dict": opt_state,
                "lr_scheduler_state_dict": {"last_epoch": 199, "_step_count": 200},
                "losses": [0.5, 0.4], "dices": [0.6, 0.7], "best_loss": 0.3, "best_dice": 0.8,
                "args": {"model_type": "vit_b_ori", "img_size": 128}}, path)
    return path


def test_published_structure_loads_strictly(published_checkpoint, deterministic_net):
    model = load_sam_med3d(published_checkpoint, device="cpu")
    ref = deterministic_net.state_dict()
    got = model.state_dict()
    assert list(got) == list(ref)
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    assert not model.training


def test_bare_state_dict_and_module_prefix_are_accepted(tmp_path):
    model = build_sam_med3d()
    sd = {f"module.{k}": v for k, v in model.state_dict().items()}
    assert list(extract_state_dict(sd)) == list(model.state_dict())
    assert extract_state_dict({"model_state_dict": model.state_dict(), "epoch": 1}) is not None


def _broken(sd: dict, how: str) -> dict:
    sd = dict(sd)
    if how == "missing":
        sd.pop("mask_decoder.iou_token.weight")
    elif how == "unexpected":
        sd["mask_decoder.extra.weight"] = torch.zeros(1)
    elif how == "shape":
        sd["prompt_encoder.point_embeddings.0.weight"] = torch.zeros(1, 256)
    return sd


@pytest.mark.parametrize(
    "how, fragment",
    [("missing", "mask_decoder.iou_token.weight"), ("unexpected", "mask_decoder.extra.weight"),
     ("shape", "prompt_encoder.point_embeddings.0.weight")],
)
def test_wrong_weights_raise_mismatch_naming_the_key(deterministic_net, how, fragment):
    state = _broken(deterministic_net.state_dict(), how)
    with pytest.raises(CheckpointMismatchError) as info:
        sam_med3d_from_state_dict(state, source="wrong.pth")
    msg = str(info.value)
    assert fragment in msg and "SAM-Med3D" in msg and "wrong.pth" in msg
    assert "plans" not in msg  # SAM-specific advice, not nnU-Net's


def test_wrong_file_on_disk_is_refused(tmp_path):
    small = build_sam_med3d(prompt_dim=48, embed_dim=48, depth=2, num_heads=2, global_attn_indexes=(1,))
    path = tmp_path / "small.pth"
    torch.save({"model_state_dict": small.state_dict(), "epoch": 3}, path)
    with pytest.raises(CheckpointMismatchError, match="mis-shaped"):
        load_sam_med3d(path)


def test_not_a_sam_checkpoint(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"network_weights": {"a": 1}, "trainer_name": "nnUNetTrainer"}, path)
    with pytest.raises(CheckpointMismatchError, match="SAM-Med3D"):
        load_sam_med3d(path)


def test_pickle_payload_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pth"
    torch.save({"model_state_dict": {}, "x": Payload()}, path)
    with pytest.raises(UnsafeCheckpointError):
        load_sam_med3d(path)
    assert not marker.exists()


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError):
        load_sam_med3d(tmp_path / "nope.pth")
