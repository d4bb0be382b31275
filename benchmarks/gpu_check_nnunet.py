"""GPU check of the nnU-Net engine (run by the lead on a CUDA machine).

Self-contained: builds a random-weight nnU-Net model folder, runs
napari-medseg's engine on CUDA (mixed precision) and on the CPU, and prints
PASS/FAIL lines for

1. CUDA is available and chosen by ``device="auto"``;
2. agreement CUDA (autocast) vs CPU: >= 99.9 % identical voxels;
3. the out-of-memory fallback: a simulated ``torch.cuda.OutOfMemoryError`` while
   accumulating on the GPU moves the accumulators to the CPU, warns, and gives
   the same result;
4. a window that cannot fit even then gives InsufficientMemoryError (not a traceback);
5. optionally, parity with nnunetv2's predictor on CUDA (if nnunetv2 is installed).

Usage: ``python benchmarks/gpu_check_nnunet.py [--size 96]``. Exit status 0 when all pass.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _line(ok: bool, text: str) -> bool:
    print(f"{'PASS' if ok else 'FAIL'}: {text}", flush=True)
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=96, help="edge of the synthetic cube (voxels)")
    args = ap.parse_args(argv)

    import torch

    from napari_medseg.errors import InsufficientMemoryError
    from napari_medseg.inference import sliding_window as sw
    from napari_medseg.io.volume import Volume
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor
    from napari_medseg.testing.nnunet import make_random_model_folder

    ok = True
    if not _line(torch.cuda.is_available(), f"CUDA available (torch {torch.__version__}, CUDA {torch.version.cuda})"):
        return 1
    folder = make_random_model_folder(Path(tempfile.mkdtemp()), n_classes=6, patch_size=(64, 64, 64),
                                      base_features=16, max_features=128, spacing=(2.0, 2.0, 2.0), seed=5)
    rng = np.random.default_rng(0)
    n = args.size
    z, y, x = np.mgrid[0:n, 0:n, 0:n]
    arr = np.where(((z - n / 2) ** 2 + (y - n / 2) ** 2 + (x - n / 2) ** 2) < (n / 3) ** 2, 60.0, -900.0)
    arr += rng.normal(0, 20, arr.shape)
    vol = Volume(arr.astype(np.int16), spacing=(1.5, 1.5, 2.5))

    gpu = NnUNetPredictor.from_folder(folder, device="auto")
    ok &= _line(gpu.device.type == "cuda", f"device='auto' chose {gpu.device}")
    torch.cuda.synchronize()
    t = time.perf_counter()
    out_gpu = gpu.predict(vol)
    torch.cuda.synchronize()
    t_gpu = time.perf_counter() - t
    cpu = NnUNetPredictor.from_folder(folder, device="cpu")
    t = time.perf_counter()
    out_cpu = cpu.predict(vol)
    t_cpu = time.perf_counter() - t
    same = float((out_gpu == out_cpu).mean())
    ok &= _line(same >= 0.999, f"CUDA (autocast fp16) vs CPU: {same * 100:.3f} % identical voxels "
                               f"(GPU {t_gpu:.1f} s, CPU {t_cpu:.1f} s)")

    # simulated OOM while accumulating on the GPU: first add on a CUDA accumulator fails once
    records = []
    handler = logging.Handler()
    handler.emit = lambda rec: records.append(rec.getMessage())
    logging.getLogger("napari_medseg.inference.sliding_window").addHandler(handler)
    original = sw._predict_window
    state = {"raised": False}

    def flaky(network, x, combos, mirror_batch):
        if not state["raised"]:
            state["raised"] = True
            raise torch.cuda.OutOfMemoryError("simulated CUDA out of memory")
        return original(network, x, combos, mirror_batch)

    sw._predict_window = flaky
    try:
        out_fallback = gpu.predict(vol)
    finally:
        sw._predict_window = original
    same_fb = float((out_fallback == out_gpu).mean())
    ok &= _line(any("CPU" in m for m in records) and same_fb >= 0.999,
                f"OOM fallback: warned {records[:1]} and result {same_fb * 100:.3f} % identical")

    def always_oom(network, x, combos, mirror_batch):
        raise torch.cuda.OutOfMemoryError("simulated CUDA out of memory")

    sw._predict_window = always_oom
    try:
        gpu.predict(vol)
        ok &= _line(False, "a window that never fits should raise InsufficientMemoryError")
    except InsufficientMemoryError as exc:
        ok &= _line("device='cpu'" in str(exc), f"persistent OOM -> InsufficientMemoryError: {exc}")
    finally:
        sw._predict_window = original

    try:
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    except ImportError:
        print("SKIP: nnunetv2 not installed; no CUDA parity check against the reference")
    else:
        pred = nnUNetPredictor(tile_step_size=0.5, use_mirroring=True, perform_everything_on_device=True,
                               device=torch.device("cuda"), allow_tqdm=False)
        pred.initialize_from_trained_model_folder(str(folder), use_folds=(0,))
        t = time.perf_counter()
        ref = pred.predict_single_npy_array(vol.array[None].astype(np.float32),
                                            {"spacing": list(vol.spacing_zyx)})
        t_ref = time.perf_counter() - t
        same_ref = float((ref == out_gpu).mean())
        ok &= _line(same_ref >= 0.999, f"CUDA parity with nnUNetPredictor: {same_ref * 100:.3f} % identical "
                                       f"(ours {t_gpu:.1f} s, nnU-Net {t_ref:.1f} s)")
    print("ALL PASS" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
