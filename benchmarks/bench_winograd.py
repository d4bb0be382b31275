"""Benchmark: Winograd F(m^3, 3^3) 3D convolution (``models/nnunet/winograd.py``) against
torch's ``conv3d`` on the CPU, per layer and per nnU-Net window, same process, same threads.

``--onednn`` also times the window with every convolution on oneDNN and the upsampling as
one matrix product (``models/nnunet/cpu_conv.py``: PyTorch's size heuristic sends small
maps to its im2col convolution).

Per layer: every distinct stride-1 3x3x3 convolution shape of a matrix row's network
(``bench_nnunet.MATRIX``; stage ``s`` at patch / 2^s with ``min(32 * 2^s, 320)`` channels,
the encoder's C -> C and the decoder's first 2C -> C), channels-last input, best of
``--repeats`` after one warm-up, torch and Winograd interleaved; error = max |difference| /
max |torch output|.

Per window: ``forward_features`` of the row's random-weight network (channels-last, as our
engine runs it) with torch's convolutions, then with every layer of at least
``--min-channels`` channels on Winograd (:class:`winograd_convolutions`), best of
``--repeats``, error relative to the output's scale.

Usage::

    python benchmarks/bench_winograd.py --row m1-3mm-118cls-5st --threads 2 --repeats 3
    python benchmarks/bench_winograd.py --row m1-3mm-118cls-5st --layers-only --m 2 4
    python benchmarks/bench_winograd.py --row m4-1.5mm-5cls --quick --window-only --onednn --m
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _best(fn, repeats: int):
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def _layer_shapes(row: dict) -> list:
    shapes = []
    for s in range(row["n_stages"]):
        size = [p // 2 ** s for p in row["patch_size"]]
        c = min(row["base_features"] * 2 ** s, row["max_features"])
        shapes.append((f"stage {s} enc", c, c, size))
        if s < row["n_stages"] - 1:
            shapes.append((f"stage {s} dec", 2 * c, c, size))
    return shapes


def main(argv=None) -> int:
    import bench_nnunet as bench

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--row", default="m1-3mm-118cls-5st", choices=sorted(bench.MATRIX))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--m", type=int, nargs="*", default=[2], choices=[2, 4],
                    help="Winograd output tile edges to measure")
    ap.add_argument("--min-channels", type=int, nargs="+", default=[64],
                    help="per window: smallest channel count put on Winograd (one run each)")
    ap.add_argument("--quick", action="store_true", help="the row's --quick network (window)")
    ap.add_argument("--onednn", action="store_true",
                    help="per window: also every convolution on oneDNN (cpu_conv.py)")
    ap.add_argument("--layers-only", action="store_true")
    ap.add_argument("--window-only", action="store_true")
    args = ap.parse_args(argv)

    import torch
    import torch.nn.functional as F

    from napari_medseg.models.nnunet.winograd import transform_weight, winograd_conv3d, \
        winograd_convolutions, WinogradConv3d

    torch.set_num_threads(args.threads)
    row = bench.MATRIX[args.row]
    load = lambda: f"{os.getloadavg()[0]:.1f}"  # noqa: E731
    print(f"# {args.row}: {args.threads} thread(s), best of {args.repeats}; load average {load()}")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        if not args.window_only:
            print("| layer | C_in -> C_out | map | torch s | " +
                  " | ".join(f"F({m}) s (ratio) | F({m}) err" for m in args.m) + " | load |")
            print("|---|---|---|---|" + "---|---|" * len(args.m) + "---|")
            for label, cin, cout, size in _layer_shapes(row):
                x = torch.randn(1, cin, *size, generator=gen).contiguous(
                    memory_format=torch.channels_last_3d)
                w = torch.randn(cout, cin, 3, 3, 3, generator=gen) / (27 * cin) ** 0.5
                b = torch.randn(cout, generator=gen)
                t_ref, ref = _best(lambda: F.conv3d(x, w, b, padding=1), args.repeats)
                scale = float(ref.abs().max())
                cells = []
                for m in args.m:
                    u = transform_weight(w, m)
                    t, y = _best(lambda: winograd_conv3d(x, w, b, 1, m, u), args.repeats)
                    cells.append(f"{t:.3f} ({t / t_ref:.2f}x) | {float((y - ref).abs().max()) / scale:.1e}")
                print(f"| {label} | {cin} -> {cout} | {'x'.join(map(str, size))} | {t_ref:.3f} | "
                      + " | ".join(cells) + f" | {load()} |", flush=True)
        if args.layers_only:
            return 0
        from napari_medseg.inference.nnunet_predictor import NnUNetPredictor

        workdir = Path(tempfile.mkdtemp(prefix="bench_winograd_"))
        model = NnUNetPredictor.from_folder(bench._make_matrix_model(args.row, args.quick, workdir),
                                            device="cpu", runtime="torch", folds=[0])
        net = model.network.eval().to(memory_format=torch.channels_last_3d)
        shape = (1, model.num_input_channels, *model.plans.patch_size)
        x = torch.randn(shape, generator=gen).contiguous(memory_format=torch.channels_last_3d)
        t_ref, ref = _best(lambda: net.forward_features(x), args.repeats)
        scale = float(ref.abs().max())
        print(f"window, torch conv3d: {t_ref:.2f} s (load {load()})", flush=True)
        for m in args.m:
            for mc in args.min_channels:
                with winograd_convolutions(net, min_channels=mc, m=m) as wnet:
                    n = sum(isinstance(c, WinogradConv3d) for c in wnet.modules())
                    t, y = _best(lambda: wnet.forward_features(x), args.repeats)
                err = float((y - ref).abs().max()) / scale
                print(f"window, F({m}) on {n} layers with >= {mc} channels: {t:.2f} s "
                      f"({t / t_ref:.2f}x), error {err:.1e} (load {load()})", flush=True)
        if args.onednn:
            from napari_medseg.models.nnunet.cpu_conv import onednn_convolutions

            with onednn_convolutions(net) as fast:
                t, y = _best(lambda: fast.forward_features(x), args.repeats)
            err = float((y - ref).abs().max()) / scale
            print(f"window, every convolution on oneDNN, upsampling as GEMM: {t:.2f} s "
                  f"({t / t_ref:.2f}x), error {err:.1e} (load {load()})", flush=True)
        t_ref2, _ = _best(lambda: net.forward_features(x), args.repeats)
        print(f"window, torch conv3d again: {t_ref2:.2f} s (load {load()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
