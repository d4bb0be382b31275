"""Benchmark of the SAM-Med3D prompt session on the CPU.

Measures, for the real CT (``../shared/data/totalseg_example/example_ct.nii.gz``) and a
synthetic 512 x 512 x 300 CT (0.7 x 0.7 x 1.0 mm):

* set-up: resampling the volume to 1.5 mm (``set_volume``) and encoding one 128^3 crop
  (the ViT, once per crop);
* per click once the crop is encoded: the full ``add_point`` (prompt encoder + mask
  decoder + upsampling + map back + paste into the full-grid mask) and its backend part
  (``_predict``), for several positive/negative clicks inside the crop;
* the reference map-back (upsample the logits to 128^3, threshold, paste into the
  resampled volume, nearest-neighbour back to the *whole* original grid, as the
  published ``data_postprocess`` does) against ours (only the object's region), same run.

Weights are the deterministic ones of the parity fixture (timing does not depend on
the weights' values). Target: <= 30 ms per click once the crop is encoded (issue #13).

``--runtime`` (``auto``, ``openvino``, ``torch``) chooses what runs the image encoder
(:mod:`napari_medseg.inference.runtimes`); with OpenVINO the first crop's encode includes
converting (or reading the cached model), so a second crop is encoded and timed too.

The run starts with the image encoder alone on the fixture's 128^3 input (target:
<= 1.0 s per crop on 2 cores), in one process, interleaved, medians of ``--repeats``:
the published computation (``ImageEncoderViT3D.forward_reference``: padded 14^3 windows,
full relative-position maps), ours with PyTorch, and ours compiled by OpenVINO (its
conversion or cache read timed apart); each with its error relative to the fixture's
embedding and its effective GFLOP/s against a 2048^2 float32 matmul measured in the same
run (the machine's dense-GEMM ceiling at these threads). ``--encoder-only`` stops there.

``--against DIR`` runs the clicks A/B instead: ``DIR`` holds another copy of the package
(``DIR/napari_medseg``, e.g. ``cp -r src /tmp/A`` before a change), imported under another
name; both sessions get the same volume, embedding and clicks, interleaved click by click,
and every click's mask and message are compared (plus, on the synthetic CT, clicks that
alternate between two crops 14 cm apart: a re-crop and merge at every click, both crops
encoded once). It prints, per volume and mask size, the
medians of ``add_point`` (wall and process CPU), the decoder, the map back and the rest,
and B/A ratios (the figure to trust on a shared machine). ``--skip-encoder`` leaves out
the encoder block.

Run: ``python benchmarks/bench_sam.py [--quick] [--threads N] [--runtime openvino]
[--encoder-only | --skip-encoder] [--repeats N] [--against DIR]``. The machine may be
shared: the load average is printed with every block of timings; compare ratios measured
in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TARGET_MS = 30.0


def torch_module_base():
    import torch

    return torch.nn.Module


def _net():
    import torch

    from napari_medseg.models.sam_med3d import build_sam_med3d
    from napari_medseg.testing.sam_med3d import deterministic_state_dict

    shapes_file = SHARED / "fixtures" / "sam_med3d_state_dict.json"
    net = build_sam_med3d()
    if shapes_file.is_file():
        shapes = json.loads(shapes_file.read_text())["state_dict_shapes"]
        net.load_state_dict(deterministic_state_dict(shapes))
    else:  # no fixture: seeded random init, same cost
        torch.manual_seed(0)
    return net.eval()


def synthetic_ct(shape=(300, 512, 512), spacing_xyz=(0.7, 0.7, 1.0), seed=0):
    from napari_medseg.io.volume import Volume

    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    body = ((y - shape[1] / 2) / (0.42 * shape[1])) ** 2 + ((x - shape[2] / 2) / (0.46 * shape[2])) ** 2 < 1
    arr = np.where(np.broadcast_to(body, shape), 40, -1000).astype(np.int16)
    organ = ((z - 150) / 60.0) ** 2 + ((y - 230) / 90.0) ** 2 + ((x - 180) / 80.0) ** 2 < 1
    arr[organ] = 110
    arr += rng.integers(-15, 16, size=shape, dtype=np.int16)
    return Volume(arr, spacing=spacing_xyz, modality="CT"), (150, 230, 180)


def real_ct():
    path = SHARED / "data" / "totalseg_example" / "example_ct.nii.gz"
    if not path.is_file():
        return None
    from napari_medseg.io import read_volume

    vol = read_volume(path)
    centre = tuple(s // 2 for s in vol.shape)
    return vol, centre


def reference_map_back(session, logits_low, start, res_shape, orig_shape):
    """The published post-processing, on the whole grid (for the ratio)."""
    import torch
    import torch.nn.functional as F

    up = F.interpolate(logits_low, size=(128,) * 3, mode="trilinear", align_corners=False)
    crop_mask = (torch.sigmoid(up[0, 0]) > 0.5).numpy()
    full = np.zeros(res_shape, bool)
    dst = tuple(slice(max(s, 0), min(s + 128, r)) for s, r in zip(start, res_shape))
    src = tuple(slice(d.start - s, d.stop - s) for d, s in zip(dst, start))
    full[dst] = crop_mask[src]
    back = F.interpolate(torch.from_numpy(full)[None, None].float(), size=orig_shape, mode="nearest")[0, 0] > 0
    return back.numpy()


class OrganSizedOutput(torch_module_base()):
    """Runs the real decoder (so its cost is measured) but returns the logits of a
    sphere of ``radius_mm`` around the newest click, the size of a real organ/lesion:
    random weights otherwise predict masks filling most of the crop (the worst case)."""

    def __init__(self, net, radius_mm: float = 30.0) -> None:
        super().__init__()
        self.net = net
        self.radius_cells = radius_mm / 1.5 / 4.0

    @property
    def image_encoder(self):
        # the session runs this through the CPU runtime (as it does the real network's)
        return self.net.image_encoder

    def encode(self, crop):
        return self.net.encode(crop)

    def decode(self, emb, coords, labels, mask_logits=None, multimask_output=False):
        import torch

        low, iou = self.net.decode(emb, coords, labels, mask_logits, multimask_output)
        c = coords[0, -1] / 4.0 - 0.375  # crop voxel -> low-res cell centre coordinates
        g = torch.arange(32, dtype=torch.float32)
        d2 = (g[:, None, None] - c[0]) ** 2 + (g[None, :, None] - c[1]) ** 2 + (g[None, None, :] - c[2]) ** 2
        return (self.radius_cells - d2.sqrt())[None, None], iou


def load_average() -> str:
    import os

    try:
        return "load average %.2f, %.2f, %.2f" % os.getloadavg()
    except OSError:  # not available on this platform
        return "load average n/a"


def gemm_gflops(repeats: int = 3, n: int = 2048) -> float:
    """Best float32 ``n x n`` matmul rate (GFLOP/s) at torch's current threads."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_encoder(net, repeats: int) -> dict:
    """The image encoder alone: published computation, ours (PyTorch), ours (OpenVINO)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from napari_medseg.inference.runtimes import compile_module, resolve_runtime
    from napari_medseg.testing import scaled_error
    from napari_medseg.testing.sam_med3d import fixture_input

    enc = net.image_encoder
    x = fixture_input()
    ref_file = SHARED / "fixtures" / "sam_med3d_reference.npz"
    reference = np.load(ref_file)["image_embedding"] if ref_file.is_file() else None
    from torch.nn.attention import SDPBackend, sdpa_kernel

    # the math backend spells attention out as matrix products, which the counter counts
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        enc(x)
    flops = counter.get_total_flops()
    print(f"\n== image encoder, one 128^3 crop (torch threads {torch.get_num_threads()}; {load_average()})")
    print(f"  {flops / 1e9:.1f} GFLOP (matrix products and convolutions)")
    runs = {"published computation (PyTorch)": enc.forward_reference, "ours, PyTorch": enc}
    report = resolve_runtime("openvino", "cpu")
    compiled = compile_module(enc, tuple(x.shape), report=report, what="SAM-Med3D image encoder")
    if compiled is not None:
        hit = "read from the cache" if report.cache_hits else "converted and compiled"
        print(f"  OpenVINO: {hit} in {report.convert_s:.1f} s (not in the encode times)")
        runs["ours, OpenVINO"] = compiled
    else:
        print(f"  OpenVINO not measured: {report.reason}")
    times: dict = {name: [] for name in runs}
    cpu: dict = {name: [] for name in runs}  # process CPU seconds: the load-robust figure
    errors = {}
    with torch.no_grad():
        for name, fn in runs.items():  # warm-up (first-call allocations), parity
            out = fn(x)
            if reference is not None:
                err, scale = scaled_error(out, reference)
                errors[name] = err / scale
        gemm = [gemm_gflops()]
        for _ in range(repeats):
            for name, fn in runs.items():
                c0 = time.process_time()
                times[name].append(_timed(lambda: fn(x)))
                cpu[name].append(time.process_time() - c0)
            gemm.append(gemm_gflops(repeats=1))
    ceiling = max(gemm)  # with --threads 1 a shared machine still lowers it (shared caches)
    base = statistics.median(times["published computation (PyTorch)"])
    print(f"  2048^2 float32 matmul: {ceiling:.0f} GFLOP/s (best of the run); {load_average()}")
    out = {"gflop": flops / 1e9, "gemm_gflops": ceiling, "load_average": load_average()}
    for name, ts in times.items():
        med = statistics.median(ts)
        err = f"{errors[name]:.1e} of the scale" if name in errors else "no fixture"
        cpu_med = statistics.median(cpu[name])
        print(f"  {name:34s} median {med:6.2f} s (min {min(ts):5.2f}, {len(ts)} runs; CPU {cpu_med:6.2f} s)  "
              f"{base / med:4.1f}x the published  {flops / 1e9 / med:5.0f} GFLOP/s = "
              f"{flops / 1e9 / med / ceiling:4.0%} of the matmul  error vs fixture {err}")
        out[name] = {"median_s": med, "min_s": min(ts), "runs": ts, "cpu_s": cpu[name],
                     "rel_error": errors.get(name)}
    print("  (CPU: process CPU seconds; with --threads 1 on a shared machine they approach the "
          "idle single-core time, wall times do not)")
    if compiled is not None:
        out["openvino_convert_s"] = report.convert_s
        out["openvino_cache_hit"] = bool(report.cache_hits)
    return out


def bench_volume(name, vol, centre, net, n_clicks, runtime="auto"):
    import torch

    from napari_medseg.prompts.sam_med3d_session import SamMed3DSession

    s = SamMed3DSession(network=net, device="cpu")
    s.runtime = runtime
    t0 = time.perf_counter()
    s.set_volume(vol)
    t_prepare = time.perf_counter() - t0
    t0 = time.perf_counter()
    s.encode_around(centre)
    t_encode = time.perf_counter() - t0
    # a second crop (another centre): the compiled encoder is reused, nothing converted
    other = tuple(int(min(max(c + 40, 0), n - 1)) for c, n in zip(centre, vol.shape))
    t0 = time.perf_counter()
    s.encode_around(other)
    t_encode2 = time.perf_counter() - t0
    s._embeddings.clear()
    s.encode_around(centre)
    ran = getattr(s, "runtime_report", None)

    rng = np.random.default_rng(1)
    totals, backend = [], []
    orig_predict = s._predict

    def timed_predict(prompts, state):
        t = time.perf_counter()
        out = orig_predict(prompts, state)
        backend.append(time.perf_counter() - t)
        return out

    s._predict = timed_predict
    for i in range(n_clicks):
        offset = rng.integers(-6, 7, size=3) if i else np.zeros(3, int)
        p = tuple(int(np.clip(c + o, 0, n - 1)) for c, o, n in zip(centre, offset, vol.shape))
        t = time.perf_counter()
        s.add_point(p, positive=(i % 3 != 2))
        totals.append(time.perf_counter() - t)
    assert len(s._embeddings) == 1, "clicks inside the crop must not re-encode"

    # reference post-processing vs ours on the last click's logits
    low = s._state["low_res"]
    start = s._state["start"]
    from napari_medseg.prompts.sam_med3d_session import _AxisMap, _torch_threads

    maps = [_AxisMap(n, r, st) for n, r, st in zip(vol.shape, s._res_shape, start)]
    # both with the session's CPU thread setting, so the ratio compares algorithms
    with _torch_threads(min(s.decoder_threads or torch.get_num_threads(), torch.get_num_threads())):
        t = time.perf_counter()
        reference_map_back(s, low, start, s._res_shape, vol.shape)
        t_ref = time.perf_counter() - t
        t = time.perf_counter()
        s._map_back(maps, low[0, 0].numpy())
        t_ours = time.perf_counter() - t
        emb = s._embeddings[start]
        coords = torch.tensor([[[64.0, 64.0, 64.0]]])
        labels = torch.tensor([[1]])
        dec = []
        for _ in range(5):
            t = time.perf_counter()
            s._network.decode(emb, coords, labels, low)
            dec.append(time.perf_counter() - t)
    t_dec = statistics.median(dec)

    med_total = statistics.median(totals[1:]) * 1000
    med_backend = statistics.median(backend[1:]) * 1000
    print(f"\n== {name}: shape {vol.shape} (z, y, x), spacing {tuple(round(v, 2) for v in vol.spacing_zyx)} mm (z, y, x); {load_average()}")
    print(f"  set-up: resample to 1.5 mm {t_prepare:6.2f} s -> {s._res_shape}; encode one 128^3 crop {t_encode:6.2f} s "
          f"(first), {t_encode2:6.2f} s (another crop); encoder runtime "
          f"{ran.as_dict() if ran is not None else 'torch'}")
    print(f"  per click ({len(totals) - 1} clicks after the first, torch threads {torch.get_num_threads()}):")
    print(f"    add_point (decoder + upsample + map back + paste): median {med_total:6.1f} ms, max {max(totals[1:]) * 1000:6.1f} ms"
          f"  -> {med_total / TARGET_MS:4.2f} x the {TARGET_MS:.0f} ms target")
    print(f"    backend part only (_predict):                     median {med_backend:6.1f} ms")
    print(f"    decoder alone (prompt encoder + mask decoder):    median {t_dec * 1000:6.1f} ms"
          f"  (session thread setting: {s.decoder_threads})")
    print(f"    base-class bookkeeping (add_point - _predict):    median {med_total - med_backend:6.1f} ms")
    print(f"  map back: reference (whole grid) {t_ref * 1000:7.1f} ms vs ours (object region) {t_ours * 1000:6.1f} ms"
          f"  -> ours is {t_ref / max(t_ours, 1e-9):5.1f}x faster")
    return {"volume": name, "prepare_s": t_prepare, "encode_s": t_encode, "encode2_s": t_encode2,
            "click_ms": med_total,
            "backend_ms": med_backend, "decoder_ms": t_dec * 1000, "ref_mapback_ms": t_ref * 1000, "mapback_ms": t_ours * 1000}


def _import_copy(src_dir: str):
    """The package copy under ``src_dir`` (``src_dir/napari_medseg``), imported as
    ``medseg_baseline`` (its imports are relative, so it does not touch this one)."""
    import importlib
    import sys
    import tempfile

    pkg = Path(src_dir).resolve() / "napari_medseg"
    if not (pkg / "__init__.py").is_file():
        raise SystemExit(f"--against: {pkg} is not a copy of the package (no __init__.py)")
    link_dir = Path(tempfile.mkdtemp(prefix="bench_sam_"))
    (link_dir / "medseg_baseline").symlink_to(pkg, target_is_directory=True)
    sys.path.insert(0, str(link_dir))
    return importlib.import_module("medseg_baseline")


def bench_against(baseline, cases, n_clicks: int) -> list:
    """Click-by-click A/B of two package copies: A = ``baseline``, B = this one."""
    import importlib

    import torch

    import napari_medseg

    mods = {}
    for name, pkg in (("A", baseline), ("B", napari_medseg)):
        mods[name] = (importlib.import_module(pkg.__name__ + ".prompts.sam_med3d_session"),
                      importlib.import_module(pkg.__name__ + ".models.sam_med3d"),
                      importlib.import_module(pkg.__name__ + ".io.volume"))
    from napari_medseg.testing.sam_med3d import deterministic_state_dict

    shapes_file = SHARED / "fixtures" / "sam_med3d_state_dict.json"
    torch.manual_seed(0)
    state = (deterministic_state_dict(json.loads(shapes_file.read_text())["state_dict_shapes"])
             if shapes_file.is_file() else mods["B"][1].build_sam_med3d().state_dict())
    nets = {}
    for name, (_, models, _) in mods.items():
        net = models.build_sam_med3d()
        net.load_state_dict(state)
        nets[name] = net.eval()
    print(f"\n== A/B, click by click: A = {Path(baseline.__file__).parent}, B = {Path(napari_medseg.__file__).parent}")
    results = []
    for label, vol, centre, wrap, other in cases:
        sessions, emb, emb2 = {}, None, None
        for name, (session_mod, _, volume_mod) in mods.items():
            s = session_mod.SamMed3DSession(network=wrap(nets[name]), device="cpu")
            s.runtime = "torch"
            s.set_volume(volume_mod.Volume(vol.array, spacing=vol.spacing, origin=vol.origin,
                                           direction=vol.direction, modality=vol.modality))
            start = s._crop_start(s._to_res(centre), session_mod.CROP)
            if emb is None:  # one embedding for both: the clicks are what is compared
                crop = session_mod.normalise_crop(s._crop_image(start))
                emb = nets["B"].encode(torch.from_numpy(crop)[None, None])
            s._embeddings[start] = emb
            if other is not None:  # the second crop of the re-crop case, also encoded once
                start2 = s._crop_start(s._to_res(other), session_mod.CROP)
                if emb2 is None:
                    crop = session_mod.normalise_crop(s._crop_image(start2))
                    emb2 = nets["B"].encode(torch.from_numpy(crop)[None, None])
                s._embeddings[start2] = emb2
            times = {"add_point": [], "cpu": [], "decoder": [], "map_back": []}
            _time_calls(s, "_map_back", times["map_back"])
            _time_calls(s._network, "decode", times["decoder"])
            sessions[name] = (s, times)
        rng = np.random.default_rng(1)
        same = True
        for i in range(n_clicks):
            if other is None:  # clicks around the centre, every third one negative
                offset = rng.integers(-6, 7, size=3) if i else np.zeros(3, int)
                p = tuple(int(np.clip(c + o, 0, n - 1)) for c, o, n in zip(centre, offset, vol.shape))
            else:  # positive clicks alternating between the two crops: a re-crop and merge each
                p = other if i % 2 else centre
            for name in (("A", "B") if i % 2 == 0 else ("B", "A")):
                s, times = sessions[name]
                t, c = time.perf_counter(), time.process_time()
                s.add_point(p, positive=(other is not None or i % 3 != 2))
                times["add_point"].append(time.perf_counter() - t)
                times["cpu"].append(time.process_time() - c)
            (sa, _), (sb, _) = sessions["A"], sessions["B"]
            same &= bool(np.array_equal(sa.mask, sb.mask)) and sa.message == sb.message
        voxels = int(sessions["B"][0].mask.sum())
        print(f"  {label}: {voxels} voxels; {n_clicks - 1} clicks after the first, torch threads "
              f"{torch.get_num_threads()}; {load_average()}; masks and messages identical at every click: {same}")
        row = {"case": label, "voxels": voxels, "identical": same}
        med = {}
        for key in ("add_point", "cpu", "decoder", "map_back"):
            a, b = (statistics.median(sessions[n][1][key][1:]) * 1000 for n in ("A", "B"))
            med[key] = (a, b)
            print(f"    {key + (' (CPU)' if key == 'cpu' else ''):18s} A {a:7.1f} ms   B {b:7.1f} ms   B/A {b / a:5.2f}")
        rest = []
        for name in ("A", "B"):
            t = sessions[name][1]
            if len(t["add_point"]) == len(t["decoder"]) == len(t["map_back"]):  # one of each per click
                rest.append(statistics.median(a - d - m for a, d, m in zip(
                    t["add_point"][1:], t["decoder"][1:], t["map_back"][1:])) * 1000)
            else:
                rest.append(statistics.median(t["add_point"][1:]) * 1000 - statistics.median(t["decoder"][1:]) * 1000
                            - statistics.median(t["map_back"][1:]) * 1000)
        print(f"    {'rest of the click':18s} A {rest[0]:7.1f} ms   B {rest[1]:7.1f} ms")
        row.update({k: {"A_ms": v[0], "B_ms": v[1]} for k, v in med.items()})
        results.append(row)
    return results


def _time_calls(obj, attr: str, out: list) -> None:
    """Wrap ``obj.attr`` so that each call's wall time is appended to ``out``."""
    fn = getattr(obj, attr)

    def timed(*args, **kwargs):
        t = time.perf_counter()
        result = fn(*args, **kwargs)
        out.append(time.perf_counter() - t)
        return result

    setattr(obj, attr, timed)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer clicks, smaller synthetic CT")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--clicks", type=int, default=0)
    parser.add_argument("--runtime", choices=("auto", "openvino", "torch"), default="auto",
                        help="what runs the image encoder in the click benchmark (default: auto)")
    parser.add_argument("--encoder-only", action="store_true",
                        help="time the image encoder (PyTorch and OpenVINO) and stop")
    parser.add_argument("--skip-encoder", action="store_true", help="leave out the image-encoder block")
    parser.add_argument("--repeats", type=int, default=0, help="encoder timings per variant (default 3, quick 2)")
    parser.add_argument("--against", metavar="DIR",
                        help="A/B the clicks against the package copy DIR/napari_medseg (e.g. a copy of src/)")
    args = parser.parse_args(argv)
    if args.encoder_only and (args.skip_encoder or args.against):
        parser.error("--encoder-only cannot be combined with --skip-encoder or --against")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    n_clicks = args.clicks or (4 if args.quick else 8)
    baseline = _import_copy(args.against) if args.against else None
    net = _net()
    encoder = None
    if not args.skip_encoder and not args.against:
        encoder = bench_encoder(net, args.repeats or (2 if args.quick else 3))
    if args.encoder_only:
        print("\nsummary (JSON):")
        print(json.dumps({"encoder": encoder}, indent=1))
        return 0
    results = []
    organ = OrganSizedOutput(net)
    real = real_ct()
    shape = (150, 256, 256) if args.quick else (300, 512, 512)
    vol, centre = synthetic_ct(shape=shape)
    if args.quick:
        centre = (75, 115, 90)
    volumes = ([("real CT (example_ct)",) + real] if real is not None else []) + [
        (f"synthetic CT {shape[2]}x{shape[1]}x{shape[0]}", vol, centre)]
    if real is None:
        print("real CT not found under ../shared/data: skipped")
    if baseline is not None:
        cases = []
        for label, v, c in volumes:
            cases.append((f"{label}, organ-sized mask", v, c, OrganSizedOutput, None))
            cases.append((f"{label}, mask filling the crop", v, c, lambda n: n, None))
        # an object longer than the crop: every click re-crops 14 cm (0.7 mm grid) away
        # along x and merges with the part found in the other crop
        label, v, c = volumes[-1]
        far = (c[0], c[1], min(c[2] + int(round(140 / v.spacing_zyx[2])), v.shape[2] - 1))
        cases.append((f"{label}, re-crop at every click, organ-sized mask", v, c, OrganSizedOutput, far))
        cases.append((f"{label}, re-crop at every click, masks filling the crops", v, c, lambda n: n, far))
        results = bench_against(baseline, cases, n_clicks)
        print("\nsummary (JSON):")
        print(json.dumps({"against": args.against, "ab": results}, indent=1))
        return 0
    for label, v, c in volumes:
        results.append(bench_volume(f"{label}, organ-sized mask (6 cm sphere)", v, c, organ, n_clicks,
                                    args.runtime))
        results.append(bench_volume(f"{label}, random-weights mask (fills the crop: worst case)", v, c, net,
                                    n_clicks, args.runtime))
    print("\nsummary (JSON):")
    print(json.dumps({"encoder": encoder, "sessions": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
