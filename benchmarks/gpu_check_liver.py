"""GPU check of the liver cascade (run by the lead on a CUDA machine; prints PASS/FAIL lines).

Checks: training with AMP (float16 autocast + GradScaler) on CUDA gives finite, decreasing
losses and a checkpoint that loads on the CPU; cascade inference on CUDA (AMP) and on the CPU
agree (label maps differ in < 1 % of voxels); `choose_device("auto")` picks CUDA.

    python benchmarks/gpu_check_liver.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np


def line(ok: bool, what: str) -> bool:
    print(f"{'PASS' if ok else 'FAIL'}: {what}")
    return ok


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("SKIP: no CUDA device")
        return 0
    from napari_medseg.inference.device import choose_device
    from napari_medseg.inference.liver_cascade import segment_liver
    from napari_medseg.io import write_volume
    from napari_medseg.phantom import make_phantom
    from napari_medseg.training.liver import TrainConfig, train_liver_lesion

    results = [line(choose_device("auto").type == "cuda", "choose_device('auto') is cuda")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for seed in (1, 2, 3):
            ph = make_phantom(seed=seed)
            lab = np.where(ph.labels == 1, 1, np.where(ph.labels == 2, 2, 0)).astype(np.uint8)
            write_volume(ph.ct, root / "data" / "imagesTr" / f"c{seed}.nii.gz")
            write_volume(ph.ct.with_array(lab), root / "data" / "labelsTr" / f"c{seed}.nii.gz")
        cfg = TrainConfig(epochs=3, steps_per_epoch=30, features=16, device="cuda", amp=True)
        out = train_liver_lesion(root / "data", root / "out", cfg)
        hist = out["history"]
        losses = [h["stage1_loss"] + h["stage2_loss"] for h in hist]
        results.append(line(all(np.isfinite(losses)), f"AMP losses finite {losses}"))
        results.append(line(losses[-1] < losses[0], "AMP training loss decreases"))
        ph = make_phantom(seed=7)
        gpu, _ = segment_liver(ph.ct, "hybrid-liver", weights=out["best"], device="cuda")
        cpu, _ = segment_liver(ph.ct, "hybrid-liver", weights=out["best"], device="cpu")
        diff = float(np.mean(gpu != cpu))
        results.append(line(diff < 0.01, f"CUDA vs CPU labels differ in {100 * diff:.3f} % of voxels"))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
