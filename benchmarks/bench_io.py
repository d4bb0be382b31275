"""Reading/writing speed and memory of napari-medseg's io against plain SimpleITK.

    python benchmarks/bench_io.py            # 512 x 512 x 300 int16 CT-like volume
    python benchmarks/bench_io.py --quick    # 512 x 512 x 60

For each format: write time (atomic write_volume vs sitk.WriteImage), read time
(read_volume with and without payload verification vs sitk.ReadImage) and the peak
resident memory of a fresh process reading the file, as a multiple of the array size.
Timings on a shared machine are noisy: compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def ct_like(n_slices: int, seed: int = 0) -> np.ndarray:
    """Air around an elliptic body of soft tissue with noise and a bright spine (int16 HU)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:512, :512]
    body = ((x - 256) / 200.0) ** 2 + ((y - 256) / 150.0) ** 2 <= 1
    spine = ((x - 256) / 25.0) ** 2 + ((y - 350) / 25.0) ** 2 <= 1
    vol = np.full((n_slices, 512, 512), -1000, np.int16)
    for z in range(n_slices):
        sl = vol[z]
        sl[body] = (40 + rng.normal(0, 15, int(body.sum()))).astype(np.int16)
        sl[spine] = 700
    return vol


def timed(fn, repeat: int = 2) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


PEAK = """
import resource, sys
import numpy as np
import SimpleITK as sitk
from napari_medseg.io import read_volume


def high_water_kib():
    # VmHWM belongs to this process image; ru_maxrss is inherited from the parent on fork.
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


mode, path = sys.argv[1], sys.argv[2]
base = high_water_kib()
if mode == "medseg":
    a = read_volume(path).array
else:
    a = sitk.GetArrayFromImage(sitk.ReadImage(path))
print(f"{(high_water_kib() - base) * 1024 / a.nbytes:.3f}")
"""


def peak_ratio(mode: str, path: Path) -> float:
    # Peak resident memory added by the read, in units of the array size (libraries excluded).
    out = subprocess.run([sys.executable, "-c", PEAK, mode, str(path)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 slices instead of 300")
    args = parser.parse_args()
    import SimpleITK as sitk

    from napari_medseg.io import Volume, read_volume, write_volume

    n = 60 if args.quick else 300
    vol = Volume(ct_like(n), spacing=(0.8, 0.8, 2.5), origin=(-200.0, -200.0, 0.0), modality="CT")
    mb = vol.array.nbytes / 2**20
    print(f"volume 512 x 512 x {n} int16 ({mb:.0f} MiB); best of 2 runs; shared machine, noisy")
    print(f"{'format':8} {'write s':>8} {'sitk w':>7} {'read s':>7} {'no-verify':>9} {'sitk r':>7} "
          f"{'read/sitk':>9} {'peak xarr':>9} {'sitk peak':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for ext in (".nii.gz", ".nii", ".nrrd", ".mha"):
            path = Path(tmp) / f"ct{ext}"
            ref_path = Path(tmp) / f"ref{ext}"
            image = vol.to_sitk()
            t_write = timed(lambda: write_volume(vol, path), 1)
            t_sitk_w = timed(lambda: sitk.WriteImage(image, str(ref_path), ext != ".nii"), 1)
            t_read = timed(lambda: read_volume(path))
            t_fast = timed(lambda: read_volume(path, verify=False))
            t_sitk = timed(lambda: sitk.GetArrayFromImage(sitk.ReadImage(str(path))))
            print(f"{ext:8} {t_write:8.2f} {t_sitk_w:7.2f} {t_read:7.2f} {t_fast:9.2f} {t_sitk:7.2f} "
                  f"{t_read / t_sitk:9.2f} {peak_ratio('medseg', path):9.2f} {peak_ratio('sitk', path):9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
