"""Benchmark of the weights-free automatic model (hu-tissue): time, peak memory, agreement.

    python benchmarks/bench_auto_segmentation.py            # 512 x 512 x 300 synthetic CT
    python benchmarks/bench_auto_segmentation.py --quick    # 256 x 256 x 150

Prints, for a synthetic CT (the project's phantom) and the real CT in ../shared/data:
wall time, throughput, peak traced memory as a multiple of the float32 volume, and Dice
against the phantom's truth / TotalSegmentator's reference (lungs, bones). The reference
for time is one pass of the cheapest possible work on the same volume (a threshold and a
3D connected-component labelling), measured in the same run, so the ratio says how many
"threshold + label" passes the model costs. Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from napari_medseg.models.hu_tissue import IDS, segment_hu_tissue  # noqa: E402
from napari_medseg.phantom import make_phantom  # noqa: E402


def dice(a, b) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


def measure(volume):
    from scipy import ndimage as ndi

    t0 = time.perf_counter()
    ndi.label(volume.array > -500)
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels = segment_hu_tissue(volume)
    t = time.perf_counter() - t0
    # Memory in a second, traced run (tracing slows numpy down, so it is not timed).
    tracemalloc.start()
    segment_hu_tissue(volume)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return labels, t, t_ref, peak


def report(name, volume, labels, t, t_ref, peak) -> None:
    n = volume.array.size
    f32 = n * 4
    print(f"{name}: {'x'.join(map(str, volume.shape[::-1]))} voxels (x y z), "
          f"spacing {tuple(round(s, 2) for s in volume.spacing)} mm")
    print(f"  hu-tissue     : {t:7.2f} s  ({n / t / 1e6:5.1f} Mvoxel/s)")
    print(f"  reference pass: {t_ref:7.2f} s  (threshold + 3D label)  ratio {t / t_ref:5.1f}x")
    print(f"  peak traced memory: {peak / 2**30:5.2f} GiB = {peak / f32:4.2f}x the float32 volume")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 x 256 x 150 instead of 512 x 512 x 300")
    args = parser.parse_args()
    shape = (150, 256, 256) if args.quick else (300, 512, 512)
    spacing = (2.0, 1.4, 1.4) if args.quick else (1.0, 0.7, 0.7)
    print(f"building a synthetic CT {shape[::-1]} (x y z)...")
    ph = make_phantom(seed=0, shape=shape, spacing_zyx=spacing)
    labels, t, t_ref, peak = measure(ph.ct)
    report("synthetic CT (phantom)", ph.ct, labels, t, t_ref, peak)
    gt, ids = ph.labels, ph.label_ids
    for ours, truth in (("lung", ("lung",)), ("bone", ("vertebrae", "ribs")),
                        ("subcutaneous_fat", ("subcutaneous_fat",)), ("visceral_fat", ("visceral_fat",)),
                        ("skeletal_muscle", ("muscle",))):
        ref = np.isin(gt, [ids[t] for t in truth if t in ids])
        print(f"  Dice {ours:<17} vs phantom {'+'.join(truth):<17}: {dice(labels == IDS[ours], ref):.3f}")
    del ph, labels, gt

    data = REPO.parent / "shared" / "data" / "totalseg_example"
    if (data / "example_ct.nii.gz").exists():
        from napari_medseg.io import read_volume

        for ct_name, ref_name in (("example_ct_sm.nii.gz", "example_seg.nii.gz"),):
            vol = read_volume(data / ct_name)
            vol = vol.with_array(vol.array, modality="CT")
            labels, t, t_ref, peak = measure(vol)
            report(f"real CT ({ct_name})", vol, labels, t, t_ref, peak)
            ref = read_volume(data / ref_name).array
            lungs = np.isin(ref, range(10, 15))
            bones = np.isin(ref, list(range(25, 51)) + list(range(69, 79)) + list(range(91, 118)))
            organs = np.isin(ref, [1, 2, 3, 5, 6])
            back = np.isin(ref, [86, 87])
            print(f"  Dice lung vs TotalSegmentator lung lobes : {dice(labels == IDS['lung'], lungs):.3f}")
            print(f"  Dice bone vs TotalSegmentator bones      : {dice(labels == IDS['bone'], bones):.3f}")
            print(f"  autochthon (back muscles) labelled muscle: {(labels[back] == IDS['skeletal_muscle']).mean():.1%}")
            print(f"  spleen/kidneys/liver/stomach as muscle   : {(labels[organs] == IDS['skeletal_muscle']).mean():.1%}")
        big = read_volume(data / "example_ct.nii.gz")
        big = big.with_array(big.array, modality="CT")
        labels, t, t_ref, peak = measure(big)
        report("real CT (example_ct.nii.gz, 112 slices)", big, labels, t, t_ref, peak)
    else:
        print("(../shared/data not found: real-CT figures skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
