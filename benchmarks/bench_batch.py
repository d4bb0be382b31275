"""Cohort throughput: sequential ``medseg segment`` processes vs ``medseg batch`` engines.

    python benchmarks/bench_batch.py                 # 20 cases, hu-tissue and nnU-Net
    python benchmarks/bench_batch.py --cases 40 --models nnunet

The cohort: copies of the real CT (``../shared/data/totalseg_example/example_ct_sm.nii.gz``,
when present) and synthetic CTs (``napari_medseg.phantom``) of several sizes. Models: the
weights-free ``hu-tissue`` and a random-weight nnU-Net v2 folder (3 mm, 4 classes; what it
predicts is noise, the work is a real network's). For each model, in the same run:

- **sequential**: one ``medseg segment`` process per case, one after the other (what a
  shell loop does: every process imports the stack and loads the model again);
- **local**: ``medseg batch --engine local`` (worker processes, model loaded once each);
- **ray**: ``medseg batch --engine ray`` (starts a local Ray instance, CPU actors);
- **ray-joined**: the same joining a Ray cluster that is already running
  (``--address``), as on a lab's cluster: Ray's own start-up (several seconds) is left out.

Cases per minute and the ratios are printed (targets: both engines >= 1.5x sequential on
2 cores; Ray's wall time <= 1.10x local, judged on the joined run, with the start-up cost
of a fresh local cluster printed beside it). Every run writes into a fresh folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDSEG_SHARED_DIR", REPO.parent / "shared"))
SHAPES = [(24, 96, 96), (32, 128, 128), (40, 160, 160), (30, 112, 144)]


def make_cohort(folder: Path, n: int) -> list:
    from napari_medseg.io import write_volume
    from napari_medseg.phantom import make_phantom

    folder.mkdir(parents=True)
    real = SHARED / "data" / "totalseg_example" / "example_ct_sm.nii.gz"
    n_real = n // 4 if real.is_file() else 0
    notes = []
    for i in range(n_real):
        shutil.copy(real, folder / f"real{i:02d}.nii.gz")
    if n_real:
        notes.append(f"{n_real} copies of the real CT (122x101x30)")
    shapes = []
    for i in range(n - n_real):
        shape = SHAPES[i % len(SHAPES)]
        ph = make_phantom(seed=100 + i, shape=shape, n_lesions=1)
        write_volume(ph.ct, folder / f"synth{i:02d}.nii.gz")
        shapes.append("x".join(map(str, shape)))
    notes.append(f"{n - n_real} synthetic CTs ({', '.join(sorted(set(shapes)))})")
    return notes


def medseg(*args) -> float:
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "napari_medseg.cli", *map(str, args)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"medseg {' '.join(map(str, args))} failed:\n{res.stderr[-2000:]}")
    return time.perf_counter() - t


class RayCluster:
    """A local Ray cluster kept running while the benchmark joins it (stopped on exit)."""

    def __init__(self, cpus: int) -> None:
        code = ("import ray, sys\n"
                f"ctx = ray.init(num_cpus={cpus}, include_dashboard=False, log_to_driver=False)\n"
                "print(ctx.address_info['gcs_address'], flush=True)\n"
                "sys.stdin.read()\n"
                "ray.shutdown()\n")
        # a loopback cluster without Ray's per-cluster auth token, so that the medseg
        # processes (which inherit the variable) can join it
        os.environ["RAY_AUTH_MODE"] = "disabled"
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.address = self.proc.stdout.readline().strip()
        if not self.address:
            self.proc.kill()
            raise SystemExit("could not start a local Ray cluster")

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--models", default="hu-tissue,nnunet")
    ap.add_argument("--workers", type=int, default=None, help="default: CPU cores")
    ap.add_argument("--skip-ray", action="store_true")
    args = ap.parse_args()
    workers = args.workers or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        tmp = Path(tmp)
        notes = make_cohort(tmp / "cohort", args.cases)
        models = {}
        for name in args.models.split(","):
            if name == "nnunet":
                from napari_medseg.testing.nnunet import make_random_model_folder

                models["nnU-Net (random weights)"] = str(make_random_model_folder(
                    tmp / "model", patch_size=(64, 64, 64), base_features=16, max_features=128,
                    spacing=(3.0, 3.0, 3.0)))
            else:
                models[name] = name
        cases = sorted((tmp / "cohort").iterdir())
        print(f"{len(cases)} cases: {'; '.join(notes)}; {os.cpu_count()} CPU cores, "
              f"{workers} workers")
        print(f"{'model':<26} {'mode':<12} {'wall s':>8} {'cases/min':>10} {'vs sequential':>14}")
        results = []
        for label, model in models.items():
            run = tmp / f"run_{len(results)}"
            t_seq = 0.0
            for case in cases:
                t_seq += medseg("segment", case, "-o", run / "seq" / case.name, "--model", model)
            rows = {"sequential": t_seq}
            rows["local"] = medseg("batch", tmp / "cohort", "-o", run / "local", "--model", model,
                                   "--workers", workers)
            if not args.skip_ray:
                rows["ray"] = medseg("batch", tmp / "cohort", "-o", run / "ray", "--model", model,
                                     "--engine", "ray", "--workers", workers)
                cluster = RayCluster(workers)
                try:
                    rows["ray-joined"] = medseg("batch", tmp / "cohort", "-o", run / "ray-joined",
                                                "--model", model, "--engine", "ray", "--address",
                                                cluster.address, "--workers", workers)
                finally:
                    cluster.close()
            for mode, wall in rows.items():
                rate = 60.0 * len(cases) / wall
                print(f"{label:<26} {mode:<12} {wall:>8.1f} {rate:>10.1f} {t_seq / wall:>13.2f}x")
            if "ray" in rows:
                print(f"{label:<26} ray overhead over local: joined cluster "
                      f"{rows['ray-joined'] / rows['local'] - 1:+.1%} (target <= +10 %); "
                      f"starting its own cluster {rows['ray'] / rows['local'] - 1:+.1%}")
            results.append((label, rows))
        print("targets: local and ray >= 1.5x sequential; ray <= 1.10x local wall time")
        for label, rows in results:
            misses = [m for m in ("local", "ray", "ray-joined")
                      if m in rows and rows["sequential"] / rows[m] < 1.5]
            if "ray" in rows and rows["ray-joined"] / rows["local"] > 1.10:
                misses.append("ray overhead")
            print(f"  {label}: " + ("all met" if not misses else "missed: " + ", ".join(misses)))


if __name__ == "__main__":
    main()
