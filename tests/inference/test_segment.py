"""segment(): TotalSegmentator part merging, roi_subset, ROI crop, custom nnU-Net folders.

The merge and crop logic is tested with a stand-in for the network (``_predict_folder``)
that returns known local ids, on a fake TotalSegmentator weights layout; one test runs a
real (small, random-weight) nnU-Net folder end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_medseg.errors import InvalidInputError, WeightsNotFoundError
from napari_medseg.errors import (Cancelled, InsufficientMemoryError, InvalidInputError,
                                  WeightsNotFoundError)
from napari_medseg.inference import segment as seg_mod
from napari_medseg.inference.segment import segment, segment_with_info
from napari_medseg.io.volume import Volume
from napari_medseg.models import totalseg_classes as tsc
from napari_medseg.models import weights as wm
from napari_medseg.models.registry import get_card
from napari_medseg.progress import CancelToken


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_WEIGHTS_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "no-totalseg"))


def install_fake(card_name: str) -> Path:
    """A complete (fake) weights layout for a TotalSegmentator card in the cache."""
    card = get_card(card_name)
    root = wm.install_root(card)
    folders = [p.folder for p in card.parts] or [card.files[0].target]
    for folder in folders:
        d = root / folder / card.model_folder_name
        (d / "fold_0").mkdir(parents=True)
        (d / "dataset.json").write_text(json.dumps({"labels": {"background": 0}}))
        (d / "plans.json").write_text("{}")
        (d / "fold_0" / "checkpoint_final.pth").write_bytes(b"x")
    return root


@pytest.fixture
def ct():
    arr = np.full((20, 40, 50), -100, np.int16)
    return Volume(arr, spacing=(2.0, 2.0, 3.0), origin=(10.0, -5.0, 7.0), modality="CT")


class FakeNets:
    """Stand-in for _predict_folder: each dataset folder predicts known local ids."""

    def __init__(self, liver_box=None):
        self.calls = []
        self.runtimes = []
        self.liver_box = liver_box

    def __call__(self, folder, volume, *, device, folds, use_mirroring, progress, cancel,
                 runtime="auto", result=None, confidence=False, temperature=1.0):
        assert not confidence, "these tests run without confidence maps"
        self.runtimes.append(runtime)
        name = Path(folder).parent.name
        self.calls.append((name, volume.shape, tuple(volume.origin)))
        out = np.zeros(volume.shape, np.uint8)
        if name.startswith("Dataset298"):  # 6 mm rough model: global ids; liver in a box
            if self.liver_box is not None:
                out[self.liver_box] = 5
            return out, {}
        if name.startswith("Dataset008"):
            out[...] = 1  # liver vessels everywhere in the crop
            return out, {}
        if name.startswith("Dataset291"):
            out[:, :10] = 5  # liver (local 5)
            out[:, 10:12] = 1  # spleen (local 1)
        elif name.startswith("Dataset292"):
            out[:, 12:14] = 7  # vertebrae_L1 (local 7)
        elif name.startswith("Dataset293"):
            out[:, 14:16] = 2  # aorta (local 2)
            out[:, 0:2] = 1  # heart (local 1) overlapping the organs part's liver
        elif name.startswith("Dataset294"):
            out[:, 16:18] = 22  # brain (local 22)
        elif name.startswith("Dataset295"):
            out[:, 18:20] = 26  # costal cartilages (local 26)
        return out, {}


def test_total_parts_merge_into_global_ids(ct, monkeypatch):
    install_fake("total")
    fake = FakeNets()
    monkeypatch.setattr(seg_mod, "_predict_folder", fake)
    labels, table = segment(ct, "total")
    assert [c[0][:10] for c in fake.calls] == ["Dataset291", "Dataset292", "Dataset293",
                                               "Dataset294", "Dataset295"]
    expect = {"liver": 5, "spleen": 1, "vertebrae_L1": 31, "aorta": 52, "heart": 51,
              "brain": 90, "costal_cartilages": 117}
    for name, gid in expect.items():
        assert tsc.TOTAL[gid] == name
        assert (labels == gid).any(), name
    assert labels[0, 0, 0] == 51  # the later part (cardiac) wins where parts overlap
    assert labels[0, 5, 0] == 5
    assert table.names == tsc.TOTAL and labels.dtype == np.uint8


def test_roi_subset_runs_only_needed_parts_without_crop_model(ct, monkeypatch):
    install_fake("total")
    fake = FakeNets()
    monkeypatch.setattr(seg_mod, "_predict_folder", fake)
    res = segment_with_info(ct, "total", roi_subset=["aorta", "liver"])
    assert [c[0][:10] for c in fake.calls] == ["Dataset291", "Dataset293"]
    assert set(np.unique(res.labels)) == {0, 5, 52}
    assert res.table.names == {5: "liver", 52: "aorta"}
    assert any("total-fastest" in n for n in res.notes)  # ran on the whole image, said so
    assert all(c[1] == ct.shape for c in fake.calls)


def test_roi_subset_crops_to_the_rough_models_box(ct, monkeypatch):
    install_fake("total")
    install_fake("total-fastest")
    box = (slice(5, 8), slice(10, 20), slice(20, 30))
    fake = FakeNets(liver_box=box)
    monkeypatch.setattr(seg_mod, "_predict_folder", fake)
    card = get_card("total")
    res = segment_with_info(ct, "total", roi_subset=["liver"])
    assert fake.calls[0][0].startswith("Dataset298") and fake.calls[0][1] == ct.shape
    name, shape, origin = fake.calls[1]
    m = card.crop_margin_vox
    lo = [max(0, s.start - m) for s in box]
    hi = [min(n, s.stop + m) for s, n in zip(box, ct.shape)]
    assert shape == tuple(h - l for l, h in zip(lo, hi))
    assert np.allclose(origin, ct.index_to_physical(lo))
    assert len(fake.calls) == 2  # rough model + organs part only
    # Pasted back on the full grid: liver only inside the crop.
    inside = np.zeros(ct.shape, bool)
    inside[tuple(slice(l, h) for l, h in zip(lo, hi))] = True
    assert (res.labels[~inside] == 0).all() and (res.labels[inside] == 5).any()


def test_cropped_task_needs_its_crop_model(ct, monkeypatch):
    install_fake("liver-vessels")
    monkeypatch.setattr(seg_mod, "_predict_folder", FakeNets())
    with pytest.raises(WeightsNotFoundError, match="medseg weights download total-fastest"):
        segment(ct, "liver-vessels")


def test_cropped_task_runs_in_liver_box(ct, monkeypatch):
    install_fake("liver-vessels")
    install_fake("total-fastest")
    box = (slice(0, 20), slice(0, 5), slice(0, 5))
    fake = FakeNets(liver_box=box)
    monkeypatch.setattr(seg_mod, "_predict_folder", fake)
    labels, table = segment(ct, "liver-vessels")
    assert table.names == {1: "liver_vessels", 2: "liver_tumor"}
    m = get_card("liver-vessels").crop_margin_vox
    assert fake.calls[1][1] == (20, min(40, 5 + m), min(50, 5 + m))
    assert labels[:, :5 + m, :5 + m].all() and not labels[:, 5 + m:, :].any()


def test_cropped_task_with_no_liver_found_is_empty(ct, monkeypatch):
    install_fake("liver-vessels")
    install_fake("total-fastest")
    monkeypatch.setattr(seg_mod, "_predict_folder", FakeNets(liver_box=None))
    res = segment_with_info(ct, "liver-vessels")
    assert not res.labels.any() and any("not found" in n for n in res.notes)


def test_explicit_weights_folder(ct, monkeypatch, tmp_path):
    install_fake("total-fast")
    moved = tmp_path / "elsewhere"
    wm.install_root("total-fast").rename(moved)
    fake = FakeNets()
    monkeypatch.setattr(seg_mod, "_predict_folder", fake)
    with pytest.raises(WeightsNotFoundError):
        segment(ct, "total-fast")
    segment(ct, "total-fast", weights=moved)
    assert fake.calls[0][0].startswith("Dataset297")


def test_custom_nnunet_folder_end_to_end(tmp_path, one_torch_thread):
    from napari_medseg.testing.nnunet import make_random_model_folder

    folder = make_random_model_folder(
        tmp_path / "Dataset777_mine", n_classes=3, patch_size=(16, 16, 16), spacing=(4.0, 4.0, 4.0),
        base_features=4, max_features=8, label_names={"background": 0, "tumour": 1, "cyst": 2})
    rng = np.random.default_rng(0)
    vol = Volume(rng.normal(0, 100, (12, 24, 20)).astype(np.float32), spacing=(3.0, 3.5, 4.0),
                 origin=(1.0, 2.0, 3.0), modality="CT")
    steps = []
    for model in (folder, folder.parent):  # trained-model folder or its dataset folder
        labels, table = segment(vol, model, device="cpu", progress=lambda f, t: steps.append(f))
        assert labels.shape == vol.shape and labels.dtype == np.uint8
        assert set(np.unique(labels)) <= {0, 1, 2}
        assert table.names == {1: "tumour", 2: "cyst"}
    assert steps[-1] == 1.0


def test_inference_never_loads_triton(tmp_path, one_torch_thread):
    """triton bundles its own LLVM; loaded next to napari's OpenGL (Mesa's LLVM) it segfaults.

    A fresh interpreter runs a model folder through segment() and reports whether anything
    imported triton (torch.optim / torch._dynamo would).
    """
    import subprocess
    import sys

    from napari_medseg.testing.nnunet import make_random_model_folder

    folder = make_random_model_folder(tmp_path / "D", n_classes=2, patch_size=(16, 16, 16),
                                      spacing=(4.0, 4.0, 4.0), base_features=4, max_features=8)
    code = (
        "import sys, numpy as np, torch\n"
        "torch.set_num_threads(1)\n"
        "from napari_medseg.inference.segment import segment\n"
        "from napari_medseg.io.volume import Volume\n"
        "v = Volume(np.zeros((8, 16, 16), np.float32), spacing=(4, 4, 4), modality='CT')\n"
        f"segment(v, {str(folder)!r}, device='cpu')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'triton'"
        " or m.startswith('torch._dynamo')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_custom_folder_refuses_roi_subset(tmp_path, ct):
    (tmp_path / "plans.json").write_text("{}")
    with pytest.raises(InvalidInputError, match="roi_subset works with registry models"):
        segment(ct, tmp_path, roi_subset=["liver"])


# --- bad input and faults


def make_ct(shape=(12, 40, 40), value=40, dtype=np.int16) -> Volume:
    arr = np.full(shape, -1000, dtype)
    z, y, x = shape
    arr[:, y // 4: 3 * y // 4, x // 4: 3 * x // 4] = value
    return Volume(arr, spacing=(2.0, 2.0, 3.0), modality="CT")


def nan_ct() -> Volume:
    v = make_ct(dtype=np.float32)
    v.array[3, 5, 5] = np.nan
    return v


CASES = [
    # (id, volume factory, kwargs, error type, message regex)
    ("2D image", lambda: make_ct((1, 40, 40)), {}, InvalidInputError, r"2D image \(one slice\)"),
    ("NaN voxels", nan_ct, {}, InvalidInputError, r"1 NaN/Inf voxel"),
    ("bool image", lambda: Volume(np.ones((4, 8, 8), bool)), {}, InvalidInputError, "needs numbers"),
    ("unknown model", make_ct, {"model": "totalsegmentator"}, InvalidInputError, "unknown model"),
    ("model typo", make_ct, {"model": "total-fats"}, InvalidInputError, "did you mean 'total-fast'"),
    ("structure typo", make_ct, {"roi_subset": ["lugn"]}, InvalidInputError, "did you mean 'lung'"),
    ("empty roi", make_ct, {"roi_subset": []}, InvalidInputError, "roi_subset is empty"),
    ("total typo", make_ct, {"model": "total", "roi_subset": ["livr", "aorta"]}, InvalidInputError,
     "did you mean 'liver'"),
    ("promptable model", make_ct, {"model": "sam-med3d-turbo"}, InvalidInputError, "promptable"),
    ("missing weights", make_ct, {"model": "total-fast"}, WeightsNotFoundError,
     "medseg weights download total-fast"),
    ("missing folder", make_ct, {"model": "/no/such/model"}, InvalidInputError, "does not exist"),
    ("not a model folder", make_ct, {"model": "."}, InvalidInputError, "not an nnU-Net v2 model folder"),
    ("bad weights path", make_ct, {"model": "total-fast", "weights": "/no/such/dir"},
     WeightsNotFoundError, "does not exist"),
]


@pytest.mark.parametrize("case, make, kwargs, error, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_clear_error_and_changes_nothing(case, make, kwargs, error, message):
    volume = make()
    before = volume.array.copy()
    with pytest.raises(error, match=message):
        segment(volume, **kwargs)
    np.testing.assert_array_equal(volume.array, before)


def test_memory_refusal_before_starting(monkeypatch):
    monkeypatch.setenv("MEDSEG_AVAILABLE_MEMORY", str(10 * 2**20))  # 10 MiB
    volume = make_ct()
    steps = []
    with pytest.raises(InsufficientMemoryError, match=r"needs about .* GiB of memory"):
        segment(volume, progress=lambda f, t: steps.append(t))
    assert not any("body" in s for s in steps)  # refused before the first stage


def test_forced_missing_device_is_refused(monkeypatch, tmp_path):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    (tmp_path / "plans.json").write_text("{}")
    with pytest.raises(InvalidInputError, match="(?i)cuda"):
        segment(make_ct(), tmp_path, device="cuda")


def test_cancel_raises_and_leaves_input_unchanged():
    volume = make_ct((20, 64, 64))
    before = volume.array.copy()
    token = CancelToken()

    def progress(fraction, text):
        if fraction > 0.2:
            token.cancel()

    with pytest.raises(Cancelled):
        segment(volume, progress=progress, cancel=token)
    np.testing.assert_array_equal(volume.array, before)
    token.reset()
    labels, _ = segment(volume, cancel=token)  # a rerun works
    assert labels.any()


# ---------------------------------------------------------------- network runtime
def test_runtime_reaches_every_part_model_and_a_fallback_is_noted(ct, monkeypatch, model_factory,
                                                                   one_torch_thread):
    """``runtime=`` goes to every part model of a task; on a model folder a forced
    OpenVINO without OpenVINO installed runs torch, with the reason in notes and
    ``result.runtime`` (never a failure)."""
    import sys

    install_fake("total")
    real = seg_mod._predict_folder
    fake = FakeNets()
    monkeypatch.setattr(seg_mod, "_predict_folder", fake)
    segment_with_info(ct, "total", runtime="torch")
    assert len(fake.runtimes) == 5 and set(fake.runtimes) == {"torch"}
    monkeypatch.setattr(seg_mod, "_predict_folder", real)

    folder = model_factory(n_classes=3, seed=2)
    rng = np.random.default_rng(0)
    vol = Volume(rng.normal(0, 300, (24, 48, 48)).astype(np.int16), spacing=(3.0, 3.0, 3.0))
    monkeypatch.setitem(sys.modules, "openvino", None)
    res = segment_with_info(vol, folder, device="cpu", runtime="openvino")
    assert res.runtime["requested"] == "openvino" and res.runtime["used"] == "torch"
    assert any("not OpenVINO" in n and "napari-medseg[openvino]" in n for n in res.notes)
    assert res.timings["convert_s"] == 0.0
    with pytest.raises(InvalidInputError, match="unknown runtime"):
        segment_with_info(vol, folder, runtime="tensorrt")


# --------------------------------------------------------------------- MRI: deepbet
def _mni_paths():
    pytest.importorskip("deepbet", reason="deepbet is not installed (pip install -e '.[mri]')")
    nilearn = pytest.importorskip("nilearn", reason="nilearn (the MNI152 template) is not installed")
    data = Path(nilearn.__file__).parent / "datasets" / "data"
    return {k: data / f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz" for k in ("t1", "gm", "wm")}


def _dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


def brain_reference(paths) -> np.ndarray:
    """The template's filled grey + white matter mask (probabilities summed, > 0.2), zyx."""
    from scipy.ndimage import binary_fill_holes

    from napari_medseg.io.readers import read_volume

    gm = read_volume(paths["gm"]).array.astype(np.float32)
    wm_ = read_volume(paths["wm"]).array.astype(np.float32)
    return binary_fill_holes((gm + wm_) > 0.2)


