"""Benchmark: napari-medseg's nnU-Net engine vs nnunetv2's nnUNetPredictor on the CPU.

Same model folder (random weights from ``make_random_model_folder``), same image,
same settings (tile step 0.5, mirroring on), same torch thread count, same run.
Each engine runs end to end (read the image file, predict, write the label file)
in a fresh Python process, alternating engines, so that the peak resident memory
(``ru_maxrss``) of each is its own. Reported: median wall time (process, and the
predict call alone), median peak RSS, ratios ours / nnU-Net, and parity (per-class
Dice, % identical voxels) between the two outputs.

Scenarios
---------
a) ``3mm``: a TotalSegmentator-"fast"-like model (118 classes, 3 mm) on the real
   CT ``../shared/data/totalseg_example/example_ct.nii.gz`` (no resampling needed).
b) ``1.5mm``: a 1.5 mm model (25 classes, like one TotalSegmentator part) on a
   synthetic 512 x 512 x 300 CT (``napari_medseg.phantom``, 0.78 x 0.78 x 1.5 mm).

c) ``--matrix``: the model shapes users meet (:data:`MATRIX`: 4-6 stages, 32..320
   features, 64^3-128^3 patches, 5/25/118 classes, 1.5 and 3 mm, mirroring on and
   off, one and five folds) on the real CT and the synthetic 512 x 512 x 300 CT.
   Each row prints time and peak-memory ratios against ``nnUNetPredictor`` measured
   in the same run, parity, the OpenVINO conversion time (measured once before the
   timed runs, which then read the compiled model from the cache, as every run
   after the first on a user's machine does) and the network's effective GFLOP/s
   (convolution FLOPs of every window / the predict time: a lower bound, as the
   predict time includes resampling and export) against this machine's measured
   float32 GEMM ceiling (a 2048^2 matmul, same threads).

``--runtime`` (``auto``, ``openvino``, ``torch``) chooses what runs our engine's
network; nnU-Net always runs PyTorch.

d) ``--window ROW ...``: one window of a matrix row's network (``forward_features``),
   in one process: PyTorch, OpenVINO (as our runtime converts it) and ONNX Runtime
   (``pip install onnxruntime``; exported with ``torch.onnx.export``, CPU execution
   provider, full graph optimisation, same threads), best of ``--repeats`` after one
   warm-up call, conversion time and max error relative to PyTorch's output scale.
   ``--profile`` adds where the time goes: OpenVINO's per-layer counters summed by layer
   and kernel type (the convolution primitive, e.g. ``brgconv_avx2_f32``, and the
   convolutions' memory layout) and torch.profiler's top operators for our torch path.

``--quick`` shrinks the networks (not the images or class counts): on this
shared 2-core machine a full-size TotalSegmentator network costs minutes per
window. The network compute is the same work in both engines, so a smaller
network *understates* nothing about the rest of the pipeline but gives the
non-network parts (resampling, accumulation, export) more weight.

Usage::

    python benchmarks/bench_nnunet.py --quick            # ~15 min here
    python benchmarks/bench_nnunet.py --scenario 3mm --repeats 3
    python benchmarks/bench_nnunet.py --matrix all --threads 2 --repeats 1
    python benchmarks/bench_nnunet.py --matrix m4-1.5mm-5cls --quick --runtime torch
    python benchmarks/bench_nnunet.py --window m1-3mm-118cls-5st --threads 2 --repeats 3
    python benchmarks/bench_nnunet.py --window m1-3mm-118cls-5st --threads 2 --repeats 1 --profile
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDSEG_SHARED_DIR", REPO.parent / "shared"))

SCENARIOS = {
    # name: (classes, spacing, full network, quick network)
    "3mm": dict(n_classes=118, spacing=(3.0, 3.0, 3.0),
                full=dict(patch_size=(112, 112, 128), base_features=32, max_features=320),
                quick=dict(patch_size=(112, 112, 128), base_features=8, max_features=64)),
    "1.5mm": dict(n_classes=25, spacing=(1.5, 1.5, 1.5),
                  full=dict(patch_size=(128, 128, 128), base_features=32, max_features=320),
                  quick=dict(patch_size=(128, 128, 128), base_features=4, max_features=32)),
}


#: The matrix of model shapes (``--matrix``): image ``real`` (the 3 mm real CT) or
#: ``synthetic`` (512 x 512 x 300 at 0.78 x 0.78 x 1.5 mm); ``--quick`` divides the
#: features by 4 (at least 4) and keeps everything else.
MATRIX = {
    "m1-3mm-118cls-5st": dict(image="real", n_classes=118, spacing=(3.0, 3.0, 3.0), n_stages=5,
                              base_features=32, max_features=320, patch_size=(96, 96, 96),
                              mirroring=False, folds=1),
    "m2-3mm-118cls-6st": dict(image="real", n_classes=118, spacing=(3.0, 3.0, 3.0), n_stages=6,
                              base_features=32, max_features=320, patch_size=(112, 112, 128),
                              mirroring=False, folds=1),
    "m3-1.5mm-25cls-6st-synthetic": dict(image="synthetic", n_classes=25, spacing=(1.5, 1.5, 1.5),
                                         n_stages=6, base_features=32, max_features=320,
                                         patch_size=(128, 128, 128), mirroring=False, folds=1),
    "m4-1.5mm-5cls": dict(image="real", n_classes=5, spacing=(1.5, 1.5, 1.5), n_stages=4,
                          base_features=32, max_features=256, patch_size=(64, 64, 64),
                          mirroring=True, folds=1),
    "m5-3mm-5cls-5folds": dict(image="real", n_classes=5, spacing=(3.0, 3.0, 3.0), n_stages=4,
                               base_features=32, max_features=256, patch_size=(64, 64, 64),
                               mirroring=True, folds=5),
    "m6-1.5mm-25cls-5st-mirror-synthetic": dict(image="synthetic", n_classes=25,
                                                spacing=(1.5, 1.5, 1.5), n_stages=5,
                                                base_features=32, max_features=320,
                                                patch_size=(128, 128, 128), mirroring=True, folds=1),
}


# --------------------------------------------------------------------------- workers
def _worker(args) -> None:
    """Run one engine end to end in this (fresh) process and print a JSON line."""
    import resource

    t0 = time.perf_counter()
    import numpy as np
    import SimpleITK as sitk
    import torch

    torch.set_num_threads(args.threads)
    t_import = time.perf_counter() - t0
    if args.worker == "ours":
        from napari_medseg.io.volume import Volume
        from napari_medseg.inference.nnunet_predictor import NnUNetPredictor

        t1 = time.perf_counter()
        model = NnUNetPredictor.from_folder(args.model, device="cpu", runtime=args.runtime,
                                            folds=list(range(args.folds)))
        t2 = time.perf_counter()
        vol = Volume.from_sitk(sitk.ReadImage(args.image))
        if args.with_confidence:
            labels, conf = model.predict_with_confidence(vol, use_mirroring=not args.no_mirroring,
                                                         check_memory=False)
            sitk.WriteImage(vol.to_sitk(conf.max_prob), args.out.replace(".nii.gz", "_conf.nii.gz"),
                            True)
        else:
            labels = model.predict(vol, use_mirroring=not args.no_mirroring, check_memory=False)
        sitk.WriteImage(vol.to_sitk(labels), args.out, True)
        t3 = t4 = time.perf_counter()
        runtime = model.runtime_report.as_dict()
    else:
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        t1 = time.perf_counter()
        predictor = nnUNetPredictor(tile_step_size=0.5, use_mirroring=not args.no_mirroring,
                                    perform_everything_on_device=False, device=torch.device("cpu"),
                                    verbose=False, allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(args.model,
                                                       use_folds=tuple(range(args.folds)))
        t2 = time.perf_counter()
        out_trunc = args.out[: -len(".nii.gz")]
        predictor.predict_from_files_sequential([[args.image]], [out_trunc], save_probabilities=False,
                                                overwrite=True)
        t3 = t4 = time.perf_counter()
        runtime = {"used": "torch"}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_kib = usage.ru_maxrss
    print("RESULT " + json.dumps({
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "import_s": t_import, "load_s": t2 - t1, "predict_s": t3 - t2, "write_s": t4 - t3,
        "total_in_process_s": t4 - t0, "peak_mb": peak_kib / 1024.0, "runtime": runtime,
    }), flush=True)


def _prepare_worker(args) -> None:
    """Convert (and cache) our network for the runtime, before the timed runs."""
    import torch

    torch.set_num_threads(args.threads)
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor
    from napari_medseg.inference.runtimes import compile_module, resolve_runtime
    from napari_medseg.inference.runtimes.openvino import MethodModule

    model = NnUNetPredictor.from_folder(args.model, device="cpu", runtime=args.runtime,
                                        folds=list(range(args.folds)))
    from napari_medseg.inference.runtimes.cache import weights_hash

    report = resolve_runtime(args.runtime, model.device, family="nnunet")
    shape = (1, model.num_input_channels, *model.plans.patch_size)
    for fold in range(args.folds):
        model._set_fold(fold)
        # the predictor's cache key (the network's own weights hash), so the timed runs hit it
        compile_module(MethodModule(model.network, "forward_features"), shape, report=report,
                       what=f"fold {fold}", weights_key=weights_hash(model.network))
    flops = _conv_flops(model.network, shape)
    print("RESULT " + json.dumps({"runtime": report.as_dict(), "flops_per_window": flops}),
          flush=True)


def _conv_flops(network, shape) -> int:
    """Multiply-add FLOPs (x2) of the convolutions of one window, counted on the meta device."""
    import copy

    import torch

    total = [0]

    def hook(module, inputs, output):
        w = module.weight
        if isinstance(module, torch.nn.ConvTranspose3d):
            total[0] += 2 * inputs[0][0].numel() * w.shape[1] * int(torch.tensor(w.shape[2:]).prod())
        else:
            total[0] += 2 * output[0].numel() * w.shape[1] * int(torch.tensor(w.shape[2:]).prod())

    meta = copy.deepcopy(network).to("meta")
    for m in meta.modules():
        if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        meta(torch.empty(shape, device="meta"))
    return int(total[0])


def _run_windows(args) -> int:
    """One window per runtime, same process, same input (see the module docstring, d)."""
    import numpy as np
    import torch

    from napari_medseg.inference.runtimes import RuntimeReport, compile_module
    from napari_medseg.inference.runtimes.openvino import MethodModule

    torch.set_num_threads(args.threads)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_nnunet_"))
    os.environ.setdefault("MEDSEG_COMPILED_DIR", str(workdir / "compiled"))
    print(f"# one window per runtime, {args.threads} thread(s), best of {args.repeats}; load "
          f"average {os.getloadavg()[0]:.1f}")
    print("| row | PyTorch s | OpenVINO s (ratio) | ONNX Runtime s (ratio) | OpenVINO err | "
          "ORT err | conversion OV / ORT s |")
    print("|---|---|---|---|---|---|---|")
    for name in args.window:
        from napari_medseg.inference.nnunet_predictor import NnUNetPredictor

        model = NnUNetPredictor.from_folder(_make_matrix_model(name, args.quick, workdir),
                                            device="cpu", runtime="torch", folds=[0])
        net = model.network.eval()
        shape = (1, model.num_input_channels, *model.plans.patch_size)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0))

        def best(fn):
            fn()
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                out = fn()
                times.append(time.perf_counter() - t0)
            return min(times), out

        with torch.no_grad():
            xt = x.contiguous(memory_format=torch.channels_last_3d)
            net.to(memory_format=torch.channels_last_3d)
            t_torch, ref = best(lambda: net.forward_features(xt))
        ref = ref.contiguous()
        scale = float(ref.abs().max())
        report = RuntimeReport(requested="openvino", used="openvino")
        fn = compile_module(MethodModule(net, "forward_features"), shape, report=report,
                            what=name)
        t_ov, out_ov = best(lambda: fn(x)) if fn is not None else (float("nan"), ref)
        err_ov = float((out_ov - ref).abs().max()) / scale
        t_ort = err_ort = conv_ort = float("nan")
        try:
            import onnxruntime as ort

            path = workdir / f"{name}.onnx"
            t0 = time.perf_counter()
            with torch.no_grad():
                torch.onnx.export(MethodModule(net, "forward_features"), (x,), str(path),
                                  dynamo=False, opset_version=17)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = args.threads
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            conv_ort = time.perf_counter() - t0
            feed = {sess.get_inputs()[0].name: x.numpy()}
            t_ort, out_ort = best(lambda: sess.run(None, feed)[0])
            err_ort = float(np.abs(out_ort - ref.numpy()).max()) / scale
            del sess
        except Exception as exc:  # not installed, export or session failure: say so
            print(f"  ONNX Runtime: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
        print(f"| {name}{' (quick)' if args.quick else ''} | {t_torch:.2f} | {t_ov:.2f} "
              f"({t_ov / t_torch:.2f}x) | {t_ort:.2f} ({t_ort / t_torch:.2f}x) | {err_ov:.1e} | "
              f"{err_ort:.1e} | {report.convert_s:.0f} / {conv_ort:.0f} |", flush=True)
        if args.profile and fn is not None:
            _profile_window(name, net, xt, fn)
        del fn, model, net
    return 0


def _profile_window(name: str, net, x, fn) -> None:
    """Where one window's time goes: OpenVINO's per-layer counters summed by (layer type,
    kernel), which shows the convolution primitive (e.g. ``brgconv_avx2_f32``) and the
    share of everything else, and torch.profiler's top operators for our torch path."""
    import collections

    import torch
    from torch.profiler import ProfilerActivity, profile

    from napari_medseg.inference.runtimes.openvino import _config

    compiled = fn.compiled
    core_model = compiled.get_runtime_model()
    layouts = collections.Counter(
        (op.get_rt_info()["layerType"].astype(str), op.get_rt_info()["outputLayouts"].astype(str))
        for op in core_model.get_ordered_ops() if "layerType" in op.get_rt_info()
        and op.get_rt_info()["layerType"].astype(str) in ("Convolution", "Deconvolution"))
    from napari_medseg.inference.runtimes.openvino import MethodModule, _cached_xml, _core

    cfg = dict(_config(), PERF_COUNT=True)
    # the same cached graph compiled again with the counters on
    xml = _cached_xml(MethodModule(net, "forward_features"), tuple(x.shape), None)
    model = _core().read_model(str(xml))
    request = _core().compile_model(model, "CPU", cfg).create_infer_request()
    arr = x.contiguous().numpy()
    request.infer({0: arr})
    request.infer({0: arr})
    agg: dict = collections.defaultdict(lambda: [0.0, 0])
    for p in request.profiling_info:
        if p.status.name != "EXECUTED":
            continue
        agg[(p.node_type, p.exec_type)][0] += p.real_time.total_seconds()
        agg[(p.node_type, p.exec_type)][1] += 1
    total = sum(v[0] for v in agg.values()) or 1.0
    print(f"## {name}: OpenVINO per-layer counters (one window, {total:.2f} s summed); "
          f"convolution output layouts {dict(layouts)}")
    for (kind, impl), (sec, n) in sorted(agg.items(), key=lambda kv: -kv[1][0]):
        print(f"  {kind:<24} {impl:<22} x{n:<4} {sec:7.3f} s {100 * sec / total:5.1f} %")
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        net.forward_features(x)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    print(f"## {name}: torch.profiler, our torch path (self CPU {total / 1e6:.2f} s)")
    for e in events[:12]:
        print(f"  {e.key:<28} x{e.count:<4} {e.self_cpu_time_total / 1e6:7.3f} s "
              f"{100 * e.self_cpu_time_total / total:5.1f} %")


