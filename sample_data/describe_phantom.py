"""Print a Markdown description of a phantom: geometry, labels (volume, HU), lesions.

    python sample_data/describe_phantom.py [--seed 0] [--shape 100,256,256] [--spacing 2.5,0.8,0.8]

The tables in sample_data/README.md were produced with the defaults (the napari sample).
"""

from __future__ import annotations

import argparse

import numpy as np

from napari_medseg.phantom import make_phantom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shape", default="100,256,256")
    parser.add_argument("--spacing", default="2.5,0.8,0.8")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    spacing = tuple(float(v) for v in args.spacing.split(","))
    p = make_phantom(seed=args.seed, shape=shape, spacing_zyx=spacing)
    ct, labels = p.ct.array, p.labels
    print(f"seed {p.seed}; grid {shape[2]} x {shape[1]} x {shape[0]} (x, y, z); spacing "
          f"{spacing[2]} x {spacing[1]} x {spacing[0]} mm; origin {tuple(round(o, 2) for o in p.ct.origin)} mm; "
          f"HU range {ct.min()} .. {ct.max()}\n")
    print("| id | name | voxels | volume (ml) | median HU | 5-95 % HU |")
    print("|---:|---|---:|---:|---:|---|")
    for i, name in p.names.items():
        mask = labels == i
        n = int(mask.sum())
        values = ct[mask]
        lo, hi = np.percentile(values, [5, 95]) if n else (np.nan, np.nan)
        print(f"| {i} | {name} | {n} | {n * p.ct.voxel_volume_ml:.1f} | {np.median(values):.0f} | "
              f"{lo:.0f} .. {hi:.0f} |")
    print("\n| lesion | centre x, y, z (mm) | semi-axes x, y, z (mm) | volume (ml) analytic / voxels |"
          " longest axial diameter (mm) | HU |")
    print("|---:|---|---|---|---:|---:|")
    for i, l in enumerate(p.lesions):
        c = ", ".join(f"{v:.1f}" for v in l.center_xyz_mm)
        a = ", ".join(f"{v:.2f}" for v in l.semi_axes_xyz_mm)
        print(f"| {i + 1} | {c} | {a} | {l.volume_ml:.2f} / {p.lesion_voxel_volume_ml(i):.2f} | "
              f"{l.longest_axial_diameter_mm:.1f} | {l.hu:.0f} |")


if __name__ == "__main__":
    main()