@pytest.mark.slow
def test_deepbet_extracts_the_brain_of_the_mni_template():
    from napari_medseg.io.readers import read_volume

    paths = _mni_paths()
    volume = read_volume(paths["t1"])
    assert volume.shape == (189, 233, 197)
    res = segment_with_info(volume, "deepbet", device="cpu")
    assert res.labels.shape == volume.shape and res.labels.dtype == np.uint8
    assert res.table.names == {1: "brain"}
    dice = _dice(res.labels == 1, brain_reference(paths))
    # deepbet's own code gives 0.977 against this reference; the plugin must match it
    assert dice >= 0.97, dice
    assert any("brain volume" in n for n in res.notes)


@pytest.mark.slow
def test_deepbet_on_a_flipped_and_permuted_copy_gives_the_same_mask_in_physical_space(tmp_path):
    import nibabel as nib

    from napari_medseg.io.readers import read_volume

    paths = _mni_paths()
    img = nib.load(str(paths["t1"]))
    # voxel axes reordered (x, z, y) and the first two flipped; the affine follows, so
    # every voxel keeps its physical position
    ornt = np.array([[0, -1], [2, -1], [1, 1]])
    data = nib.orientations.apply_orientation(np.asarray(img.dataobj), ornt)
    affine = img.affine @ nib.orientations.inv_ornt_aff(ornt, img.shape)
    moved = tmp_path / "t1_flipped_permuted.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(moved))

    a = segment(read_volume(paths["t1"]), "deepbet", device="cpu")[0]
    b_vol = read_volume(moved)
    assert b_vol.shape != a.shape  # the copy really is stored differently
    b = segment(b_vol, "deepbet", device="cpu")[0]
    # back to the original voxel order (xyz arrays for nibabel's orientation tools)
    back = nib.orientations.apply_orientation(
        b.transpose(2, 1, 0), nib.orientations.ornt_transform(
            nib.orientations.io_orientation(affine), nib.orientations.io_orientation(img.affine)))
    back = back.transpose(2, 1, 0)
    assert back.shape == a.shape
    assert np.mean(back == a) >= 0.999
    assert _dice(back == 1, a == 1) >= 0.995


