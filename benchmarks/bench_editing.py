"""Benchmark: editing operations and statistics on a 512 x 512 x 300 label map (CPU).

Run ``python benchmarks/bench_editing.py`` (``--quick`` for 256 x 256 x 150).
Prints each operation's wall time and, where a straightforward whole-volume
implementation exists, the time of that naive baseline measured in the same run and
the speed-up (naive / ours). Timings on a shared machine are noisy.

The label map is the synthetic abdominal phantom's layout scaled to the size asked
for: a large body outline, organs, small lesions and scattered islands, so that
bounding-box restriction matters as it does in real CTs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage


def make_labels(shape, seed=0, scattered_islands=0):
    """A realistic-ish label map: body (1) containing organs (2..6), lesions (7), a few
    islands next to the liver (as model outputs have) and optionally islands of the
    liver label scattered over the whole volume (worst case for bounding boxes)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    nz, ny, nx = shape
    lab = np.zeros(shape, np.uint8)

    def ellipsoid(c, r):
        return ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 <= 1

    lab[ellipsoid((nz / 2, ny / 2, nx / 2), (nz * 0.55, ny * 0.38, nx * 0.45))] = 1  # body
    organs = [((nz * .5, ny * .45, nx * .35), (nz * .25, ny * .15, nx * .12), 2),
              ((nz * .5, ny * .45, nx * .68), (nz * .15, ny * .08, nx * .07), 3),
              ((nz * .45, ny * .6, nx * .4), (nz * .12, ny * .05, nx * .05), 4),
              ((nz * .45, ny * .6, nx * .6), (nz * .12, ny * .05, nx * .05), 5),
              ((nz * .5, ny * .55, nx * .5), (nz * .45, ny * .02, nx * .02), 6)]
    for c, r, i in organs:
        lab[ellipsoid(c, r)] = i
    for _ in range(8):  # lesions inside the liver (2)
        c = (nz * rng.uniform(.4, .6), ny * rng.uniform(.4, .5), nx * rng.uniform(.3, .4))
        lab[ellipsoid(c, (4, 6, 6)) & (lab == 2)] = 7
    near = np.array([nz * .5, ny * .45, nx * .35])[:, None] + rng.normal(0, 1, (3, 30)) * np.array(
        [nz * .3, ny * .2, nx * .15])[:, None]
    near = np.clip(near.astype(int), 0, np.array(shape)[:, None] - 1)
    lab[tuple(near)] = 2  # islands next to the liver
    if scattered_islands:
        idx = rng.integers(0, np.array(shape)[:, None], size=(3, scattered_islands))
        lab[tuple(idx)] = 2
    return lab


_CPU = []  # CPU seconds of the last timeit (all threads of this process)


def timeit(fn, repeat=1):
    """Best wall time of ``repeat`` runs; the CPU time of that run goes to ``_CPU``."""
    best = np.inf
    out = None
    for _ in range(repeat):
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = fn()
        wall = time.perf_counter() - t0
        if wall < best:
            best = wall
            _CPU[:] = [time.process_time() - c0]
    return best, out


def naive_islands(lab, spacing, min_ml):
    """Whole-volume baseline: label every id over the full volume (no bounding boxes)."""
    out = lab.copy()
    vox = np.prod(spacing) / 1000
    for i in np.unique(lab)[1:]:
        comp, n = ndimage.label(lab == i)
        sizes = np.bincount(comp.ravel())
        small = sizes * vox < min_ml
        small[0] = False
        out[small[comp]] = 0
    return out


def naive_grow(lab, spacing, d, label):
    """Whole-volume baseline: EDT of the full volume."""
    dist = ndimage.distance_transform_edt(lab != label, sampling=spacing)
    out = lab.copy()
    out[(dist <= d) & (lab == 0)] = label
    return out


def naive_stats(image, lab):
    """Per-label boolean masks over the whole volume."""
    rows = []
    for i in np.unique(lab)[1:]:
        m = lab == i
        v = image[m].astype(np.float64)
        rows.append((i, m.sum(), v.mean(), v.std(), v.min(), v.max(), np.median(v), np.argwhere(m).mean(0)))
    return rows


