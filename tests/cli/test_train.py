"""``medseg train``: checkpoints that reload identically, bad data, outputs inside the training images."""

from __future__ import annotations

import numpy as np
import torch

from napari_medseg.models import hybrid_liver as hl

from ._run import medseg, refused


# --- bad input and faults


def test_train_output_inside_the_training_images_is_refused(tmp_path):
    data = tmp_path / "data"
    (data / "imagesTr").mkdir(parents=True)
    (data / "labelsTr").mkdir()
    res = medseg("train", "liver-lesion", "--data", data, "--out", data / "imagesTr")
    refused(res, "imagesTr")
    assert list((data / "imagesTr").iterdir()) == []


def test_train_cli_checkpoint_reloads_identically(msd_dataset, tmp_path, one_thread, capsys, monkeypatch):
    from napari_medseg.cli import main
    from napari_medseg.models.hybrid_liver.preprocessing import slabs
    from napari_medseg.models.safe_load import load_checkpoint

    monkeypatch.setenv("MEDSEG_WEIGHTS_DIR", str(tmp_path / "weights"))
    out = tmp_path / "run"
    rc = main(["train", "liver-lesion", "--data", str(msd_dataset), "--out", str(out), "--epochs", "2", "--install",
               "--steps-per-epoch", "2", "--batch-size", "2", "--features", "4", "--patch-size", "32",
               "--transformer-layers", "1", "--device", "cpu"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "val Dice liver" in text and "best checkpoint" in text
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file() and (out / "history.json").is_file()
    # --install puts best.pt where the registry's 'hybrid-liver' weights are looked for
    from napari_medseg.models.hybrid_liver.checkpoint import checkpoint_file
    from napari_medseg.models.weights import resolve_weights

    installed = checkpoint_file(resolve_weights("hybrid-liver"))
    assert installed == tmp_path / "weights" / "hybrid-liver" / "model.pth"
    assert installed.read_bytes() == (out / "best.pt").read_bytes()
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["format"] == hl.CHECKPOINT_FORMAT and ckpt["labels"][2] == "liver_lesion"
    assert ckpt["preprocessing"]["hu_window"] == [-200.0, 300.0]
    assert ckpt["training"]["epoch"] == 2

    s1, s2, _ = hl.load_cascade(out / "last.pt")
    x = torch.from_numpy(slabs(np.random.default_rng(0).random((5, 40, 40), dtype=np.float32), [1, 2], 1))
    ref1 = hl.build_model(ckpt["config"]["stage1"])
    ref1.load_state_dict(ckpt["stage1_state_dict"])
    ref1.eval()
    with torch.inference_mode():
        assert torch.equal(s1(x), ref1(x))
        # re-saving and re-loading gives bit-identical outputs
        hl.save_checkpoint(hl.make_checkpoint(s1, s2), tmp_path / "again.pt")
        t1, t2, _ = hl.load_cascade(tmp_path / "again.pt")
        assert torch.equal(t1(x), s1(x)) and torch.equal(t2(x), s2(x))


# --- bad input and faults


def test_train_cli_bad_data_exit_2(tmp_path, capsys):
    from napari_medseg.cli import main

    out = tmp_path / "out"
    assert main(["train", "liver-lesion", "--data", str(tmp_path / "nothing"), "--out", str(out),
                 "--device", "cpu"]) == 2
    assert "imagesTr" in capsys.readouterr().err
    assert not (out / "best.pt").exists()