def test_deepbet_refuses_weights_and_is_listed_installed():
    pytest.importorskip("deepbet", reason="deepbet is not installed (pip install -e '.[mri]')")
    with pytest.raises(InvalidInputError, match="inside the installed deepbet package"):
        segment(Volume(np.zeros((8, 8, 8), np.float32)), "deepbet", weights="/tmp/x")
    info = wm.describe("deepbet")
    assert info["installed"] and "deepbet package" in info["source"]


def test_deepbet_archives_come_from_the_installed_package_and_a_modified_one_is_refused(
        tmp_path, monkeypatch):
    pytest.importorskip("deepbet", reason="deepbet is not installed (pip install -e '.[mri]')")
    import importlib.metadata as md
    import shutil

    from napari_medseg.models import deepbet as db

    paths = db.archive_paths()
    assert set(paths) == {"bbox", "model"}
    site = Path(md.distribution("deepbet").locate_file(""))
    assert all(p.is_relative_to(site) and p.suffix == ".pt" for p in paths.values())
    # a copy of the distribution whose model.pt was changed after installation
    dist = md.distribution("deepbet")
    fake_root = tmp_path / "site"
    for f in dist.files:
        src = Path(dist.locate_file(f))
        if src.is_file() and (str(f).startswith("data/models") or ".dist-info" in str(f)):
            dst = fake_root / f
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    with open(fake_root / "data/models/model.pt", "ab") as fh:
        fh.write(b"tampered")
    fake = md.PathDistribution(next((fake_root).glob("deepbet-*.dist-info")))
    monkeypatch.setattr(db, "_distribution", lambda: fake)
    with pytest.raises(InvalidInputError, match="modified after installation"):
        db.archive_paths()


