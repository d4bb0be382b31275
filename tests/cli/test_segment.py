"""``medseg segment``: files written with the source geometry, JSON, the mistakes users make, the output guard."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from napari_medseg.cli import main
from napari_medseg.io import read_labels, read_volume, sidecar_path, write_volume
from napari_medseg.phantom import make_phantom

from ._run import digest, medseg
from ._run import digest, medseg, refused


# --- bad input and faults


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_WEIGHTS_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "no-totalseg"))


def _one_line_error(res, *fragments):
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    for fragment in fragments:
        assert fragment in res.stderr, res.stderr


# ---------------------------------------------------------------- silent options
def test_hu_tissue_refuses_weights_and_gpu_devices(sample, tmp_path):
    out = tmp_path / "seg.nii.gz"
    _one_line_error(medseg("segment", sample["ct"], "-o", out, "--weights", tmp_path),
                    "'hu-tissue' model needs no weights")
    for device in ("cuda", "mps"):
        _one_line_error(medseg("segment", sample["ct"], "-o", out, "--device", device),
                        "runs on the CPU only", f"device '{device}' does not apply")
    assert not out.exists()
    assert medseg("segment", sample["ct"], "-o", out, "--device", "cpu").returncode == 0


def test_missing_gpu_is_refused_for_network_models(sample, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: --device cuda is legitimately accepted")
    res = medseg("segment", sample["ct"], "-o", tmp_path / "s.nii.gz", "--model", "total-fast",
                 "--device", "cuda")
    _one_line_error(res, "no CUDA GPU is usable here", "cpu")


def test_wrong_roi_name_lists_the_valid_names(sample, tmp_path):
    res = medseg("segment", sample["ct"], "-o", tmp_path / "s.nii.gz", "--roi-subset", "lnug,fat")
    _one_line_error(res, "'lnug'; did you mean 'lung'?", "Valid names (7):", "subcutaneous_fat",
                    "visceral_fat", "skeletal_muscle")


# ------------------------------------------------------------ wrong kind of image
def test_hu_tissue_refuses_a_label_map(sample, tmp_path):
    res = medseg("segment", sample["labels"], "-o", tmp_path / "s.nii.gz")
    _one_line_error(res, "looks like a label map, not a CT", "18 distinct whole values")
    assert not (tmp_path / "s.nii.gz").exists()


def test_hu_tissue_refuses_values_that_are_not_hu(sample, tmp_path):
    from napari_medseg.io import read_volume, write_volume

    ct = read_volume(sample["ct"])
    mr_like = ct.with_array(((ct.array.astype(np.float32) + 1024.0) * 2.7).astype(np.float32))
    write_volume(mr_like, tmp_path / "t1.nii.gz")
    res = medseg("segment", tmp_path / "t1.nii.gz", "-o", tmp_path / "s.nii.gz")
    _one_line_error(res, "does not look like a CT in Hounsfield units", "MR")
    # a DICOM MR names its modality: refused with a pointer to what does work on MR
    from napari_medseg.errors import InvalidInputError
    from napari_medseg.inference.segment import segment

    with pytest.raises(InvalidInputError, match="is MR. For MRI use the interactive backends"):
        segment(ct.with_array(mr_like.array, modality="MR"), "hu-tissue")


def test_hu_tissue_refuses_the_real_label_map(shared_data, tmp_path):
    res = medseg("segment", shared_data / "totalseg_example" / "example_seg.nii.gz",
                 "-o", tmp_path / "s.nii.gz")
    _one_line_error(res, "looks like a label map")


# ------------------------------------------------------------------------ timings
def test_total_s_is_the_whole_command(shared_data, tmp_path):
    ct = shared_data / "totalseg_example" / "example_ct_sm.nii.gz"
    before = digest(ct)
    res = medseg("segment", ct, "-o", tmp_path / "s.nii.gz", "--json")
    assert res.returncode == 0, res.stderr
    t = json.loads(res.stdout)["timings"]
    stages = t["read_s"] + t["segment_s"] + t["write_s"]
    assert t["total_s"] >= stages - 0.003  # rounding of four numbers to 1 ms
    assert t["read_s"] > 0 and t["write_s"] > 0 and t["segment_s"] > 0
    assert digest(ct) == before


# --- bad input and faults


@pytest.mark.parametrize("spelling", ["a.nii.gz", "./a/../a.nii.gz", "link.nii.gz", "hard.nii.gz",
                                      "{abs}"])
def test_segment_output_equal_to_input_is_refused(work, spelling):
    (work / "link.nii.gz").symlink_to(work / "a.nii.gz")
    os.link(work / "a.nii.gz", work / "hard.nii.gz")
    before = digest(work / "a.nii.gz")
    out = spelling.format(abs=work / "a.nii.gz")
    res = medseg("segment", "a.nii.gz", "-o", out, cwd=work)
    refused(res, "a.nii.gz")
    assert digest(work / "a.nii.gz") == before
    assert (work / "link.nii.gz").is_symlink()  # the link itself was not replaced either
    assert not list(work.glob(".medseg-tmp-*"))


def test_segment_through_a_symlinked_input_is_refused(work):
    (work / "link.nii.gz").symlink_to(work / "a.nii.gz")
    before = digest(work / "a.nii.gz")
    refused(medseg("segment", "link.nii.gz", "-o", "a.nii.gz", cwd=work), "symbolic link")
    assert digest(work / "a.nii.gz") == before


def test_segment_to_another_file_still_works(work):
    before = digest(work / "a.nii.gz")
    res = medseg("segment", "a.nii.gz", "-o", "a_labels.nii.gz", cwd=work)
    assert res.returncode == 0, res.stderr
    assert (work / "a_labels.nii.gz").is_file() and digest(work / "a.nii.gz") == before


@pytest.fixture(scope="module")
def ct_file(tmp_path_factory):
    ph = make_phantom(seed=4, shape=(20, 64, 64), spacing_zyx=(5.0, 3.0, 3.0))
    vol = ph.ct
    # An oblique-free but flipped, offset geometry: the output must reproduce it exactly.
    vol = vol.__class__(vol.array, spacing=vol.spacing, origin=(12.5, -40.0, 100.0),
                        direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1), modality="CT")
    path = tmp_path_factory.mktemp("ct") / "ct.nii.gz"
    write_volume(vol, path)
    return path


def test_segment_json_and_geometry(ct_file, tmp_path, capsys):
    out = tmp_path / "seg.nii.gz"
    assert main(["segment", str(ct_file), "-o", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["output"] == str(out) and doc["model"] == "hu-tissue"
    names = {d["name"] for d in doc["labels"]}
    assert {"lung", "bone", "subcutaneous_fat", "skeletal_muscle"} <= names
    assert all(d["voxels"] > 0 and d["volume_ml"] > 0 for d in doc["labels"])
    assert "total_s" in doc["timings"] and "read_s" in doc["timings"]
    src = read_volume(ct_file)
    labels, table = read_labels(out, reference=src)
    assert labels.same_grid(src)
    assert sidecar_path(out).exists()
    assert table.names.get(5) == "lung"
    counts = {d["id"]: d["voxels"] for d in doc["labels"]}
    assert counts[5] == int((labels.array == 5).sum())


def test_segment_roi_subset_text_output(ct_file, tmp_path, capsys):
    out = tmp_path / "lung.nrrd"
    assert main(["segment", str(ct_file), "-o", str(out), "--roi-subset", "lung"]) == 0
    text = capsys.readouterr().out
    assert "wrote" in text and "lung" in text
    labels, _ = read_labels(out)
    assert set(np.unique(labels.array)) == {0, 5}


def test_segment_missing_weights_is_one_line_exit_2(ct_file, tmp_path, capsys):
    out = tmp_path / "x.nii.gz"
    assert main(["segment", str(ct_file), "-o", str(out), "--model", "total-fast"]) == 2
    err = capsys.readouterr().err
    assert "medseg weights download total-fast" in err and "Traceback" not in err
    assert not out.exists()


def test_segment_bad_structure_exit_2(ct_file, tmp_path, capsys):
    out = tmp_path / "x.nii.gz"
    assert main(["segment", str(ct_file), "-o", str(out), "--roi-subset", "lnug"]) == 2
    assert "did you mean 'lung'" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------- --runtime
def test_runtime_openvino_converts_once_and_matches_torch(model_factory, ct_small, tmp_path):
    """Three runs of a model folder: OpenVINO converts (convert_s reported), the second
    process reads the cache (nothing compiled), torch gives the same labels."""
    pytest.importorskip("openvino")
    env_dir = tmp_path / "compiled"
    folder = model_factory(n_classes=4, spacing=(5.0, 6.0, 6.0), seed=1)
    ct = tmp_path / "ct.nii.gz"
    write_volume(ct_small, ct)
    docs = []
    for i, runtime in enumerate(["openvino", "openvino", "torch", "auto"]):
        res = _medseg_env({"MEDSEG_COMPILED_DIR": str(env_dir)}, "segment", ct, "-o",
                          tmp_path / f"s{i}.nii.gz", "--model", folder, "--runtime", runtime,
                          "--device", "cpu", "--json")
        assert res.returncode == 0, res.stderr
        docs.append(json.loads(res.stdout))
    first, second, ref, auto = (d["runtime"] for d in docs)
    assert first["used"] == "openvino" and first["compiled"] == 1 and first["convert_s"] > 0
    assert docs[0]["timings"]["convert_s"] == first["convert_s"]
    assert second["used"] == "openvino" and second["compiled"] == 0 and second["cache_hits"] == 1
    assert ref == {"requested": "torch", "used": "torch", "reason": "", "convert_s": 0.0,
                   "compiled": 0, "cache_hits": 0}
    # auto finds the model in the cache: OpenVINO, nothing converted
    assert auto["used"] == "openvino" and auto["compiled"] == 0 and auto["cache_hits"] == 1
    labels = [read_labels(tmp_path / f"s{i}.nii.gz", reference=ct_small)[0].array for i in range(4)]
    assert np.array_equal(labels[0], labels[1]) and np.array_equal(labels[0], labels[3])
    assert float((labels[0] == labels[2]).mean()) >= 0.999
    assert len(np.unique(labels[2])) >= 2  # not a void comparison


def _medseg_env(env: dict, *args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "napari_medseg.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, **env})


# --- bad input and faults
def test_unknown_runtime_is_one_line_exit_2(ct_file, tmp_path):
    res = medseg("segment", ct_file, "-o", tmp_path / "x.nii.gz", "--runtime", "onnx")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "--runtime" in res.stderr and "openvino" in res.stderr
    assert not (tmp_path / "x.nii.gz").exists()


# ---------------------------------------------------------------- --confidence
def test_confidence_map_and_review_flags(model_factory, synthetic_ct, tmp_path):
    """--confidence writes a float32 map on the source grid, --json gains per-structure
    figures and flags, and the labels equal those of a run without it."""
    folder = model_factory(n_classes=4, seed=4)
    ct = tmp_path / "ct.nii.gz"
    write_volume(synthetic_ct, ct)
    plain = medseg("segment", ct, "-o", tmp_path / "plain.nii.gz", "--model", folder,
                   "--runtime", "torch", "--device", "cpu")
    assert plain.returncode == 0, plain.stderr
    res = medseg("segment", ct, "-o", tmp_path / "seg.nii.gz", "--model", folder, "--runtime",
                 "torch", "--device", "cpu", "--confidence", tmp_path / "conf.nii.gz", "--json",
                 "--review-threshold", "mean=0.95")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    conf = read_volume(tmp_path / "conf.nii.gz")
    assert doc["confidence"] == str(tmp_path / "conf.nii.gz")
    assert conf.array.dtype == np.float32 and conf.shape == synthetic_ct.shape
    assert np.allclose(conf.spacing, synthetic_ct.spacing) and np.allclose(conf.origin, synthetic_ct.origin)
    assert 0.25 - 1e-6 <= conf.array.min() and conf.array.max() <= 1 + 1e-6 and conf.array.std() > 1e-3
    seg = read_labels(tmp_path / "seg.nii.gz", reference=synthetic_ct)[0].array
    ref = read_labels(tmp_path / "plain.nii.gz", reference=synthetic_ct)[0].array
    assert np.array_equal(seg, ref)
    assert doc["labels"] and doc["review_thresholds"]["mean"] == 0.95
    for item in doc["labels"]:
        mask = seg == item["id"]
        assert item["mean_confidence"] == pytest.approx(float(conf.array[mask].mean()), abs=1e-3)
        assert 0 <= item["fraction_below"] <= 1 and 0 <= item["boundary_confidence"] <= 1
        assert item["review"] == (item["name"] in doc["review"])
        assert item["review"] == bool(item["reasons"])
    # a stricter mean threshold flags at least as many structures
    assert set(doc["review"]) >= {i["name"] for i in doc["labels"] if i["mean_confidence"] < 0.95}


def test_confidence_mistakes_are_refused_before_anything_is_written(ct_file, tmp_path, sample):
    out = tmp_path / "x.nii.gz"
    before = digest(ct_file)
    res = medseg("segment", ct_file, "-o", out, "--confidence", ct_file)
    refused(res, "--confidence")
    assert digest(ct_file) == before and not out.exists()
    res = medseg("segment", ct_file, "-o", out, "--confidence", tmp_path / "c.nii.gz",
                 "--review-threshold", "meen=0.9")
    _one_line_error(res, "unknown name 'meen'", "fraction_below")
    res = medseg("segment", ct_file, "-o", out, "--confidence", tmp_path / "c.nii.gz",
                 "--temperature", "-1")
    _one_line_error(res, "--temperature must be a positive number")
    assert not out.exists() and not (tmp_path / "c.nii.gz").exists()
    # hu-tissue has no probabilities: it says so, writes the labels and no map
    res = medseg("segment", sample["ct"], "-o", out, "--confidence", tmp_path / "c.nii.gz", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["confidence"] is None and any("no confidence map" in n for n in doc["notes"])
    assert out.exists() and not (tmp_path / "c.nii.gz").exists()


# ------------------------------------------------------------- multi-sequence and MRI
@pytest.fixture(scope="module")
def t1_t2_files(tmp_path_factory):
    """A two-channel (T1, T2) random-weight model and two MR images on one grid + a coarse T2."""
    pytest.importorskip("torch")
    from napari_medseg.io.volume import Volume
    from napari_medseg.testing.nnunet import make_random_model_folder

    root = tmp_path_factory.mktemp("mr_cli")
    folder = make_random_model_folder(root / "model", n_classes=3, normalization="ZScoreNormalization",
                                      channel_names=("T1", "T2"), patch_size=(16, 16, 16))
    rng = np.random.default_rng(4)
    z, y, x = np.mgrid[0:20, 0:24, 0:24]
    blob = ((z - 10) ** 2 + (y - 12) ** 2 + (x - 11) ** 2) < 40
    geo = dict(spacing=(3.0, 3.0, 3.0), origin=(2.0, -4.0, 10.0))
    t1 = Volume((300 + 500 * blob + rng.normal(0, 20, blob.shape)).astype(np.float32), **geo)
    t2 = Volume((900 - 400 * blob + rng.normal(0, 20, blob.shape)).astype(np.float32), **geo)
    coarse = Volume(t2.array[::2, ::2, ::2].copy(), spacing=(6.0, 6.0, 6.0), origin=t2.origin)
    paths = {"model": folder}
    for name, vol in (("t1", t1), ("t2", t2), ("t2_coarse", coarse)):
        paths[name] = write_volume(vol, root / f"{name}.nii.gz")
    return paths


def test_multi_sequence_model_by_order_and_by_name_writes_the_same_labels(t1_t2_files, tmp_path):
    f = t1_t2_files
    a, b = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    res = medseg("segment", f["t1"], "--image", f["t2"], "--model", f["model"], "-o", a, "--json")
    assert res.returncode == 0, res.stderr
    res = medseg("segment", f["t1"], "--channel-image", f"t2={f['t2']}", "--model", f["model"],
                 "-o", b)
    assert res.returncode == 0, res.stderr
    la, lb = read_labels(a)[0].array, read_labels(b)[0].array
    assert np.array_equal(la, lb) and len(np.unique(la)) >= 2
    assert read_labels(a)[0].same_grid(read_volume(f["t1"]))
    # a T2 on another grid is resampled onto T1's, and the user is told
    res = medseg("segment", f["t1"], "--channel-image", f"T2={f['t2_coarse']}", "--model",
                 f["model"], "-o", tmp_path / "c.nii.gz", "--json")
    assert res.returncode == 0, res.stderr
    notes = json.loads(res.stdout)["notes"]
    assert any("T2" in n and "resampled" in n for n in notes)
    assert read_labels(tmp_path / "c.nii.gz")[0].shape == read_volume(f["t1"]).shape


# --- bad input and faults (multi-sequence)
def test_multi_sequence_mistakes_are_one_line_errors(t1_t2_files, tmp_path):
    f = t1_t2_files
    out = tmp_path / "x.nii.gz"
    _one_line_error(medseg("segment", f["t1"], "--model", f["model"], "-o", out),
                    "missing: T2", "--channel-image")
    _one_line_error(medseg("segment", f["t1"], "--channel-image", f"FLAIR={f['t2']}",
                           "--model", f["model"], "-o", out), "FLAIR", "T1, T2")
    _one_line_error(medseg("segment", f["t1"], "--channel-image", f["t2"], "--model", f["model"],
                           "-o", out), "NAME=PATH")
    _one_line_error(medseg("segment", f["t1"], "--image", f["t2"], "--channel-image",
                           f"T2={f['t2']}", "--model", f["model"], "-o", out), "not both")
    _one_line_error(medseg("segment", "--model", f["model"], "-o", out), "no input image")
    assert not out.exists()


def test_deepbet_from_the_command_line_writes_brain_on_the_source_grid(tmp_path):
    pytest.importorskip("deepbet", reason="deepbet is not installed (pip install -e '.[mri]')")
    nilearn = pytest.importorskip("nilearn", reason="nilearn (the MNI152 template) is not installed")
    from pathlib import Path

    t1 = (Path(nilearn.__file__).parent / "datasets" / "data"
          / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    out = tmp_path / "brain.nii.gz"
    res = medseg("segment", t1, "--model", "deepbet", "-o", out, "--json", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert [s["name"] for s in info["labels"]] == ["brain"]
    assert 1200 < info["labels"][0]["volume_ml"] < 2200  # an adult brain, in ml
    labels, table = read_labels(out)
    assert labels.same_grid(read_volume(t1)) and table.names == {1: "brain"}


def test_hu_tissue_refuses_an_mr_image_with_the_reason(tmp_path):
    from napari_medseg.io.volume import Volume

    rng = np.random.default_rng(0)
    mr = write_volume(Volume(rng.gamma(2.0, 200.0, (8, 24, 24)).astype(np.float32), modality="MR"),
                      tmp_path / "t1.nrrd")
    out = tmp_path / "x.nii.gz"
    _one_line_error(medseg("segment", mr, "-o", out), "Hounsfield", "MR")
    assert not out.exists()
