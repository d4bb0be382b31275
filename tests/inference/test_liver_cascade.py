"""The liver cascade's plumbing (resampling, largest component, lesions inside the liver, flips),
the nnU-Net route and label mapping, the stage networks compiled by OpenVINO (parity with
PyTorch, caches, fallbacks); bad volumes and short memory refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.errors import InsufficientMemoryError, InvalidInputError
from napari_medseg.inference import liver_cascade as lc
from napari_medseg.io.volume import Volume
from napari_medseg.models.hybrid_liver import preprocessing as pp
from napari_medseg.testing.liver import small_phantom

from napari_medseg.testing.liver import SYNTHETIC_TRAINED, TINY_NET, random_net, tiny_checkpoint


class ThresholdNet(torch.nn.Module):
    """A stand-in 'network': foreground where the centre slice is inside an intensity band."""

    def __init__(self, lo01, hi01):
        super().__init__()
        self.config = {"context": 1}
        self.lo, self.hi = lo01, hi01
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        c = x[:, 1]
        fg = ((c >= self.lo) & (c <= self.hi)).float() * 20 - 10
        return torch.stack([torch.zeros_like(fg), fg], dim=1)


def hu01(hu):  # position of an HU value in the default window [-200, 300]
    return (hu + 200) / 500


@pytest.fixture(scope="module")
def phantom():
    from napari_medseg.phantom import make_phantom

    return make_phantom(seed=5, shape=(40, 96, 96), spacing_zyx=(2.5, 2.0, 2.0), n_lesions=2)


def test_cascade_logic_with_threshold_nets(phantom, one_thread):
    from napari_medseg.models.hybrid_liver import DEFAULT_PREPROCESSING

    pre = dict(DEFAULT_PREPROCESSING, stage2_spacing_xyz=[1.5, 1.5, 2.5])
    stage1 = ThresholdNet(hu01(0), hu01(140))  # liver + lesions + other soft tissue
    stage2 = ThresholdNet(hu01(-5), hu01(70))  # lesions (and fat-free soft tissue outside the liver)
    image = phantom.ct.array.copy()
    seen = []
    labels = lc.run_hybrid(phantom.ct, stage1, stage2, pre, device="cpu",
                           progress=lambda f, t: seen.append(f))
    assert np.array_equal(phantom.ct.array, image)  # input untouched
    assert labels.shape == phantom.ct.shape and labels.dtype == np.uint8
    assert seen[-1] == 1.0 and all(b >= a - 1e-9 for a, b in zip(seen, seen[1:]))
    # lesions only inside the liver mask; liver is one connected component
    from scipy import ndimage

    assert ndimage.label(labels > 0, structure=np.ones((3, 3, 3)))[1] == 1
    truth = np.isin(phantom.labels, (1, 2))
    assert (labels == 2).sum() > 0 and ((labels == 2) & ~(labels > 0)).sum() == 0

    # flipped storage: the same anatomy stored with x and y reversed gives the flipped result
    flipped = Volume(phantom.ct.array[:, ::-1, ::-1].copy(), spacing=phantom.ct.spacing,
                     origin=phantom.ct.origin, direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))
    assert pp.canonical_flips(flipped) == (1, 2)
    labels_f = lc.run_hybrid(flipped, stage1, stage2, pre, device="cpu")
    assert np.array_equal(labels_f[:, ::-1, ::-1], labels)
    del truth


def test_cancel_raises_and_changes_nothing(phantom):
    from napari_medseg.errors import Cancelled
    from napari_medseg.models.hybrid_liver import DEFAULT_PREPROCESSING
    from napari_medseg.progress import CancelToken

    token = CancelToken()
    calls = []

    def progress(f, t):
        calls.append(f)
        if len(calls) == 3:
            token.cancel()

    before = phantom.ct.array.copy()
    with pytest.raises(Cancelled):
        lc.run_hybrid(phantom.ct, ThresholdNet(0, 1), ThresholdNet(0, 1), DEFAULT_PREPROCESSING,
                      device="cpu", progress=progress, cancel=token)
    assert np.array_equal(before, phantom.ct.array)


def test_map_nnunet_labels():
    raw = np.array([[[0, 1, 2, 3, 4]]])
    mapped, mapping = lc.map_nnunet_labels(raw, {0: "background", 1: "liver", 2: "liver_tumor",
                                                 3: "liver_vessel", 4: "spleen"})
    assert mapped.tolist() == [[[0, 1, 2, 0, 0]]] and mapping == {1: 1, 2: 2}
    mapped, _ = lc.map_nnunet_labels(raw, {0: "background", 3: "Lesion", 4: "Liver"})
    assert mapped.tolist() == [[[0, 0, 0, 2, 1]]]
    with pytest.raises(InvalidInputError, match="no class named 'liver'"):
        lc.map_nnunet_labels(raw, {1: "spleen", 2: "kidney"})


def test_nnunet_folder_route(tmp_path, one_thread):
    from napari_medseg.testing.nnunet import make_random_model_folder

    folder = make_random_model_folder(tmp_path / "m", n_classes=3, patch_size=(16, 16, 16),
                                      spacing=(4.0, 4.0, 4.0),
                                      label_names={"background": 0, "liver": 1, "liver_tumor": 2})
    ph = small_phantom(3)
    labels, table = lc.segment_liver(ph.ct, str(folder), device="cpu")
    assert labels.shape == ph.ct.shape and set(np.unique(labels)) <= {0, 1, 2}
    assert table.names == {1: "liver", 2: "liver_lesion"}


def test_drop_small_components_and_stage2_box():
    mask = np.zeros((6, 10, 10), bool)
    mask[1:4, 1:4, 1:4] = True  # 27 voxels of 2 mm^3 = 54 mm^3
    mask[5, 8, 8] = True  # 1 voxel = 2 mm^3
    kept = lc.drop_small_components(mask, (2.0, 1.0, 1.0), 20.0)
    assert kept.sum() == 27 and not kept[5, 8, 8]
    assert lc.drop_small_components(mask, (2.0, 1.0, 1.0), 0.0).sum() == 28
    pre = {"stage2_margin_mm": 2.0}
    assert pp.stage2_box(kept, (2.0, 1.0, 1.0), pre) == (slice(0, 5), slice(0, 6), slice(0, 6))
    assert pp.stage2_box(np.zeros((2, 2, 2), bool), (1, 1, 1), pre) is None


# --- bad input and faults


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


# --- CPU runtime: the stage networks compiled by OpenVINO, PyTorch the reference and fallback

@pytest.fixture
def compiled_dir(monkeypatch, tmp_path):
    """An empty disk cache and an empty in-process cache of compiled stage networks."""
    from collections import OrderedDict

    monkeypatch.setenv("MEDSEG_COMPILED_DIR", str(tmp_path / "compiled"))
    monkeypatch.setattr(lc, "_COMPILED", OrderedDict())
    return tmp_path / "compiled"


def _openvino_report():
    from napari_medseg.inference.runtimes import resolve_runtime

    pytest.importorskip("openvino")
    report = resolve_runtime("openvino", "cpu")
    assert report.used == "openvino", report.reason
    return report


@pytest.mark.parametrize("config", [TINY_NET, SYNTHETIC_TRAINED, dict(TINY_NET, norm="instance")],
                         ids=["random-tiny", "synthetic-trained", "instance-norm"])
def test_openvino_stage_network_matches_torch(config, compiled_dir, one_thread):
    from napari_medseg.testing import assert_close_to_scale

    net = random_net(config, seed=3)
    report = _openvino_report()
    # 37 x 42 is no multiple of the down-sampling factor (the network pads and crops)
    volume01 = np.random.default_rng(0).random((5, 37, 42), dtype=np.float32)
    x = torch.from_numpy(pp.slabs(volume01, [2], 1))
    fn = lc.compiled_stage_network(net, tuple(x.shape), report)
    assert fn is not None and report.compiled == 1 and report.used == "openvino"
    with torch.inference_mode():
        ref = net(x)
    out = fn(x)
    assert out.shape == ref.shape
    assert_close_to_scale(out, ref, name=f"OpenVINO hybrid-liver logits {config}")
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.999

    prob_ov = lc.predict_probability(net, volume01, device=torch.device("cpu"), batch_size=4,
                                     runtime_report=report)
    assert report.compiled == 1 and report.cache_hits == 1  # one slab's shape: compiled once
    prob_torch = lc.predict_probability(net, volume01, device=torch.device("cpu"), batch_size=4)
    assert_close_to_scale(prob_ov, prob_torch, name="OpenVINO probabilities")
    assert np.mean((prob_ov >= 0.5) == (prob_torch >= 0.5)) >= 0.999
    assert report.used == "openvino" and not report.reason


def test_cascade_with_openvino_labels_and_caches(compiled_dir, one_thread):
    from napari_medseg.models.hybrid_liver import models_from_checkpoint

    pytest.importorskip("openvino")
    ph = small_phantom(7)
    ckpt = tiny_checkpoint(ph)

    def run(runtime):
        stage1, stage2 = (m.eval() for m in models_from_checkpoint(ckpt))  # as a new load does
        info = {}
        labels = lc.run_hybrid(ph.ct, stage1, stage2, ckpt["preprocessing"], device="cpu",
                               runtime=runtime, info=info)
        return labels, info

    reference, info = run("torch")
    assert info["runtime"]["used"] == "torch" and info["runtime"]["compiled"] == 0
    assert {1, 2} <= set(np.unique(reference)) and "stage2_s" in info["timings"]  # both stages ran
    labels, info = run("openvino")
    assert info["runtime"] == {**info["runtime"], "requested": "openvino", "used": "openvino",
                               "reason": "", "compiled": 2, "cache_hits": 0}  # two stage shapes
    assert info["timings"]["convert_s"] > 0 and info["timings"]["stage2_s"] > 0
    assert np.mean(labels == reference) >= 0.999
    assert len(list(compiled_dir.glob("*.xml"))) == 2
    # the second click: new network objects, same weights -> this process' compiled models
    again, info = run("openvino")
    assert info["runtime"]["compiled"] == 0 and info["runtime"]["cache_hits"] == 2
    assert np.array_equal(again, labels)
    # another process (an empty in-process cache) reads the converted models from disk
    lc._COMPILED.clear()
    _, info = run("openvino")
    assert info["runtime"]["compiled"] == 0 and info["runtime"]["cache_hits"] == 2



def _fallback_case(monkeypatch, what):
    """Break OpenVINO the way ``what`` says; return the expected words of the reason."""
    import sys

    from napari_medseg.inference import runtimes
    from napari_medseg.inference.runtimes import openvino as ov_runtime

    if what == "not installed":
        monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
        return "OpenVINO is not installed"
    if what == "conversion error":
        def unsupported(*args, **kwargs):
            raise RuntimeError("Model wasn't fully converted: aten::mystery_op")

        monkeypatch.setattr(ov_runtime, "compile_torch_module", unsupported)
        return "could not compile the hybrid-liver stage 1 network (RuntimeError: Model wasn't"

    class Broken:  # compiles, then fails while running
        def __call__(self, x):
            raise RuntimeError("infer request failed")

    monkeypatch.setattr(runtimes, "compile_module", lambda *a, report, **k: Broken())
    return "OpenVINO failed while running the hybrid-liver stage 1 network (RuntimeError: infer"


@pytest.mark.parametrize("what", ["not installed", "conversion error", "runtime error"])
def test_cascade_falls_back_to_torch_with_the_reason(what, monkeypatch, compiled_dir, caplog,
                                                     one_thread):
    from napari_medseg.models.hybrid_liver import models_from_checkpoint

    ph = small_phantom(7)
    ckpt = tiny_checkpoint(ph)
    stage1, stage2 = (m.eval() for m in models_from_checkpoint(ckpt))
    reference = lc.run_hybrid(ph.ct, stage1, stage2, ckpt["preprocessing"], device="cpu",
                              runtime="torch")
    reason = _fallback_case(monkeypatch, what)
    info = {}
    with caplog.at_level("WARNING"):
        labels = lc.run_hybrid(ph.ct, stage1, stage2, ckpt["preprocessing"], device="cpu",
                               runtime="openvino", info=info)
    assert np.array_equal(labels, reference)  # torch finished the job: the same labels
    assert info["runtime"]["used"] == "torch" and info["runtime"]["requested"] == "openvino"
    assert reason in info["runtime"]["reason"], info["runtime"]["reason"]
    assert "PyTorch instead of OpenVINO" in caplog.text
    assert not lc._COMPILED  # nothing broken was kept for the next run


def test_segment_liver_reports_the_runtime_of_an_nnunet_model(tmp_path, one_thread):
    from napari_medseg.testing.nnunet import make_random_model_folder

    folder = make_random_model_folder(tmp_path / "m", n_classes=3, patch_size=(16, 16, 16),
                                      spacing=(4.0, 4.0, 4.0),
                                      label_names={"background": 0, "liver": 1, "liver_tumor": 2})
    info = {}
    lc.segment_liver(small_phantom(3).ct, str(folder), device="cpu", runtime="torch", info=info)
    assert info["runtime"]["requested"] == "torch" and info["runtime"]["used"] == "torch"
    assert "total_s" in info["timings"]