def main(argv=None):
    from napari_medseg import editing
    from napari_medseg.analysis.statistics import label_statistics
    from napari_medseg.editing.autosave import Autosaver
    from napari_medseg.io.volume import Volume

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 x 256 x 150 instead of 512 x 512 x 300")
    parser.add_argument("--skip-naive", action="store_true", help="do not time the naive baselines")
    args = parser.parse_args(argv)
    shape = (150, 256, 256) if args.quick else (300, 512, 512)
    spacing = (2.5, 0.8, 0.8) if not args.quick else (5.0, 1.6, 1.6)
    t0 = time.perf_counter()
    lab = make_labels(shape)
    noisy = make_labels(shape, scattered_islands=2000)
    rng = np.random.default_rng(1)
    image = (lab.astype(np.int16) * 40 - 100 + rng.integers(-30, 30, shape, dtype=np.int16)).astype(np.int16)
    print(f"label map {shape[2]}x{shape[1]}x{shape[0]} (x, y, z), spacing {spacing[::-1]} mm, "
          f"{len(np.unique(lab)) - 1} labels; built in {time.perf_counter() - t0:.1f} s")
    print("wall = elapsed seconds; cpu = CPU seconds of this process (all threads). On a busy\n"
          "machine wall >> cpu; on an idle one wall ~ cpu / threads used.")
    print(f"{'operation':<46}{'ours wall':>10}{'ours cpu':>10}{'naive wall':>11}{'speed-up':>10}")

    def row(name, ours, naive=None, cpu=None):
        cpu_text = f"{cpu:>10.2f}" if cpu is not None else f"{'':>10}"
        if naive is None:
            print(f"{name:<46}{ours:>10.2f}{cpu_text}{'':>11}{'':>10}", flush=True)
        else:
            print(f"{name:<46}{ours:>10.2f}{cpu_text}{naive:>11.2f}{naive / ours:>9.1f}x", flush=True)

    ops = [
        ("remove small islands < 0.1 mL (all labels)", lambda: editing.remove_small_islands(lab, spacing, 0.1),
         lambda: naive_islands(lab, spacing, 0.1)),
        ("  same, 2000 islands scattered over the volume", lambda: editing.remove_small_islands(noisy, spacing, 0.1),
         lambda: naive_islands(noisy, spacing, 0.1)),
        ("keep largest component (label 2)", lambda: editing.keep_largest_component(lab, spacing, label=2), None),
        ("split components (label 7)", lambda: editing.split_components(lab, spacing, 7), None),
        ("fill holes 3D (all labels)", lambda: editing.fill_holes(lab, spacing), None),
        ("fill holes slice by slice (label 2)", lambda: editing.fill_holes(lab, spacing, label=2, slice_by_slice=True), None),
        ("median smoothing 3 mm (label 2)", lambda: editing.smooth(lab, spacing, 3.0, "median", label=2), None),
        ("closing 3 mm (label 2)", lambda: editing.smooth(lab, spacing, 3.0, "closing", label=2), None),
        ("opening 2 mm (all labels)", lambda: editing.smooth(lab, spacing, 2.0, "opening"), None),
        ("grow 5 mm (label 2)", lambda: editing.grow(lab, spacing, 5.0, label=2),
         lambda: naive_grow(lab, spacing, 5.0, 2)),
        ("  same, 2000 islands scattered over the volume", lambda: editing.grow(noisy, spacing, 5.0, label=2),
         lambda: naive_grow(noisy, spacing, 5.0, 2)),
        ("grow 3 mm (all labels, nearest wins)", lambda: editing.grow(lab, spacing, 3.0), None),
        ("shrink 3 mm (label 1, body)", lambda: editing.shrink(lab, spacing, 3.0, label=1), None),
        ("fill between slices (label 2, every 5th slice)", None, None),
        ("merge labels 4,5 -> 4", lambda: editing.merge_labels(lab, [4, 5], 4), None),
        ("threshold fill 100..200 HU in label-free voxels", lambda: editing.threshold_fill(lab, image, 100, 200, 9), None),
    ]
    sparse = lab.copy()
    keep = np.zeros(shape[0], bool)
    keep[::5] = True
    sparse[~keep] = np.where(sparse[~keep] == 2, 0, sparse[~keep])
    for name, fn, naive in ops:
        if name.startswith("fill between"):
            fn = lambda: editing.fill_between_slices(sparse, spacing, label=2)  # noqa: E731
        t, _ = timeit(fn)
        cpu = _CPU[0]
        tn = timeit(naive)[0] if naive is not None and not args.skip_naive else None
        row(name, t, tn, cpu)

    labels = Volume(lab, spacing=spacing[::-1])
    img = Volume(image, spacing=spacing[::-1])
    t, _ = timeit(lambda: label_statistics(img, labels))
    cpu = _CPU[0]
    tn = None if args.skip_naive else timeit(lambda: naive_stats(image, lab))[0]
    row("label_statistics (7 labels)", t, tn, cpu)
    # many small structures (like TotalSegmentator's 117 classes): 8x8x4 grid of blocks
    many = lab.copy()
    gz, gy, gx = (np.arange(s) * k // s for s, k in zip(shape, (4, 8, 8)))
    block = 10 + gz[:, None, None] * 64 + gy[None, :, None] * 8 + gx[None, None, :]
    many[lab == 1] = block[lab == 1].astype(np.uint8) % 250 + 1
    labels_many = Volume(many, spacing=spacing[::-1])
    n_many = len(np.unique(many)) - 1
    t, _ = timeit(lambda: label_statistics(img, labels_many))
    cpu = _CPU[0]
    tn = None if args.skip_naive else timeit(lambda: naive_stats(image, many))[0]
    row(f"label_statistics ({n_many} labels)", t, tn, cpu)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        saver = Autosaver(d, session="bench")
        t, _ = timeit(lambda: saver.save("bench", lab, force=True))
        row("autosave snapshot (compressed, fsync)", t, cpu=_CPU[0])
        t, _ = timeit(lambda: saver.changed("bench", lab))
        row("autosave change check (hash)", t, cpu=_CPU[0])


if __name__ == "__main__":
    main()
