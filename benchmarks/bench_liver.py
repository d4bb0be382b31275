"""The hybrid liver network on the CPU: PyTorch against OpenVINO, one batch of realistic slices.

For each network (the synthetic-trained shape of ``train_liver_synthetic.py`` and the
``medseg train liver-lesion`` default) and each stage's input (stage 1: a 512x512x300 CT at
0.7 x 0.7 x 1 mm on the 2.5 mm grid; stage 2: a 210 x 180 mm liver box on the 1 mm grid),
prints in one process, same threads: the median time of 8 slices with PyTorch (one batch of 8,
as the cascade runs it) and with the compiled OpenVINO model (compiled for one slab and run
slab by slab, as the cascade runs it), their ratio, the conversion time into an empty cache
(wall and CPU seconds), the time to load the converted model back from the disk cache (a
later run), the error relative to PyTorch's scale and the fraction of identical argmax
labels, and what a whole stage costs (batches x time, plus the conversion on a first run).
Random weights (timing does not depend on them), batch norm with random running statistics
(``napari_medseg.testing.liver.random_net``).

    python benchmarks/bench_liver.py                 # 2 threads, 5 repeats
    python benchmarks/bench_liver.py --threads 1 --repeats 3 --networks synthetic

The machine is shared: the load average is printed with every row; compare the ratios of a row.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time

#: network name -> architecture (HybridLiverNet config)
NETWORKS = {
    "synthetic": {"features": 8, "heads": 2},  # benchmarks/train_liver_synthetic.py
    "default": {"features": 16, "heads": 4},  # medseg train liver-lesion (TrainConfig)
}
#: stage name -> (slices the stage runs, in-plane size): 512 x 512 x 300 CT at 0.7 x 0.7 x 1 mm
STAGES = {
    "stage1": (120, (143, 143)),  # whole CT on the 2.5 mm grid
    "stage2": (88, (180, 210)),  # a 210 x 180 x 200 mm liver box on the 1 x 1 x 2.5 mm grid
}
BATCH = 8  # predict_probability's batch


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def median_time(fn, x, repeats: int) -> float:
    fn(x)  # warm-up (allocations, oneDNN primitives)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def row(name: str, config: dict, stage: str, repeats: int) -> None:
    import torch

    from napari_medseg.inference.runtimes import compile_module, resolve_runtime

    from napari_medseg.testing.liver import random_net

    slices, (h, w) = STAGES[stage]
    net = random_net(config, seed=0)
    x = torch.rand((BATCH, net.in_channels, h, w), generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as cache:
        os.environ["MEDSEG_COMPILED_DIR"] = cache
        report = resolve_runtime("openvino", "cpu")
        cpu0 = time.process_time()
        fn = compile_module(net, (1, *x.shape[1:]), report=report, what=f"{name} {stage}")
        if fn is None:
            print(f"{name:9s} {stage}: OpenVINO fell back: {report.reason}")
            return
        convert_s, convert_cpu = report.convert_s, time.process_time() - cpu0
        again = resolve_runtime("openvino", "cpu")
        fn = compile_module(net, (1, *x.shape[1:]), report=again, what=f"{name} {stage}")
        assert again.cache_hits == 1, "the second compile did not read the disk cache"
        cached_s = again.convert_s
    with torch.inference_mode():
        ref = net(x)
        t_torch = median_time(net, x, repeats)
    slab_by_slab = lambda t: torch.cat([fn(t[i:i + 1]) for i in range(len(t))])  # noqa: E731
    out = slab_by_slab(x)
    t_ov = median_time(slab_by_slab, x, repeats)
    err = float((out - ref).abs().max() / ref.abs().max())
    same = float((out.argmax(1) == ref.argmax(1)).float().mean())
    batches = math.ceil(slices / BATCH)
    print(f"{name:9s} {stage} {BATCH}x{net.in_channels}x{h}x{w}: torch {t_torch * 1e3:7.0f} ms, "
          f"OpenVINO {t_ov * 1e3:6.0f} ms ({t_ov / t_torch:.2f}x); convert {convert_s:5.1f} s "
          f"({convert_cpu:.1f} s CPU), "
          f"from cache {cached_s:4.1f} s; error {err:.1e} of scale, argmax {same * 100:.3f} % "
          f"identical | stage ({slices} slices): torch {batches * t_torch:5.1f} s, OpenVINO "
          f"{batches * t_ov:4.1f} s + convert {convert_s:.1f} s (first run) or + {cached_s:.1f} s "
          f"(cached) | load {load()}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--networks", nargs="+", choices=tuple(NETWORKS), default=list(NETWORKS))
    parser.add_argument("--stages", nargs="+", choices=tuple(STAGES), default=list(STAGES))
    args = parser.parse_args(argv)

    import warnings

    import openvino
    import torch

    warnings.simplefilter("ignore")  # tracer warnings of the conversion
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, OpenVINO {openvino.__version__}, {args.threads} thread(s), "
          f"median of {args.repeats}; load {load()} (shared machine: compare within a row)")
    for name in args.networks:
        for stage in args.stages:
            row(name, NETWORKS[name], stage, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
