"""The nnU-Net predictor: parity with nnunetv2's nnUNetPredictor, folds, inputs, progress, cancel, memory."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from napari_medseg.errors import InsufficientMemoryError
from napari_medseg.errors import InvalidInputError, WeightsNotFoundError  # noqa: E402
from napari_medseg.testing.nnunet import dice_per_class, reference_predict


torch = pytest.importorskip("torch")


def test_predict_refuses_before_starting_when_memory_is_short(model_factory, monkeypatch):
    import numpy as np

    from napari_medseg.io.volume import Volume
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor

    model = NnUNetPredictor.from_folder(model_factory(n_classes=3), device="cpu")
    monkeypatch.setenv("MEDSEG_AVAILABLE_MEMORY", str(2**20))
    calls = []
    with pytest.raises(InsufficientMemoryError, match="nnU-Net prediction .* needs about"):
        model.predict(Volume(np.zeros((40, 64, 64), np.int16), spacing=(0.8, 0.8, 1.0)),
                      progress=lambda f, t: calls.append(t))
    assert calls == []  # refused before any work


def test_out_of_memory_in_a_window_becomes_a_clear_error(model_factory, synthetic_ct, monkeypatch):
    """A window that cannot fit (simulated CUDA OOM) ends in InsufficientMemoryError, after
    first retrying with one mirrored variant per pass."""
    from napari_medseg.inference import sliding_window as sw
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor

    # torch: GPUs run torch, and a compiled CPU model runs one mirror at a time
    model = NnUNetPredictor.from_folder(model_factory(n_classes=3), device="cpu", runtime="torch")
    batches = []

    def oom(network, x, combos, mirror_batch):
        batches.append(mirror_batch)
        raise torch.cuda.OutOfMemoryError("simulated")

    monkeypatch.setattr(sw, "_predict_window", oom)
    with pytest.raises(InsufficientMemoryError, match="does not fit in the memory of cpu.*device='cpu'"):
        model.predict(synthetic_ct)
    assert batches[0] > 1 and batches[-1] == 1


def test_confidence_changes_no_label_and_its_maps_are_probabilities(model_factory, synthetic_ct):
    """Confidence on: the labels are identical; the maps are valid and agree with each other."""
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor

    model = NnUNetPredictor.from_folder(model_factory(n_classes=4, seed=4), device="cpu",
                                        runtime="torch")
    plain = model.predict(synthetic_ct, use_mirroring=False)
    labels, conf = model.predict_with_confidence(synthetic_ct, use_mirroring=False)
    assert np.array_equal(labels, plain)
    assert len(np.unique(plain)) >= 2
    for m in (conf.max_prob, conf.entropy):
        assert m.shape == synthetic_ct.shape and m.dtype == np.float32
    assert conf.max_prob.min() >= 1 / 4 - 1e-6 and conf.max_prob.max() <= 1 + 1e-6
    assert conf.entropy.min() >= 0 and conf.entropy.max() <= 1
    assert conf.fold_disagreement is None and conf.n_folds == 1
    # not constant, and where the top class is surer the entropy is lower
    assert conf.max_prob.std() > 1e-3
    r = np.corrcoef(conf.max_prob.ravel(), conf.entropy.ravel())[0, 1]
    assert r < -0.5, r
    # a temperature above 1 flattens the probabilities and changes no label
    hot_labels, hot = model.predict_with_confidence(synthetic_ct, use_mirroring=False,
                                                    temperature=3.0)
    assert np.array_equal(hot_labels, plain)
    assert hot.max_prob.mean() < conf.max_prob.mean() and hot.entropy.mean() > conf.entropy.mean()
    assert hot.temperature == 3.0
    with pytest.raises(ValueError, match="temperature"):
        model.predict_with_confidence(synthetic_ct, use_mirroring=False, temperature=0)


def test_fold_disagreement_of_a_two_fold_ensemble(model_factory, synthetic_ct):
    """Two folds with different weights: disagreement where their labels differ, 0 where equal."""
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor

    folder = model_factory(n_classes=3, folds=(0, 1), seed=5)
    model = NnUNetPredictor.from_folder(folder, device="cpu", runtime="torch")
    labels, conf = model.predict_with_confidence(synthetic_ct, use_mirroring=False)
    assert np.array_equal(labels, model.predict(synthetic_ct, use_mirroring=False))
    d = conf.fold_disagreement
    assert d is not None and d.shape == synthetic_ct.shape and conf.n_folds == 2
    assert d.min() >= 0 and d.max() <= 1
    f0 = NnUNetPredictor.from_folder(folder, folds=[0], device="cpu", runtime="torch").predict(
        synthetic_ct, use_mirroring=False)
    f1 = NnUNetPredictor.from_folder(folder, folds=[1], device="cpu", runtime="torch").predict(
        synthetic_ct, use_mirroring=False)
    differ = f0 != f1
    assert differ.any() and (~differ).any()
    # where the folds differ one of them disagrees with the ensemble (1/2); where they
    # agree (and with the ensemble) nobody does; the network's coarser grid (resampled
    # linearly) blurs this near the boundaries between the two
    assert d[differ].mean() > 0.35
    assert d[differ].mean() > 2 * d[~differ].mean()


pytest.importorskip("nnunetv2")


pytestmark = pytest.mark.slow


def _assert_parity(ours, ref, n_classes, what):
    assert ours.shape == ref.shape, what
    identical = float((ours == ref).mean())
    dice = dice_per_class(ours, ref, n_classes)
    present = np.unique(ref)
    assert len(present) >= 2, f"{what}: the reference predicts a single class; the test would be void"
    assert identical >= 0.999, f"{what}: only {identical:.5f} of voxels identical"
    assert all(d >= 0.99 for d in dice.values()), f"{what}: Dice {dice}"


@pytest.mark.parametrize("runtime", ["torch", "openvino"])
@pytest.mark.parametrize("plans_format", ["new", "old"])
def test_parity_real_ct(model_factory, ct_small, plans_format, runtime):
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor

    if runtime == "openvino":
        pytest.importorskip("openvino")
    # 5 mm x 6 mm x 6 mm: resampling on the way in and out, 2 x 3 x 3 windows, 8 mirrors
    folder = model_factory(plans_format=plans_format, n_classes=4, spacing=(5.0, 6.0, 6.0), seed=1)
    model = NnUNetPredictor.from_folder(folder, device="cpu", runtime=runtime)
    ours = model.predict(ct_small)
    assert model.runtime_report.used == runtime, model.runtime_report
    ref = reference_predict(folder, ct_small)
    _assert_parity(ours, ref, 4, f"{plans_format} plans on the real CT, {runtime}")


@pytest.mark.parametrize("runtime", ["torch", "openvino"])
def test_parity_synthetic_anisotropic_transposed_two_folds(model_factory, synthetic_ct, runtime):
    """Anisotropic input (separate-z resampling), a transposed plan, a 2-fold ensemble."""
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor

    if runtime == "openvino":
        pytest.importorskip("openvino")
    folder = model_factory(plans_format="new", n_classes=3, spacing=(4.0, 4.0, 4.0),
                           transpose_forward=(2, 0, 1), patch_size=(32, 16, 32), folds=(0, 1),
                           seed=2)
    model = NnUNetPredictor.from_folder(folder, device="cpu", runtime=runtime)
    assert model.folds == [0, 1]
    ours = model.predict(synthetic_ct)
    report = model.runtime_report
    assert report.used == runtime
    if runtime == "openvino":
        assert report.compiled + report.cache_hits == 2  # one compiled model per fold
    ref = reference_predict(folder, synthetic_ct, folds=(0, 1))
    _assert_parity(ours, ref, 3, f"2-fold ensemble, transposed plans, synthetic CT, {runtime}")
    # the ensemble differs from a single fold (else the test would not test averaging)
    single = NnUNetPredictor.from_folder(folder, folds=[0], device="cpu",
                                         runtime=runtime).predict(synthetic_ct)
    assert (single != ours).any()


def test_openvino_second_run_reads_the_cache_and_a_failed_conversion_falls_back(
        model_factory, ct_small, monkeypatch, tmp_path, caplog):
    """Run 1 converts; run 2 (a new predictor: another process, the next click) reads the
    cache; a forced conversion failure runs torch with the reason logged, same labels."""
    ov = pytest.importorskip("openvino")
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor

    monkeypatch.setenv("MEDSEG_COMPILED_DIR", str(tmp_path))
    folder = model_factory(plans_format="new", n_classes=4, spacing=(5.0, 6.0, 6.0), seed=5,
                           network="ResidualEncoderUNet")
    first = NnUNetPredictor.from_folder(folder, device="cpu", runtime="openvino")
    labels = first.predict(ct_small, use_mirroring=False)
    assert first.runtime_report.used == "openvino" and first.runtime_report.compiled == 1
    again = first.predict(ct_small, use_mirroring=False)  # same predictor: still compiled
    assert first.runtime_report.compiled == 0 and np.array_equal(again, labels)

    real_convert = ov.convert_model
    calls = []
    monkeypatch.setattr(ov, "convert_model", lambda *a, **k: calls.append(1) or real_convert(*a, **k))
    second = NnUNetPredictor.from_folder(folder, device="cpu", runtime="openvino")
    assert np.array_equal(second.predict(ct_small, use_mirroring=False), labels)
    assert calls == [] and second.runtime_report.cache_hits == 1
    assert second.runtime_report.used == "openvino"

    # --- a conversion failure (fresh cache): torch runs, with the reason
    monkeypatch.setenv("MEDSEG_COMPILED_DIR", str(tmp_path / "fresh"))

    def broken(*a, **k):
        raise RuntimeError("no conversion rule for aten::something")

    monkeypatch.setattr(ov, "convert_model", broken)
    third = NnUNetPredictor.from_folder(folder, device="cpu", runtime="openvino")
    with caplog.at_level("WARNING"):
        fallback = third.predict(ct_small, use_mirroring=False)
    assert third.runtime_report.used == "torch"
    assert "aten::something" in third.runtime_report.reason
    assert "instead of OpenVINO" in caplog.text
    torch_labels = NnUNetPredictor.from_folder(folder, device="cpu", runtime="torch").predict(
        ct_small, use_mirroring=False)
    assert np.array_equal(fallback, torch_labels)
    ref = reference_predict(folder, ct_small, use_mirroring=False)
    _assert_parity(labels, ref, 4, "ResEnc U-Net, OpenVINO, no mirroring")


def test_auto_converts_when_the_run_repays_it_and_reuses_the_cache(model_factory, ct_small,
                                                                   monkeypatch, tmp_path):
    """auto: a small run of an unconverted network stays PyTorch (reason reported, torch's
    labels); a run with enough window passes converts; a later small run reads the cache."""
    pytest.importorskip("openvino")
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor
    from napari_medseg.inference.runtimes import AUTO_MIN_PASSES, describe_runtime

    monkeypatch.setenv("MEDSEG_COMPILED_DIR", str(tmp_path))
    # 5 x 6 x 6 mm on the real CT: 2 x 3 x 3 = 18 windows, 8 mirrored variants with mirroring
    folder = model_factory(plans_format="new", n_classes=4, spacing=(5.0, 6.0, 6.0), seed=6)
    assert 18 < AUTO_MIN_PASSES <= 18 * 8
    torch_labels = NnUNetPredictor.from_folder(folder, device="cpu", runtime="torch").predict(
        ct_small, use_mirroring=False)

    small = NnUNetPredictor.from_folder(folder, device="cpu")  # runtime="auto", the default
    labels = small.predict(ct_small, use_mirroring=False)
    report = small.runtime_report
    assert report.requested == "auto" and report.used == "torch" and report.compiled == 0
    assert "this run: 18" in report.reason and "Not OpenVINO" in describe_runtime(report)
    assert np.array_equal(labels, torch_labels) and list(tmp_path.iterdir()) == []

    mirrored = NnUNetPredictor.from_folder(folder, device="cpu")
    with_mirrors = mirrored.predict(ct_small)  # 144 passes: converting pays
    assert mirrored.runtime_report.used == "openvino" and mirrored.runtime_report.compiled == 1
    _assert_parity(with_mirrors, reference_predict(folder, ct_small), 4, "auto, OpenVINO, mirrors")

    again = NnUNetPredictor.from_folder(folder, device="cpu")
    cached = again.predict(ct_small, use_mirroring=False)  # 18 passes, but the model is cached
    assert again.runtime_report.used == "openvino" and again.runtime_report.cache_hits == 1
    assert again.runtime_report.compiled == 0 and again.runtime_report.reason == ""
    assert float((cached == torch_labels).mean()) >= 0.999


def test_parity_residual_encoder_order3_export(model_factory, synthetic_ct):
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor

    folder = model_factory(plans_format="new", network="ResidualEncoderUNet", n_classes=3,
                           spacing=(6.0, 3.0, 3.0), probabilities_order=3, mirror_axes=(1, 2), seed=3)
    model = NnUNetPredictor.from_folder(folder, device="cpu")
    ours = model.predict(synthetic_ct)
    ref = reference_predict(folder, synthetic_ct)
    _assert_parity(ours, ref, 3, "ResEnc U-Net, order-3 export")


def test_parity_without_mirroring_and_other_step(model_factory, ct_small):
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor

    folder = model_factory(plans_format="old", n_classes=4, spacing=(5.0, 6.0, 6.0), seed=1)
    model = NnUNetPredictor.from_folder(folder, device="cpu")
    ours = model.predict(ct_small, use_mirroring=False, tile_step_size=0.75)
    ref = reference_predict(folder, ct_small, use_mirroring=False, tile_step_size=0.75)
    _assert_parity(ours, ref, 4, "no mirroring, step 0.75")
    # mirroring matters for these weights: the setting is really applied
    assert (model.predict(ct_small) != ours).any()


def test_missing_pieces_give_clear_errors(model_factory, tmp_path):
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor

    src = model_factory(n_classes=3)
    with pytest.raises(WeightsNotFoundError, match="not found"):
        NnUNetPredictor.from_folder(tmp_path / "nope")
    bare = tmp_path / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    bare.mkdir()
    shutil.copy(src / "dataset.json", bare / "dataset.json")
    with pytest.raises(WeightsNotFoundError, match="plans.json not found"):
        NnUNetPredictor.from_folder(bare)
    shutil.copy(src / "plans.json", bare / "plans.json")
    with pytest.raises(WeightsNotFoundError, match="no fold_N/checkpoint_final.pth"):
        NnUNetPredictor.from_folder(bare)
    with pytest.raises(WeightsNotFoundError, match="fold 3"):
        NnUNetPredictor.from_folder(src, folds=[3])
    (bare / "plans.json").write_text("{not json")
    with pytest.raises(InvalidInputError, match="plans.json .* is not valid JSON"):
        NnUNetPredictor.from_folder(bare)


def test_predict_checks_input(model_factory):
    from napari_medseg.io.volume import Volume
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor

    model = NnUNetPredictor.from_folder(model_factory(n_classes=3), device="cpu")
    vol = Volume(np.zeros((4, 8, 8), np.float32))
    with pytest.raises(InvalidInputError, match="1 input channel"):
        model.predict([vol, vol])
    bad = np.zeros((4, 8, 8), np.float32)
    bad[1, 2, 3] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        model.predict(Volume(bad))
    # a tiny all-zero image is padded to the patch size and predicted without error
    out = model.predict(vol)
    assert out.shape == vol.shape and out.dtype == np.uint8


def test_progress_and_cancel(model_factory, synthetic_ct):
    from napari_medseg.errors import Cancelled
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor
    from napari_medseg.progress import CancelToken

    model = NnUNetPredictor.from_folder(model_factory(n_classes=3), device="cpu")
    seen = []
    model.predict(synthetic_ct, use_mirroring=False, progress=lambda f, t: seen.append((f, t)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("window" in t for _, t in seen) and any("resampling" in t for _, t in seen)

    token = CancelToken()

    def cancel_after_first_window(fraction, text):
        if "window" in text:
            token.cancel()

    with pytest.raises(Cancelled):
        model.predict(synthetic_ct, progress=cancel_after_first_window, cancel=token)
    token.reset()
    assert model.predict(synthetic_ct, use_mirroring=False).shape == synthetic_ct.shape


def _reference_probabilities(folder, volume, folds=(0,), use_mirroring=True):
    """nnunetv2's labels and saved probabilities (``save_or_return_probabilities=True``)."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(use_mirroring=use_mirroring, perform_everything_on_device=False,
                                device=torch.device("cpu"), verbose=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(folder), use_folds=tuple(folds))
    props = {"spacing": [float(s) for s in volume.spacing_zyx]}
    seg, probs = predictor.predict_single_npy_array(volume.array[None].astype(np.float32), props,
                                                    save_or_return_probabilities=True)
    return seg, np.asarray(probs, dtype=np.float32)


