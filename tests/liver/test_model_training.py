"""The hybrid network, its checkpoint format, and the training loop (tiny, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.errors import CheckpointMismatchError
from napari_medseg.models import hybrid_liver as hl

from .conftest import COARSE, TINY, liver_labels, small_phantom


def test_network_any_size_and_pos_embedding():
    torch.manual_seed(0)
    net = hl.build_model({"features": 4, "heads": 2, "transformer_layers": 1}).eval()
    for shape in ((1, 3, 37, 53), (2, 3, 64, 64), (1, 3, 8, 120)):
        out = net(torch.randn(shape))
        assert out.shape == (shape[0], 2, *shape[2:])
    emb = hl.sincos_2d(3, 5, 16)
    assert emb.shape == (15, 16) and torch.allclose(hl.sincos_2d(3, 5, 16), emb)
    assert not torch.allclose(emb[0], emb[1])  # positions differ
    with pytest.raises(CheckpointMismatchError, match="unknown hybrid-liver architecture option 'widht'"):
        hl.build_model({"widht": 3})


def test_few_steps_reduce_loss(one_thread):
    from napari_medseg.training import data as td
    from napari_medseg.training.liver import Trainer, TrainConfig

    ph = small_phantom(21)
    pre = dict(hl.DEFAULT_PREPROCESSING, **COARSE)
    case = td.prepare_case("c", ph.ct, liver_labels(ph), pre)
    cfg = TrainConfig(epochs=1, steps_per_epoch=25, lr=5e-3, **TINY)
    trainer = Trainer([case], cfg, pre, torch.device("cpu"))
    batch = trainer.samplers[1].batch(4)
    assert batch[0].shape == (4, 3, 32, 32) and set(np.unique(batch[1].numpy())) <= {0, 1}
    first = trainer.train_step(1, batch)
    losses = [trainer.train_step(1, batch) for _ in range(24)]
    assert min(losses[-5:]) < 0.8 * first


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


def test_wrong_architecture_lists_keys(tmp_path):
    a = hl.build_model({"features": 4, "heads": 2, "transformer_layers": 1})
    b = hl.build_model({"features": 4, "heads": 2, "transformer_layers": 1})
    ckpt = hl.make_checkpoint(a, b)
    ckpt["config"]["stage2"]["transformer_layers"] = 2  # the weights have only one layer
    hl.save_checkpoint(ckpt, tmp_path / "x.pt")
    with pytest.raises(CheckpointMismatchError, match="missing") as info:
        hl.load_cascade(tmp_path / "x.pt")
    assert "transformer.1" in str(info.value) and "stage2" in str(info.value)