# ----------------------------------------------------------- multi-sequence models
@pytest.fixture(scope="module")
def two_channel_folder(tmp_path_factory):
    pytest.importorskip("torch")
    from napari_medseg.testing.nnunet import make_random_model_folder

    return make_random_model_folder(tmp_path_factory.mktemp("t1t2"), n_classes=3,
                                    normalization="ZScoreNormalization",
                                    channel_names=("T1", "T2"), patch_size=(16, 16, 16),
                                    spacing=(3.0, 3.0, 3.0))


def _mr_pair():
    rng = np.random.default_rng(5)
    z, y, x = np.mgrid[0:20, 0:24, 0:24]
    blob = ((z - 10) ** 2 + (y - 12) ** 2 + (x - 11) ** 2) < 40
    t1 = (300 + 500 * blob + rng.normal(0, 20, blob.shape)).astype(np.float32)
    t2 = (900 - 400 * blob + rng.normal(0, 20, blob.shape)).astype(np.float32)
    geo = dict(spacing=(3.0, 3.0, 3.0), origin=(5.0, -3.0, 2.0), modality="MR")
    return Volume(t1, **geo), Volume(t2, **geo)


def test_two_channel_model_takes_named_images_in_any_order(two_channel_folder):
    from napari_medseg.inference.segment import model_channels
    from napari_medseg.testing.nnunet import reference_predict

    t1, t2 = _mr_pair()
    assert model_channels(two_channel_folder) == {0: "T1", 1: "T2"}
    by_list = segment([t1, t2], two_channel_folder)[0]
    by_name = segment({"t2": t2, "T1": t1}, two_channel_folder)[0]
    assert np.array_equal(by_list, by_name)
    swapped = segment([t2, t1], two_channel_folder)[0]
    assert not np.array_equal(swapped, by_list)  # the channel order reaches the network
    # parity with nnunetv2 on the stacked channels
    pytest.importorskip("nnunetv2")
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    pred = nnUNetPredictor(tile_step_size=0.5, use_mirroring=True, perform_everything_on_device=False,
                           device=torch.device("cpu"), verbose=False, allow_tqdm=False)
    pred.initialize_from_trained_model_folder(str(two_channel_folder), use_folds=(0,))
    ref = pred.predict_single_npy_array(np.stack([t1.array, t2.array]),
                                        {"spacing": list(t1.spacing_zyx)})
    assert np.mean(ref == by_list) >= 0.999
    del reference_predict