@pytest.mark.parametrize("case", ["real CT, resampled", "anisotropic, transposed, 2 folds"])
def test_confidence_parity_with_nnunet_saved_probabilities(model_factory, ct_small, synthetic_ct,
                                                          case):
    """The maps are those of nnU-Net's own saved probabilities, and labels do not move."""
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor

    if case.startswith("real"):
        folder, volume, folds = model_factory(n_classes=4, spacing=(5.0, 6.0, 6.0), seed=1), ct_small, (0,)
    else:
        folder = model_factory(plans_format="new", n_classes=3, spacing=(4.0, 4.0, 4.0),
                               transpose_forward=(2, 0, 1), patch_size=(32, 16, 32), folds=(0, 1),
                               seed=2)
        volume, folds = synthetic_ct, (0, 1)
    model = NnUNetPredictor.from_folder(folder, device="cpu", runtime="torch")
    plain = model.predict(volume)
    labels, conf = model.predict_with_confidence(volume)
    assert np.array_equal(labels, plain)  # confidence changes no label voxel
    ref_seg, probs = _reference_probabilities(folder, volume, folds)
    _assert_parity(labels, ref_seg, probs.shape[0], case)
    ref_max = probs.max(0)
    assert ref_max.shape == conf.max_prob.shape
    assert ref_max.std() > 1e-3, "the reference is flat; the test would be void"
    err = float(np.abs(conf.max_prob - ref_max).max())
    assert err <= 1e-2, f"{case}: max-probability map differs by {err:.3g}"
    p = np.clip(probs.astype(np.float64), 1e-12, 1)
    ref_entropy = -(probs * np.log(p)).sum(0) / np.log(probs.shape[0])
    err_h = float(np.abs(conf.entropy - ref_entropy).max())
    assert err_h <= 2e-2, f"{case}: entropy map differs by {err_h:.3g}"


