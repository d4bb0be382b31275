"""Loading SAM-Med3D checkpoints in the published structure, safely and strictly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from napari_medseg.errors import CheckpointMismatchError, ImageReadError, UnsafeCheckpointError
from napari_medseg.models.sam_med3d import (
    build_sam_med3d,
    extract_state_dict,
    load_sam_med3d,
    sam_med3d_from_state_dict,
)
from napari_medseg.testing import PARITY_REL, assert_close_to_scale, scaled_error
from napari_medseg.testing.sam_med3d import fixture_input


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


def _broken(sd: dict, how: str) -> dict:
    sd = dict(sd)
    if how == "missing":
        sd.pop("mask_decoder.iou_token.weight")
    elif how == "unexpected":
        sd["mask_decoder.extra.weight"] = torch.zeros(1)
    elif how == "shape":
        sd["prompt_encoder.point_embeddings.0.weight"] = torch.zeros(1, 256)
    return sd


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


@pytest.fixture(scope="module")
def outputs(deterministic_net, sam_reference):
    ref = sam_reference
    emb = deterministic_net.encode(fixture_input())
    l1, i1 = deterministic_net.decode(
        emb, torch.from_numpy(ref["points_click1"]), torch.from_numpy(ref["labels_click1"]), None
    )
    l2, i2 = deterministic_net.decode(
        emb, torch.from_numpy(ref["points_click2"]), torch.from_numpy(ref["labels_click2"]), l1
    )
    return {"image_embedding": emb, "low_res_logits_click1": l1, "iou_click1": i1,
            "low_res_logits_click2": l2, "iou_click2": i2}


def test_state_dict_keys_and_shapes_match_released_checkpoint(sam_shapes):
    model = build_sam_med3d()
    sd = model.state_dict()
    expected = sam_shapes["state_dict_shapes"]
    assert list(sd) == list(expected) or sorted(sd) == sorted(expected)
    assert {k: list(v.shape) for k, v in sd.items()} == expected
    assert len(sd) == 324
    assert sum(v.numel() for v in sd.values()) == sam_shapes["n_params"] == 100_509_616
    # pixel_mean / pixel_std exist but are not persistent
    assert "pixel_mean" in dict(model.named_buffers()) and "pixel_mean" not in sd


@pytest.mark.parametrize(
    "name", ["image_embedding", "low_res_logits_click1", "iou_click1", "low_res_logits_click2", "iou_click2"]
)
def test_outputs_match_reference(outputs, sam_reference, name):
    got = outputs[name].numpy()
    want = sam_reference[name]
    assert got.shape == want.shape
    assert_close_to_scale(got, want, name=name)


def test_tolerance_detects_a_real_mismatch(outputs, sam_reference):
    """The tolerance is tight enough to fail on a wrong implementation: a 1 % change of
    the logits, or the second click's logits compared with the first's, is caught."""
    want = sam_reference["low_res_logits_click1"]
    with pytest.raises(AssertionError):
        assert_close_to_scale(want * 1.01, want)
    with pytest.raises(AssertionError):
        assert_close_to_scale(outputs["low_res_logits_click2"], want)


def test_full_resolution_masks_match_reference(outputs, sam_reference):
    for click in ("click1", "click2"):
        ours = F.interpolate(outputs[f"low_res_logits_{click}"], size=(128,) * 3, mode="trilinear", align_corners=False)
        ref = F.interpolate(torch.from_numpy(sam_reference[f"low_res_logits_{click}"]), size=(128,) * 3,
                            mode="trilinear", align_corners=False)
        ours_m, ref_m = torch.sigmoid(ours) > 0.5, torch.sigmoid(ref) > 0.5
        # only voxels whose logit lies within the float tolerance band around 0 may flip
        _, scale = scaled_error(outputs[f"low_res_logits_{click}"], sam_reference[f"low_res_logits_{click}"])
        disagree = int((ours_m != ref_m).sum())
        near_zero = int((ref.abs() <= PARITY_REL * scale).sum())
        assert disagree <= near_zero


def test_second_click_uses_previous_logits(deterministic_net, outputs, sam_reference):
    """Feeding zeros instead of the first click's logits must change the answer: the
    mask prompt really is wired into the decoder."""
    emb = outputs["image_embedding"]
    l2_no_prompt, _ = deterministic_net.decode(
        emb, torch.from_numpy(sam_reference["points_click2"]), torch.from_numpy(sam_reference["labels_click2"]), None
    )
    assert float((l2_no_prompt - outputs["low_res_logits_click2"]).abs().max()) > 1e-4
