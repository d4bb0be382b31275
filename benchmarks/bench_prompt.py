"""Interactive (click-prompted) segmentation: set-up time, per-click latency, memory.

Run: ``python benchmarks/bench_prompt.py`` (``--quick``: a 150 x 256 x 256 synthetic
CT instead of 300 x 512 x 512, fewer clicks, no memory run).

For every backend whose code is importable:

* on the real CT (``../shared/data/totalseg_example/example_ct_sm.nii.gz``) and on a
  synthetic 512 x 512 x 300 CT (the sample phantom): set-up time (``set_volume``:
  the per-volume work / image encoding) and the median per-click latency over
  several clicks inside the liver, spleen and kidneys (each object: a first click,
  then further clicks on the same object, as a user refines);
* targets on CPU: region-growing <= 0.5 s per click at 512 x 512 x 300; SAM-Med3D
  <= 50 ms per click once its crop is encoded (SAM-Med3D runs with random weights of
  the released shapes when no checkpoint is installed: same cost);
* memory across 50 repeated clicks (tracemalloc current/peak after clicks 10 and 50,
  and the process's peak RSS): the undo history keeps bounding-box copies only, so
  growth per click is small and bounded by the object's size.

Printed ratios are figure / target (<= 1 meets the target). The machine is shared:
timings are noisy.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "totalseg_example"


def deepest(mask: np.ndarray, spacing) -> tuple:
    d = ndi.distance_transform_edt(mask, sampling=spacing)
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(d)), d.shape))


def clicks_in(mask: np.ndarray, spacing, n: int, seed: int = 0) -> list:
    """The deepest point, then points well inside the object (distance > 3 mm).

    Computed on a 2x subsampled mask for big volumes (choosing clicks is not what
    is measured)."""
    step = 2 if mask.size > 20_000_000 else 1
    small = mask[::step, ::step, ::step]
    d = ndi.distance_transform_edt(small, sampling=np.asarray(spacing) * step)
    inside = np.argwhere(d > min(3.0, 0.5 * d.max()))
    rng = np.random.default_rng(seed)
    out = [tuple(int(v) * step for v in np.unravel_index(int(np.argmax(d)), d.shape))]
    for i in rng.integers(0, len(inside), size=n - 1):
        out.append(tuple(int(v) * step for v in inside[i]))
    return [p for p in out if mask[p]] or out


def load_real():
    import SimpleITK as sitk

    from napari_medseg.io.volume import Volume

    ct = SHARED / "example_ct_sm.nii.gz"
    if not ct.exists():
        return None
    volume = Volume.from_sitk(sitk.ReadImage(str(ct)), modality="CT")
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(SHARED / "example_seg.nii.gz")))
    objects = {"liver": seg == 5, "spleen": seg == 1, "kidney_right": seg == 2, "kidney_left": seg == 3}
    return volume, objects


def load_synthetic(quick: bool):
    from napari_medseg.phantom import make_phantom

    shape = (150, 256, 256) if quick else (300, 512, 512)
    spacing = (2.0, 1.6, 1.6) if quick else (1.0, 0.8, 0.8)
    t = time.perf_counter()
    ph = make_phantom(seed=0, shape=shape, spacing_zyx=spacing)
    print(f"  (phantom {shape} built in {time.perf_counter() - t:.1f} s)")
    ids = ph.label_ids
    objects = {name: ph.labels == ids[name] for name in ("liver", "spleen", "kidney_right", "kidney_left")}
    return ph.ct, objects


def make(backend: str):
    """A session of ``backend``; SAM models get random weights of the released shapes."""
    from napari_medseg.prompts.factory import make_session

    if backend == "sam-med3d":
        from napari_medseg.models.sam_med3d import build_sam_med3d
        from napari_medseg.prompts.sam_med3d_session import SamMed3DSession

        return SamMed3DSession(network=build_sam_med3d(), device="cpu")
    if backend == "3dsam-adapter":
        from napari_medseg.models.sam3d_adapter.model import Sam3DAdapter
        from napari_medseg.prompts.sam3d_adapter_session import Sam3DAdapterSession

        return Sam3DAdapterSession(network=Sam3DAdapter().eval(), device="cpu")
    return make_session(backend)


def bench(backend: str, volume, objects: dict, clicks_per_object: int) -> dict:
    session = make(backend)
    t = time.perf_counter()
    session.set_volume(volume)
    setup = time.perf_counter() - t
    first, further, cpu = [], [], []
    for name, mask in objects.items():
        session.reset()
        for i, p in enumerate(clicks_in(mask, volume.spacing_zyx, clicks_per_object)):
            t = time.perf_counter()
            c = time.process_time()
            update = session.add_point(p)
            dt = time.perf_counter() - t
            cpu.append(time.process_time() - c)
            (first if i == 0 else further).append(dt)
        inter = (update.mask & mask).sum()
        print(f"    {name:13s} first {first[-1] * 1000:7.0f} ms  Dice {2 * inter / (update.mask.sum() + mask.sum()):.3f}")
    return {"setup": setup, "first": first, "further": further, "cpu": cpu}


def memory_run(volume, mask, n: int = 50) -> None:
    from napari_medseg.prompts.region_growing import RegionGrowingSession

    session = RegionGrowingSession()
    session.set_volume(volume)
    points = clicks_in(mask, volume.spacing_zyx, n, seed=1)
    tracemalloc.start()
    marks = {}
    for i, p in enumerate(points, start=1):
        session.add_point(p)
        if i in (10, 50):
            marks[i] = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    vol_mb = volume.array.size * 4 / 1e6
    (c10, p10), (c50, p50) = marks[10], marks[50]
    per_click = (c50 - c10) / 40 / 1e6
    box = session._mask_box
    box_mb = np.prod([s.stop - s.start for s in box]) / 1e6 if box else 0.0
    print(f"  memory, 50 clicks on one object (float32 volume = {vol_mb:.0f} MB):")
    print(f"    traced after 10 clicks {c10 / 1e6:8.1f} MB (peak {p10 / 1e6:.1f}); after 50 {c50 / 1e6:8.1f} MB "
          f"(peak {p50 / 1e6:.1f})")
    print(f"    growth {per_click:.2f} MB per click (the undo history keeps the object's bounding box, {box_mb:.2f} M voxels, "
          f"bit-packed); a full-grid bool mask per click would be {volume.array.size / 1e6:.1f} MB")
    print(f"    peak process RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB "
          f"(= {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1e3 / (volume.array.size * 4):.1f} x float32 volume)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller synthetic CT, fewer clicks")
    parser.add_argument("--backends", default=None, help="comma-separated subset")
    args = parser.parse_args(argv)

    from napari_medseg.prompts.factory import backend_statuses

    statuses = backend_statuses()
    wanted = args.backends.split(",") if args.backends else [s.name for s in statuses]
    targets = {"region-growing": 0.5, "sam-med3d": 0.05}
    clicks = 3 if args.quick else 5

    datasets = []
    real = load_real()
    if real is None:
        print("real CT: not found at", SHARED)
    else:
        datasets.append(("real CT 122x101x30 @3 mm", *real))
    print("building the synthetic CT ...")
    syn_name = "synthetic CT 256x256x150" if args.quick else "synthetic CT 512x512x300 @0.8x0.8x1 mm"
    synthetic = load_synthetic(args.quick)
    datasets.append((syn_name, *synthetic))

    for status in statuses:
        if status.name not in wanted:
            continue
        print(f"\n== {status.name}")
        if not status.available:
            print(f"  not available: {status.reason}")
            continue
        for label, volume, objects in datasets:
            if status.name in ("sam-med3d", "3dsam-adapter") and args.quick and "synthetic" in label:
                objects = dict(list(objects.items())[:1])
            print(f"  {label}")
            try:
                r = bench(status.name, volume, objects, clicks)
            except Exception as exc:  # report, keep going with the other backends
                print(f"    failed: {type(exc).__name__}: {exc}")
                continue
            med_first = statistics.median(r["first"])
            med_further = statistics.median(r["further"]) if r["further"] else float("nan")
            line = (f"    set-up {r['setup']:.2f} s | per click: first {med_first * 1000:.0f} ms (median), "
                    f"further {med_further * 1000:.0f} ms (median of {len(r['further'])})")
            line += f" | CPU time per click {statistics.median(r['cpu']) * 1000:.0f} ms (median)"
            target = targets.get(status.name)
            if target is not None:
                line += f" | target {target * 1000:.0f} ms: ratio first {med_first / target:.2f}, further {med_further / target:.2f}"
            print(line)

    if not args.quick and ("region-growing" in wanted):
        print("\n== memory (region-growing)")
        volume, objects = synthetic
        memory_run(volume, objects["liver"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