def test_openvino_frees_the_torch_weights_and_a_failure_reads_them_back(
        model_factory, ct_small, monkeypatch, tmp_path):
    """While the compiled model runs only the seg head stays in the torch network; an
    error while running reads the weights back from the checkpoint and torch finishes
    with torch's labels; a later torch run has every weight again."""
    pytest.importorskip("openvino")
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor
    from napari_medseg.inference.runtimes.openvino import CompiledNetwork

    monkeypatch.setenv("MEDSEG_COMPILED_DIR", str(tmp_path))
    folder = model_factory(plans_format="new", n_classes=4, spacing=(5.0, 6.0, 6.0), seed=5)
    torch_labels = NnUNetPredictor.from_folder(folder, device="cpu", runtime="torch").predict(
        ct_small, use_mirroring=False)
    model = NnUNetPredictor.from_folder(folder, device="cpu", runtime="openvino")

    def held():
        return sum(p.numel() for p in model.network.parameters())

    full = held()
    head = sum(p.numel() for p in model.network.decoder.seg_layers[-1].parameters())
    labels = model.predict(ct_small, use_mirroring=False)
    assert model.runtime_report.used == "openvino"
    assert held() == head < full
    assert (labels == torch_labels).mean() >= 0.999
    model.predict(ct_small, use_mirroring=False)  # the next run: still compiled, still freed
    assert model.runtime_report.cache_hits == 1 and held() == head

    def broken(self, x):
        raise RuntimeError("device lost")

    monkeypatch.setattr(CompiledNetwork, "__call__", broken)
    fallback = model.predict(ct_small, use_mirroring=False)
    assert model.runtime_report.used == "torch" and "device lost" in model.runtime_report.reason
    assert held() == full
    assert np.array_equal(fallback, torch_labels)
    model.runtime = "torch"
    assert np.array_equal(model.predict(ct_small, use_mirroring=False), torch_labels)