def test_channel_on_another_grid_is_resampled_with_a_warning(two_channel_folder):
    t1, t2 = _mr_pair()
    same = segment_with_info([t1, t2], two_channel_folder)
    assert not any("resampled" in n for n in same.notes)
    # T2 acquired at half the resolution: resampled onto T1's grid, never silently
    coarse = Volume(t2.array[::2, ::2, ::2].copy(), spacing=(6.0, 6.0, 6.0), origin=t2.origin,
                    modality="MR")
    res = segment_with_info({"T1": t1, "T2": coarse}, two_channel_folder)
    assert res.labels.shape == t1.shape
    assert any("T2" in n and "resampled onto it" in n for n in res.notes)
    from napari_medseg.inference.segment import channels_onto_first_grid

    (_, on_t1), warnings = channels_onto_first_grid([t1, coarse], ["T1", "T2"])
    assert on_t1.same_grid(t1) and len(warnings) == 1
    # the resampled T2 shows the same anatomy where the coarse grid covers T1's
    inside = (slice(2, 16), slice(2, 20), slice(2, 20))
    assert np.corrcoef(on_t1.array[inside].ravel(), t2.array[inside].ravel())[0, 1] > 0.9
    assert np.array_equal(res.labels, segment([t1, on_t1], two_channel_folder)[0])


# --- bad input and faults (multi-sequence)
def test_missing_or_unknown_channel_is_a_clear_error(two_channel_folder):
    t1, t2 = _mr_pair()
    with pytest.raises(InvalidInputError, match=r"missing: T2.*--channel-image"):
        segment({"T1": t1}, two_channel_folder)
    with pytest.raises(InvalidInputError, match=r"missing: T2"):
        segment(t1, two_channel_folder)
    with pytest.raises(InvalidInputError, match=r"no channel named 'FLAIR'.*T1, T2"):
        segment({"T1": t1, "FLAIR": t2}, two_channel_folder)
    with pytest.raises(InvalidInputError, match="takes 2 image"):
        segment([t1, t2, t2], two_channel_folder)
