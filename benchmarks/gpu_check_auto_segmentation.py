"""GPU check of automatic segmentation (run by the lead on a CUDA machine).

    python benchmarks/gpu_check_auto_segmentation.py

Prints PASS/FAIL lines: `segment()` with device "auto" picks CUDA, a random-weight nnU-Net
folder gives the same labels on CUDA as on CPU (>= 99.9 % identical voxels: mixed precision
may flip ties), the merged TotalSegmentator-style path runs on CUDA, and timings.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def line(ok: bool, what: str) -> bool:
    print(f"{'PASS' if ok else 'FAIL'}: {what}")
    return ok


def main() -> int:
    import torch

    from napari_medseg.inference.device import choose_device
    from napari_medseg.inference.segment import segment_with_info
    from napari_medseg.io.volume import Volume
    from napari_medseg.testing.nnunet import make_random_model_folder

    results = []
    if not torch.cuda.is_available():
        print("SKIP: no CUDA device")
        return 0
    results.append(line(choose_device("auto").type == "cuda", "choose_device('auto') is cuda"))
    tmp = Path(tempfile.mkdtemp())
    folder = make_random_model_folder(tmp / "Dataset900_gpu", n_classes=5, patch_size=(64, 64, 64),
                                      spacing=(1.5, 1.5, 1.5), base_features=16, max_features=128)
    rng = np.random.default_rng(0)
    vol = Volume(rng.normal(0, 300, (120, 160, 160)).astype(np.float32), spacing=(1.2, 1.2, 2.0),
                 modality="CT")
    t0 = time.perf_counter()
    cpu = segment_with_info(vol, folder, device="cpu")
    t_cpu = time.perf_counter() - t0
    t0 = time.perf_counter()
    gpu = segment_with_info(vol, folder, device="cuda")
    t_gpu = time.perf_counter() - t0
    same = float((cpu.labels == gpu.labels).mean())
    results.append(line(cpu.labels.shape == gpu.labels.shape == vol.shape, "shapes match the input grid"))
    results.append(line(same >= 0.999, f"CPU vs CUDA identical voxels {same:.5f} (>= 0.999)"))
    print(f"time: cpu {t_cpu:.1f} s, cuda {t_gpu:.1f} s ({t_cpu / max(t_gpu, 1e-9):.1f}x)")
    hu = segment_with_info(Volume(np.full((20, 64, 64), 40, np.int16), modality="CT"), "hu-tissue",
                           device="cuda")
    results.append(line(hu.labels.shape == (20, 64, 64), "hu-tissue ignores the device and runs"))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