def _gemm_gflops(threads: int) -> float:
    """This machine's float32 dense-GEMM rate (2048^2 matmul, best of 5) in GFLOP/s."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = min((lambda t0: (a @ b, time.perf_counter() - t0)[1])(time.perf_counter())
               for _ in range(5))
    return 2 * 2048 ** 3 / best / 1e9


# --------------------------------------------------------------------------- driver
def _make_image(scenario: str, workdir: Path) -> Path:
    if scenario == "3mm":
        path = SHARED / "data" / "totalseg_example" / "example_ct.nii.gz"
        if not path.is_file():
            sys.exit(f"real CT not found at {path} (set MEDSEG_SHARED_DIR)")
        return path
    import SimpleITK as sitk

    path = workdir / "synthetic_512x512x300.nii.gz"
    if not path.is_file():
        from napari_medseg.phantom import make_phantom

        ph = make_phantom(seed=0, shape=(300, 512, 512), spacing_zyx=(1.5, 0.78, 0.78), n_lesions=3)
        sitk.WriteImage(ph.ct.to_sitk(), str(path), True)
    return path


def _make_matrix_model(name: str, quick: bool, workdir: Path) -> Path:
    from napari_medseg.testing.nnunet import make_random_model_folder

    row = MATRIX[name]
    scale = 4 if quick else 1
    return make_random_model_folder(
        workdir / f"model_{name}_{'quick' if quick else 'full'}", n_classes=row["n_classes"],
        spacing=row["spacing"], n_stages=row["n_stages"], patch_size=row["patch_size"],
        base_features=max(4, row["base_features"] // scale),
        max_features=max(8, row["max_features"] // scale), folds=tuple(range(row["folds"])),
        seed=7)


def _make_model(scenario: str, quick: bool, workdir: Path) -> Path:
    from napari_medseg.testing.nnunet import make_random_model_folder

    spec = SCENARIOS[scenario]
    net = spec["quick" if quick else "full"]
    return make_random_model_folder(workdir / f"model_{scenario}_{'quick' if quick else 'full'}",
                                    n_classes=spec["n_classes"], spacing=spec["spacing"], seed=7, **net)


def _run(engine: str, model: Path, image: Path, out: Path, threads: int, no_mirroring: bool,
         runtime: str = "auto", folds: int = 1, workdir: Optional[Path] = None) -> dict:
    confidence = engine == "ours+conf"  # our engine with the confidence maps computed
    engine = "ours" if confidence else engine
    cmd = [sys.executable, __file__, "--worker", engine, "--model", str(model), "--image", str(image),
           "--out", str(out), "--threads", str(threads), "--runtime", runtime, "--folds", str(folds)]
    if confidence:
        cmd.append("--with-confidence")
    if no_mirroring:
        cmd.append("--no-mirroring")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), nnUNet_def_n_proc=str(threads),
               nnUNet_raw="/tmp", nnUNet_preprocessed="/tmp", nnUNet_results="/tmp")
    if workdir is not None:
        env["MEDSEG_COMPILED_DIR"] = str(workdir / "compiled")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{engine} failed (exit {proc.returncode})")
    res = json.loads(lines[-1][len("RESULT "):])
    res["process_wall_s"] = wall
    return res


def _parity(a_path: Path, b_path: Path) -> tuple:
    import numpy as np
    import SimpleITK as sitk

    a = sitk.GetArrayFromImage(sitk.ReadImage(str(a_path)))
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(b_path)))
    identical = float((a == b).mean())
    dices = []
    for c in np.union1d(np.unique(a), np.unique(b)):
        if c == 0:
            continue
        sa, sb = a == c, b == c
        dices.append(2.0 * np.logical_and(sa, sb).sum() / (sa.sum() + sb.sum()))
    return identical, (min(dices) if dices else float("nan")), (float(np.mean(dices)) if dices else float("nan")), len(dices)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small networks (same images and classes)")
    ap.add_argument("--scenario", choices=["3mm", "1.5mm", "all"], default="all")
    ap.add_argument("--repeats", type=int, default=2, help="runs per engine (medians reported)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both engines")
    ap.add_argument("--no-mirroring", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--runtime", choices=["auto", "openvino", "torch"], default="auto",
                    help="what runs our engine's network (nnU-Net always runs PyTorch)")
    ap.add_argument("--matrix", nargs="+", default=None, metavar="ROW",
                    help=f"run matrix rows ('all' or names: {', '.join(MATRIX)}) instead of scenarios")
    ap.add_argument("--window", nargs="+", default=None, metavar="ROW",
                    help="time one window of these matrix rows' networks with PyTorch, "
                         "OpenVINO and ONNX Runtime in one process")
    ap.add_argument("--profile", action="store_true",
                    help="with --window: also print where each runtime's window time goes "
                         "(OpenVINO's per-layer counters by layer and kernel type, "
                         "torch.profiler's top operators)")
    ap.add_argument("--folds", type=int, default=1, help=argparse.SUPPRESS)
    # internal: worker mode
    ap.add_argument("--confidence", action="store_true",
                    help="also run our engine with the confidence maps (max probability, "
                         "entropy) and print its time and peak-memory ratios to the plain run")
    ap.add_argument("--with-confidence", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker", choices=["ours", "nnunet", "prepare"], help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--image", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker == "prepare":
        _prepare_worker(args)
        return 0
    if args.worker:
        _worker(args)
        return 0
    if args.matrix:
        return _run_matrix(args)
    if args.window:
        return _run_windows(args)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_nnunet_"))
    workdir.mkdir(parents=True, exist_ok=True)
    scenarios = ["3mm", "1.5mm"] if args.scenario == "all" else [args.scenario]
    print(f"# nnU-Net engine benchmark ({'quick' if args.quick else 'full'} networks), CPU, "
          f"{args.threads} torch thread(s), {args.repeats} run(s) per engine, interleaved; "
          f"{'no ' if args.no_mirroring else ''}mirroring; load average at start "
          f"{os.getloadavg()[0]:.1f} (shared machine: wall times are noisy, CPU times less so)")
    for scenario in scenarios:
        image = _make_image(scenario, workdir)
        model = _make_model(scenario, args.quick, workdir)
        spec = SCENARIOS[scenario]
        net = spec["quick" if args.quick else "full"]
        print(f"\n## {scenario}: {spec['n_classes']} classes, {net}, image {image.name}")
        prep = _run_prepare(model, args.threads, args.runtime, 1, workdir)
        print(f"  runtime {prep['runtime']['used']}: conversion (once, cached) "
              f"{prep['runtime']['convert_s']:.1f} s")
        results = {"ours": [], "nnunet": []}
        if args.confidence:
            results["ours+conf"] = []
        outs = {}
        for r in range(args.repeats):
            order = list(results)
            for engine in (order if r % 2 == 0 else order[::-1]):
                out = workdir / f"{scenario}_{engine}.nii.gz"
                res = _run(engine, model, image, out, args.threads, args.no_mirroring,
                           args.runtime, 1, workdir)
                results[engine].append(res)
                outs[engine] = out
                print(f"  run {r + 1} {engine:7s} process {res['process_wall_s']:7.1f} s wall, "
                      f"{res['cpu_s']:7.1f} s CPU, read+predict+write {res['predict_s']:7.1f} s, "
                      f"peak {res['peak_mb']:7.0f} MB", flush=True)
        med = {e: {k: statistics.median(x[k] for x in v) for k in v[0]
                   if isinstance(v[0][k], (int, float))} for e, v in results.items()}
        identical, dmin, dmean, ncls = _parity(outs["ours"], outs["nnunet"])
        o, n = med["ours"], med["nnunet"]
        print(f"  median ours   : process {o['process_wall_s']:.1f} s wall, {o['cpu_s']:.1f} s CPU "
              f"(read+predict+write {o['predict_s']:.1f} s), "
              f"peak {o['peak_mb']:.0f} MB")
        print(f"  median nnU-Net: process {n['process_wall_s']:.1f} s wall, {n['cpu_s']:.1f} s CPU "
              f"(read+predict+write {n['predict_s']:.1f} s), "
              f"peak {n['peak_mb']:.0f} MB")
        print(f"  ratio ours/nnU-Net: CPU time {o['cpu_s'] / n['cpu_s']:.2f}x, "
              f"wall {o['process_wall_s'] / n['process_wall_s']:.2f}x (process), "
              f"{o['predict_s'] / n['predict_s']:.2f}x (read+predict+write), "
              f"peak memory {o['peak_mb'] / n['peak_mb']:.2f}x")
        print(f"  parity: {identical * 100:.4f} % identical voxels, Dice min {dmin:.4f} / mean "
              f"{dmean:.4f} over {ncls} classes present")
        if args.confidence:
            c = med["ours+conf"]
            same, *_ = _parity(outs["ours+conf"], outs["ours"])
            print(f"  confidence on/off: CPU time {c['cpu_s'] / o['cpu_s']:.2f}x, "
                  f"read+predict+write {c['predict_s'] / o['predict_s']:.2f}x, "
                  f"peak memory {c['peak_mb'] / o['peak_mb']:.2f}x (goal <= 1.15x); labels "
                  f"{same * 100:.4f} % identical (must be 100 %)")
    return 0


def _run_prepare(model: Path, threads: int, runtime: str, folds: int, workdir: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", "prepare", "--model", str(model), "--threads",
           str(threads), "--runtime", runtime, "--folds", str(folds)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MEDSEG_COMPILED_DIR=str(workdir / "compiled"))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"preparing {model} failed (exit {proc.returncode})")
    res = json.loads(lines[-1][len("RESULT "):])
    res["wall_s"] = time.perf_counter() - t0
    return res


def _windows(image: Path, model: Path) -> int:
    """Sliding windows one fold and one mirror of ``model`` runs on ``image``."""
    import numpy as np
    import SimpleITK as sitk

    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor
    from napari_medseg.inference.resample import compute_new_shape
    from napari_medseg.inference.sliding_window import compute_steps
    from napari_medseg.io.volume import Volume

    plans = NnUNetPredictor.from_folder(model, device="cpu", folds=[0], runtime="torch").plans
    vol = Volume.from_sitk(sitk.ReadImage(str(image)))
    tf = plans.transpose_forward
    shape = compute_new_shape([vol.shape[i] for i in tf], [vol.spacing_zyx[i] for i in tf],
                              plans.spacing)
    padded = [max(int(s), int(p)) for s, p in zip(shape, plans.patch_size)]
    steps = compute_steps(padded, plans.patch_size, 0.5)
    return int(np.prod([len(s) for s in steps]))


def _run_matrix(args) -> int:
    names = list(MATRIX) if args.matrix == ["all"] else args.matrix
    unknown = [n for n in names if n not in MATRIX]
    if unknown:
        raise SystemExit(f"unknown matrix rows {unknown}; choose from {', '.join(MATRIX)} or all")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_nnunet_"))
    workdir.mkdir(parents=True, exist_ok=True)
    gemm = _gemm_gflops(args.threads)
    kind = "quick" if args.quick else "full"
    print(f"# nnU-Net matrix ({kind} networks), CPU, {args.threads} thread(s), runtime "
          f"{args.runtime}, {args.repeats} run(s) per engine; float32 GEMM ceiling "
          f"{gemm:.0f} GFLOP/s; load average {os.getloadavg()[0]:.1f}")
    print("| row | net | image | ours s | nnU-Net s | time | peak | identical | Dice min | "
          "convert s (once) | GFLOP/s (% GEMM) | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        row = MATRIX[name]
        image = _make_image("3mm" if row["image"] == "real" else "1.5mm", workdir)
        model = _make_matrix_model(name, args.quick, workdir)
        prep = _run_prepare(model, args.threads, args.runtime, row["folds"], workdir)
        mirrors = 8 if row["mirroring"] else 1
        n_windows = _windows(image, model)
        flops = prep["flops_per_window"] * n_windows * mirrors * row["folds"]
        # the row's cost before it starts (stderr: the table stays one block): a quick
        # network on a 512x512x300 CT with mirroring is still hundreds of windows
        sys.stderr.write(
            f"# {name}: {n_windows} windows x {mirrors} mirror(s) x {row['folds']} fold(s) x "
            f"{prep['flops_per_window'] / 1e9:.1f} GFLOP = {flops / 1e12:.1f} TFLOP per engine run; "
            f"{(3 if args.confidence else 2) * args.repeats} runs, each at least {flops / (gemm * 1e9) / 60:.1f} min at the "
            f"GEMM ceiling (load {os.getloadavg()[0]:.1f})\n")
        sys.stderr.flush()
        results = {"ours": [], "nnunet": []}
        if args.confidence:
            results["ours+conf"] = []
        outs = {}
        for r in range(args.repeats):
            order = list(results)
            for engine in (order if r % 2 == 0 else order[::-1]):
                out = workdir / f"{name}_{engine}.nii.gz"
                results[engine].append(_run(engine, model, image, out, args.threads,
                                            not row["mirroring"], args.runtime, row["folds"],
                                            workdir))
                outs[engine] = out
        med = {e: {k: statistics.median(x[k] for x in v) for k in ("process_wall_s", "peak_mb",
                                                                  "predict_s")}
               for e, v in results.items()}
        identical, dmin, _dmean, _n = _parity(outs["ours"], outs["nnunet"])
        o, n = med["ours"], med["nnunet"]
        gflops = flops / o["predict_s"] / 1e9
        used = results["ours"][-1]["runtime"].get("used", "?")
        if results["ours"][-1]["runtime"].get("compiled"):
            used += ", CONVERTED IN THE TIMED RUN"  # the cache missed: the time includes it
        net = (f"{row['n_stages']}st {max(4, row['base_features'] // (4 if args.quick else 1))}.."
               f"{max(8, row['max_features'] // (4 if args.quick else 1))} "
               f"{'x'.join(map(str, row['patch_size']))} {row['n_classes']}cls "
               f"{row['spacing'][0]}mm {'mirror' if row['mirroring'] else 'no mirror'} "
               f"{row['folds']} fold{'s' if row['folds'] > 1 else ''} [{used}{', quick' if args.quick else ''}]")
        print(f"| {name} | {net} | {row['image']} | {o['process_wall_s']:.1f} | "
              f"{n['process_wall_s']:.1f} | {o['process_wall_s'] / n['process_wall_s']:.2f}x | "
              f"{o['peak_mb'] / n['peak_mb']:.2f}x ({o['peak_mb']:.0f}/{n['peak_mb']:.0f} MB) | "
              f"{identical * 100:.3f} % | {dmin:.4f} | "
              f"{prep['runtime']['convert_s']:.1f} | {gflops:.0f} ({100 * gflops / gemm:.0f} %) | "
              f"{os.getloadavg()[0]:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
