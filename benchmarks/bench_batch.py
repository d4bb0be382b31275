"""Cohort throughput: sequential ``medseg segment`` processes vs ``medseg batch`` engines.

    python benchmarks/bench_batch.py                     # both cohorts, every row
    python benchmarks/bench_batch.py --cohorts small --models nnunet
    python benchmarks/bench_batch.py --cohorts clinical --clinical-models hu-tissue,nnunet
    python benchmarks/bench_batch.py --cohorts small --models hu-tissue --modes local,ray

Two cohorts of ``--cases`` cases (default 20) each, so that both the engines' fixed cost
and what users see on real scans are on record:

- **small**: copies of the small real CT (``../shared/data/totalseg_example/
  example_ct_sm.nii.gz``, 122x101x30 at 3 mm, when present) and small synthetic CTs
  (``napari_medseg.phantom``, 24x96x96 to 40x160x160): a case takes a fraction of a
  second, so the engines' start-up shows;
- **clinical**: copies of the whole real CT (``example_ct.nii.gz``, 122x101x112 at 3 mm)
  and synthetic CTs at clinical size, 512x512 in-plane (0.8 mm) with 150, 200, 250 and
  300 slices (1.5 mm).

Models: the weights-free ``hu-tissue`` and a random-weight nnU-Net v2 folder (3 mm, 4
classes, 64³ patch; what it predicts is noise, the work is a real network's). By default
nnU-Net runs on the small cohort only (``--clinical-models`` adds it to the clinical one:
its sequential baseline alone then takes most of an hour on 2 cores). For each cohort
and model, in the same run:

- **sequential**: one ``medseg segment`` process per case, one after the other (what a
  shell loop does: every process imports the stack and loads the model again);
- **local**: ``medseg batch --engine local`` (worker processes, model loaded once each);
- **ray**: ``medseg batch --engine ray`` (starts a local Ray instance, CPU actors);
- **ray-joined**: the same joining a Ray cluster that is already running
  (``--address``), as on a lab's cluster: Ray's own start-up (several seconds) is left out.

``--modes`` runs a subset of these (the ratios need ``sequential``; Ray's overhead needs
``local``). ``--repeat N`` runs each batch mode N times, interleaved, and reports the median (the
sequential baseline is already a sum over every case's process). Cases per minute and the ratios are printed (targets: both engines >= 1.5x sequential on
2 cores; Ray's wall time <= 1.10x local, judged on the joined run, with the start-up cost
of a fresh local cluster printed beside it), then where each engine's time went (from
``run.json``'s ``engine_timings``: importing and joining or starting Ray, first and last
case back, stopping the workers) and the sum of the cases' own seconds. Every run writes
into a fresh folder; the load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDSEG_SHARED_DIR", REPO.parent / "shared"))
SMALL_SHAPES = [(24, 96, 96), (32, 128, 128), (40, 160, 160), (30, 112, 144)]
CLINICAL_SHAPES = [(150, 512, 512), (200, 512, 512), (250, 512, 512), (300, 512, 512)]
REAL = {"small": ("example_ct_sm.nii.gz", "122x101x30"), "clinical": ("example_ct.nii.gz", "122x101x112")}
MODES = ("sequential", "local", "ray", "ray-joined")


def make_cohort(folder: Path, n: int, kind: str = "small") -> list:
    """Write ``n`` cases: a quarter real CT copies (when ../shared is there), the rest synthetic."""
    from napari_medseg.io import write_volume
    from napari_medseg.phantom import make_phantom

    folder.mkdir(parents=True)
    name, size = REAL[kind]
    real = SHARED / "data" / "totalseg_example" / name
    n_real = n // 4 if real.is_file() else 0
    notes = []
    for i in range(n_real):
        shutil.copy(real, folder / f"real{i:02d}.nii.gz")
    if n_real:
        notes.append(f"{n_real} copies of the real CT ({size})")
    shapes = SMALL_SHAPES if kind == "small" else CLINICAL_SHAPES
    spacing = (2.5, 0.8, 0.8) if kind == "small" else (1.5, 0.8, 0.8)
    used = []
    for i in range(n - n_real):
        shape = shapes[i % len(shapes)]
        ph = make_phantom(seed=100 + i, shape=shape, spacing_zyx=spacing, n_lesions=1)
        write_volume(ph.ct, folder / f"synth{i:02d}.nii.gz")
        used.append("x".join(map(str, shape)))
    notes.append(f"{n - n_real} synthetic CTs ({', '.join(sorted(set(used)))})")
    return notes


def medseg(*args) -> float:
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "napari_medseg.cli", *map(str, args)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"medseg {' '.join(map(str, args))} failed:\n{res.stderr[-2000:]}")
    return time.perf_counter() - t


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


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
        time.sleep(2.0)  # let its own start-up work settle before anything is timed

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_row(cohort: Path, n_cases: int, model: str, run: Path, workers: int,
            modes: tuple = MODES, repeat: int = 1) -> dict:
    """Wall seconds of each of ``modes`` on one cohort and model (the batch modes ``repeat``
    times, interleaved; their median is the figure), plus the last repetition's run.json
    of each."""
    cases = sorted(cohort.iterdir())
    walls = {}
    if "sequential" in modes:
        walls["sequential"] = sum(medseg("segment", case, "-o", run / "seq" / case.name,
                                         "--model", model) for case in cases)
    tries = {mode: [] for mode in modes if mode != "sequential"}
    common = ("--model", model, "--workers", workers)
    for rep in range(repeat):
        if "local" in tries:
            tries["local"].append(medseg("batch", cohort, "-o", run / f"local{rep}", *common))
        if "ray" in tries:
            tries["ray"].append(medseg("batch", cohort, "-o", run / f"ray{rep}", *common,
                                       "--engine", "ray"))
        if "ray-joined" in tries:
            cluster = RayCluster(workers)
            try:
                tries["ray-joined"].append(medseg("batch", cohort, "-o", run / f"ray-joined{rep}",
                                                  *common, "--engine", "ray", "--address",
                                                  cluster.address))
            finally:
                cluster.close()
    walls.update({mode: statistics.median(t) for mode, t in tries.items()})
    docs, outs = {}, {}
    for mode in tries:
        outs[mode] = run / f"{mode}{repeat - 1}"
        docs[mode] = json.loads((outs[mode] / "run.json").read_text())
        assert docs[mode]["counts"]["ok"] == n_cases, (mode, docs[mode]["counts"])
    return {"walls": walls, "tries": tries, "docs": docs, "outs": outs}


def case_seconds(outdir: Path) -> float:
    import csv

    with open(outdir / "results.csv", newline="") as fh:
        return sum(float(r["seconds"]) for r in csv.DictReader(fh))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--cohorts", default="small,clinical")
    ap.add_argument("--models", default="hu-tissue,nnunet", help="models on the small cohort")
    ap.add_argument("--clinical-models", default="hu-tissue", help="models on the clinical cohort")
    ap.add_argument("--workers", type=int, default=None, help="default: CPU cores")
    ap.add_argument("--modes", default=",".join(MODES),
                    help=f"comma-separated subset of {', '.join(MODES)}")
    ap.add_argument("--skip-ray", action="store_true", help="the same as leaving both ray "
                    "modes out of --modes")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs of each batch mode (interleaved); the median is reported")
    args = ap.parse_args()
    workers = args.workers or os.cpu_count() or 1
    modes = tuple(m for m in args.modes.split(",") if m)
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        ap.error(f"--modes: unknown {', '.join(unknown) or 'empty list'}; use {', '.join(MODES)}")
    if args.skip_ray:
        modes = tuple(m for m in modes if not m.startswith("ray"))
    print(f"{os.cpu_count()} CPU cores, {workers} workers; load average at start: {load()}")
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        tmp = Path(tmp)
        nnunet = None
        plan = []
        for kind in args.cohorts.split(","):
            t = time.perf_counter()
            notes = make_cohort(tmp / kind, args.cases, kind)
            print(f"{kind} cohort, {args.cases} cases: {'; '.join(notes)} "
                  f"(written in {time.perf_counter() - t:.0f} s)")
            for name in (args.models if kind == "small" else args.clinical_models).split(","):
                if name == "nnunet":
                    if nnunet is None:
                        from napari_medseg.testing.nnunet import make_random_model_folder

                        nnunet = str(make_random_model_folder(
                            tmp / "model", patch_size=(64, 64, 64), base_features=16,
                            max_features=128, spacing=(3.0, 3.0, 3.0)))
                    plan.append((kind, "nnU-Net (random weights)", nnunet))
                else:
                    plan.append((kind, name, name))
        results = []
        for i, (kind, label, model) in enumerate(plan):
            row = run_row(tmp / kind, args.cases, model, tmp / f"run_{i}", workers, modes,
                          args.repeat)
            results.append((kind, label, row, tmp / f"run_{i}"))
            walls = row["walls"]
            print(f"\n{kind} cohort, {label} (load average now {load()})")
            print(f"  {'mode':<12} {'wall s':>8} {'cases/min':>10} {'vs sequential':>14}")
            for mode, wall in walls.items():
                spread = row["tries"].get(mode, [])
                spread = (f"  (median of {len(spread)}: {', '.join(f'{t:.1f}' for t in spread)})"
                          if len(spread) > 1 else "")
                ratio = (f"{walls['sequential'] / wall:>13.2f}x" if "sequential" in walls
                         else f"{'-':>14}")
                print(f"  {mode:<12} {wall:>8.1f} {60.0 * args.cases / wall:>10.1f} {ratio}{spread}")
            if "local" in walls:
                for mode, what in (("ray-joined", "joined cluster (target <= +10 %)"),
                                   ("ray", "starting its own instance")):
                    if mode in walls:
                        print(f"  ray overhead over local, {what}: "
                              f"{walls[mode] / walls['local'] - 1:+.1%}")
            print("  where the time went (last run of each mode; s from the engine's start; the "
                  "process wall adds Python start-up, discovery and the results table):")
            for mode, doc in row["docs"].items():
                t = doc.get("engine_timings", {})
                stages = ", ".join(f"{k[:-2]} {v:.2f}" for k, v in t.items() if k.endswith("_s"))
                print(f"    {mode:<11} wall {row['tries'][mode][-1]:.2f}: {stages}; cases' own "
                      f"seconds {case_seconds(row['outs'][mode]):.1f}")
        print(f"\nload average at the end: {load()}")
        print("targets: local and ray >= 1.5x sequential; ray (joined) <= 1.10x local wall time")
        for kind, label, row, _ in results:
            walls = row["walls"]
            misses = [m for m in MODES[1:] if m in walls and "sequential" in walls
                      and walls["sequential"] / walls[m] < 1.5]
            if "ray-joined" in walls and "local" in walls \
                    and walls["ray-joined"] / walls["local"] > 1.10:
                misses.append("ray overhead (joined)")
            print(f"  {kind}, {label}: " + ("all met" if not misses else "missed: " + ", ".join(misses)))


if __name__ == "__main__":
    main()
