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
* the protocol's corrective clicks (clicks 2..5, below) on the 512 x 512 x 300 CT: the
  latency of a positive click in a miss and a negative click in a leak;
* memory across 50 repeated clicks (tracemalloc current/peak after clicks 10 and 50,
  and the process's peak RSS): the undo history keeps bounding-box copies only, so
  growth per click is small and bounded by the object's size.

Printed ratios are figure / target (<= 1 meets the target). The machine is shared:
timings are noisy.

``--protocol``: the standard interactive-segmentation protocol (``napari_medseg.testing.
clicker``): click 1 at the deepest point of the reference mask, clicks 2..5 at the deepest
point of the largest error region (positive when the missed part is larger than the leak,
negative otherwise). Objects: every connected part of >= 200 voxels of every label of the
real CT (TotalSegmentator reference, 3 mm, and the same scan resampled to 1.5 mm), of the
CT phantom and of its MR-like contrast (``clicker.mr_like``). Prints Dice after clicks
1..5 per object, the mean per data set, per structure class (:func:`structure_class`) and
per modality (all data, and the real data only), the corrections that lowered Dice by more than 0.02, and the latency per click. ``--backends`` picks the backends
(default: region-growing, plus sam-med3d / nninteractive when their weights are installed).
``--explain`` adds, under each object, one line per correction: its sign, the image value at
the click, the size of the error region it was placed in, and the voxels it added and removed
(how many inside the reference and inside that region), e.g. ``--protocol --explain --only
pancreas --data "real CT 3"``. ``--fine-labels linear`` takes the 1.5 mm set's reference
labels interpolated like its image instead of copied from the 3 mm voxels (:func:`_resample`).
``--variants all`` (or some of ``aniso,aniso-noise,noise,fine-noise``) adds the real CT as
scans users load differ from it: on a 1 x 1 x 3 mm grid (fine in plane, thick slices), with
correlated noise (10 HU at 3 mm, 15 HU at 1 x 1 x 3 and 1.5 mm), each in its own mean, e.g.
``--protocol --variants all --data variant``; ``--noise-seed N`` draws other noise.

``--first-clicks N``: on the protocol's objects, one click at the deepest point and at N
other points at least half as deep (where else a user clicks first), each on a reset
session; prints the deepest point's Dice, the mean and minimum over the others, and the
means per modality (:func:`first_click_spread`).
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


def correction_latency(volume, objects: dict) -> None:
    """Latency of the protocol's corrective clicks (positive in a miss, negative in a leak)."""
    from napari_medseg.prompts.region_growing import RegionGrowingSession
    from napari_medseg.testing.clicker import run_protocol

    session = RegionGrowingSession()
    session.set_volume(volume)
    seconds = []
    for name, mask in objects.items():
        r = run_protocol(session, mask, 5)
        seconds += r.seconds[1:]
        print(f"    {name:13s} Dice " + " ".join(f"{d:.3f}" for d in r.dice) + "  correction ms "
              + " ".join(f"{t * 1000:.0f}" for t in r.seconds[1:]))
    if seconds:
        print(f"    corrective click: median {statistics.median(seconds) * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms "
              f"(target 500 ms: ratio {statistics.median(seconds) / 0.5:.2f} median, {max(seconds) / 0.5:.2f} max)")


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


#: ``--variants``: the real CT as scans users load differ from it, (name, grid x/y/z in mm
#: or None for the native 3 mm, added noise SD in HU). Real thin-slice CT is noisier than
#: this 3 mm scan (noise grows as the voxel shrinks) and mostly anisotropic (fine in plane,
#: 2.5-5 mm slices); an upsampled image is smoother than either.
VARIANTS = {
    "aniso": ("real CT 1x1x3 mm (variant)", (1.0, 1.0, 3.0), 0.0),
    "aniso-noise": ("real CT 1x1x3 mm + noise 15 HU (variant)", (1.0, 1.0, 3.0), 15.0),
    "noise": ("real CT 3 mm + noise 10 HU (variant)", None, 10.0),
    "fine-noise": ("real CT 1.5 mm + noise 15 HU (variant)", (1.5, 1.5, 1.5), 15.0),
}


def protocol_datasets(quick: bool = False, t2: bool = False, fine_labels: str = "nearest",
                      variants: str = "", noise_seed: int = 0) -> list:
    """``(name, modality, volume, {object: mask})`` for the protocol run.

    ``t2`` adds the phantom's T2-weighted-like contrast (bright discs and canal, a rib only
    1.7 noise levels darker than muscle); it is opt-in so that the default MR means stay
    those of the T1-like contrast. ``fine_labels`` is how the 1.5 mm set's reference is
    resampled (:func:`_resample`). ``variants``: comma-separated keys of :data:`VARIANTS`
    (``"all"``: every one), the real CT on another grid and/or with noise added
    (:func:`_with_noise`), after the other sets; ``noise_seed`` picks another noise draw.
    """
    import SimpleITK as sitk

    from napari_medseg.io.volume import Volume
    from napari_medseg.phantom import make_phantom
    from napari_medseg.testing.clicker import mr_like, structures

    out = []
    ct = SHARED / "example_ct_sm.nii.gz"
    if ct.exists():
        image = sitk.ReadImage(str(ct))
        seg_image = sitk.ReadImage(str(SHARED / "example_seg.nii.gz"))
        names = _totalseg_names(SHARED / "example_seg.nii.gz")
        volume = Volume.from_sitk(image, modality="CT")
        seg = sitk.GetArrayFromImage(seg_image)
        out.append(("real CT 3 mm", "CT", volume, structures(seg, names)))
        if not quick:
            # The same scan on a 1.5 mm grid (linear image, nearest labels): finer voxels,
            # the object sizes in mm unchanged.
            fine_img, fine_seg = _resample(image, seg_image, 1.5, labels=fine_labels)
            name = "real CT 1.5 mm" + (" (linear labels)" if fine_labels == "linear" else "")
            out.append((name, "CT", Volume.from_sitk(fine_img, modality="CT"),
                        structures(sitk.GetArrayFromImage(fine_seg), names)))
    else:
        print("real CT: not found at", SHARED, "(protocol runs on the phantoms only)")
    shape, spacing = ((48, 128, 128), (3.0, 2.0, 2.0)) if quick else ((64, 192, 192), (3.0, 1.5, 1.5))
    ph = make_phantom(seed=0, shape=shape, spacing_zyx=spacing)
    objects = structures(ph.labels, ph.names)
    out.append((f"CT phantom {shape[2]}x{shape[1]}x{shape[0]}", "CT", ph.ct, objects))
    out.append((f"MR-like phantom {shape[2]}x{shape[1]}x{shape[0]}", "MR", mr_like(ph), objects))
    if t2:
        out.append((f"MR-like T2 phantom {shape[2]}x{shape[1]}x{shape[0]}", "MR",
                    mr_like(ph, weighting="T2"), objects))
    keys = list(VARIANTS) if variants == "all" else [v.strip() for v in (variants or "").split(",") if v.strip()]
    unknown = [k for k in keys if k not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)} or 'all'")
    if keys and not ct.exists():
        print("variants: the real CT is not found at", SHARED, "(none run)")
        keys = []
    for key in keys:
        name, grid, noise_sd = VARIANTS[key]
        img, lab = (image, seg_image) if grid is None else _resample(image, seg_image, grid)
        if noise_sd:
            # One seed per variant, whichever others run with it; ``noise_seed`` draws
            # another noise image (a result that holds for one draw only is luck).
            img = _with_noise(img, noise_sd, seed=list(VARIANTS).index(key) + 100 * noise_seed)
            if noise_seed:
                name = name.replace(" (variant)", f", draw {noise_seed} (variant)")
        out.append((name, "CT", Volume.from_sitk(img, modality="CT"),
                    structures(sitk.GetArrayFromImage(lab), names)))
    return out


def _with_noise(image, sd_hu: float, correlation_mm: float = 0.8, seed: int = 0):
    """``image`` plus Gaussian noise of ``sd_hu``, correlated over ``correlation_mm``
    (a Gaussian kernel's sigma, like a CT reconstruction kernel's), rounded to integers."""
    import SimpleITK as sitk

    array = sitk.GetArrayFromImage(image).astype(np.float32)
    noise = np.random.default_rng(seed).standard_normal(array.shape).astype(np.float32)
    sigma = [correlation_mm / s for s in image.GetSpacing()[::-1]]
    noise = ndi.gaussian_filter(noise, sigma)
    noise *= np.float32(sd_hu / noise.std())
    out = sitk.GetImageFromArray(np.round(array + noise).astype(np.int16))
    out.CopyInformation(image)
    return out


def _totalseg_names(path) -> dict:
    """Label id -> name from the file's XML header extension (empty when it has none)."""
    from napari_medseg.io.label_names import label_table_from_nifti

    table = label_table_from_nifti(path)
    return {} if table is None else {int(i): str(n) for i, n in table.names.items()}


def _resample(image, seg, spacing_mm, labels: str = "nearest"):
    """``image`` (linear) and ``seg`` on a ``spacing_mm`` grid aligned with it.

    ``spacing_mm``: one spacing for an isotropic grid, or (x, y, z) in mm.

    ``labels="nearest"`` copies each coarse voxel's label onto the fine voxels inside it;
    ``"linear"`` interpolates each label's indicator like the image and keeps the largest.
    """
    import SimpleITK as sitk

    import numpy as np

    spacing = np.broadcast_to(np.asarray(spacing_mm, float), (3,))
    size = [int(round(n * s / t)) for n, s, t in zip(image.GetSize(), image.GetSpacing(), spacing)]
    # The fine grid covers the coarse voxels' extent, whole fine voxels inside each coarse
    # one: with the coarse origin kept, every other fine voxel centre would lie on a coarse
    # voxel boundary, where nearest-neighbour labels break the tie to one side and shift
    # the reference half a fine voxel against the image.
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    half = 0.5 * (spacing - np.asarray(image.GetSpacing(), float))
    origin = tuple(float(v) for v in np.asarray(image.GetOrigin(), float) + direction @ half)

    def one(img, interp, pixel=None):
        return sitk.Resample(img, size, sitk.Transform(), interp, origin, tuple(float(t) for t in spacing),
                             img.GetDirection(), 0, img.GetPixelID() if pixel is None else pixel)

    if labels == "nearest":
        return one(image, sitk.sitkLinear), one(seg, sitk.sitkNearestNeighbor)
    # Each label's indicator interpolated like the image, the largest weight wins
    # (background competing too): the boundary the interpolated image implies. For an
    # object of uniform intensity on a uniform background, the image thresholded half-way
    # is exactly this label; nearest labels keep the coarse voxels' staircase instead.
    seg_array = sitk.GetArrayFromImage(seg)
    best = best_weight = None
    for value in np.unique(seg_array):
        indicator = sitk.GetImageFromArray((seg_array == value).astype(np.float32))
        indicator.CopyInformation(seg)
        weight = sitk.GetArrayFromImage(one(indicator, sitk.sitkLinear, sitk.sitkFloat32))
        if best is None:
            best, best_weight = np.full(weight.shape, value, seg_array.dtype), weight
        else:
            wins = weight > best_weight
            best[wins], best_weight[wins] = value, weight[wins]
    fine = sitk.GetImageFromArray(best)
    fine.SetOrigin(origin)
    fine.SetSpacing(tuple(float(t) for t in spacing))
    fine.SetDirection(seg.GetDirection())
    return one(image, sitk.sitkLinear), fine


#: structure classes of the protocol summary: (class, name fragments), first match wins
CLASSES = (
    ("vessels (aorta, IVC, portal/splenic vein)", ("aorta", "vena_cava", "portal_vein")),
    ("spine (vertebrae, discs, spinal canal/cord)", ("vertebra", "intervertebral", "spinal")),
    ("ribs and costal cartilage", ("rib", "costal")),
    ("bowel and stomach", ("bowel", "duodenum", "colon", "stomach")),
    ("fat and skin (phantom)", ("fat", "skin")),
    ("small organs, lesions (pancreas, adrenals, gallbladder, iliopsoas, lesions)",
     ("pancreas", "adrenal", "gallbladder", "iliopsoas", "lesion")),
    ("large organs (liver, spleen, kidneys, lungs, back muscles, muscle)",
     ("liver", "spleen", "kidney", "lung", "autochthon", "muscle")),
)


def _wanted(text: str, fragments: str) -> bool:
    """Whether ``text`` contains one of the comma-separated ``fragments`` (all when empty)."""
    return not fragments or any(f.strip() and f.strip() in text for f in fragments.split(","))


def _selected(datasets: list, only: str = None, data: str = None, klass: str = None):
    """The protocol's data sets restricted by ``--only``, ``--data`` and ``--class``:
    ``(name, modality, volume, objects)`` for each set with an object left."""
    for name, modality, volume, objects in datasets:
        objects = {o: m for o, m in objects.items()
                   if _wanted(o, only) and _wanted(structure_class(o), klass)}
        if _wanted(name, data) and objects:
            yield name, modality, volume, objects


def _groups(name: str, modality: str) -> tuple:
    """The summary means a data set's objects join: its modality's, and the real data's
    (the goals name the real data; a phantom's mean would carry a modality's). The
    ``--variants`` sets join only their own mean: they are the same scan again."""
    if name.endswith("(variant)"):
        return (f"{modality}, variants of the real scan",)
    return (modality, f"{modality}, real data only") if name.startswith("real") else (modality,)


def structure_class(name: str) -> str:
    """The summary class of a protocol object (``"other"`` when no fragment matches)."""
    for label, fragments in CLASSES:
        if any(f in name for f in fragments):
            return label
    return "other"


def protocol(backends: list, quick: bool = False, n_clicks: int = 5, only: str = None,
             data: str = None, klass: str = None, explain: bool = False, t2: bool = False,
             fine_labels: str = "nearest", variants: str = "", noise_seed: int = 0) -> dict:
    """Run the click protocol; print per-object Dice, means, worsening corrections, latency.

    ``only``, ``data`` and ``klass`` restrict the run (comma-separated name fragments of
    objects, data sets and structure classes: ``--only rib,vertebra --data "real CT 3"``).
    ``explain``: one line per correction under each object (``clicker.Correction``).
    ``t2``: also the T2-like contrast of the MR phantom (it joins the MR mean).
    ``fine_labels``: ``"nearest"`` or ``"linear"``, the 1.5 mm set's reference labels.
    ``variants``: also the real CT on other grids and with noise (:data:`VARIANTS`).
    """
    from napari_medseg.prompts.factory import make_session
    from napari_medseg.testing.clicker import WORSE, run_protocol

    results = {}
    datasets = protocol_datasets(quick, t2=t2, fine_labels=fine_labels, variants=variants,
                                 noise_seed=noise_seed)
    for backend in backends:
        print(f"\n== protocol: {backend} (Dice after clicks 1..{n_clicks})")
        by_modality: dict = {}
        all_worse, all_corr, latencies = [], 0, []
        for name, modality, volume, objects in _selected(datasets, only, data, klass):
            # The installed weights: Dice of random weights would mean nothing (the
            # protocol lists only backends whose weights are installed).
            session = make_session(backend)
            session.set_volume(volume)
            print(f"  {name} ({len(objects)} objects)")
            rows = []
            for obj, mask in objects.items():
                r = run_protocol(session, mask, n_clicks, explain=explain)
                d = r.padded(n_clicks)
                rows.append(d)
                latencies += [(t, name, obj, k) for k, t in enumerate(r.seconds, start=1)]
                all_corr += len(r.dice) - 1
                worse = r.worse()
                all_worse += [(name, obj, i + 1, r.dice[i - 1], r.dice[i], r.clicks[i][1]) for i in worse]
                flag = "  WORSE at " + ",".join(str(i + 1) for i in worse) if worse else ""
                print(f"    {obj:28s} {int(mask.sum()):8d} vox  " + " ".join(f"{v:.3f}" for v in d) + flag)
                for k, c in enumerate(r.corrections, start=2):
                    print(f"      click {k} {c.describe()} -> Dice {r.dice[k - 1]:.3f}")
                results[(backend, name, obj)] = r
            if rows:
                mean = np.mean(rows, axis=0)
                for group in _groups(name, modality):
                    by_modality.setdefault(group, []).extend(rows)
                print(f"    {'mean':28s} {'':12s} " + " ".join(f"{v:.3f}" for v in mean))
        print(f"  -- {backend} summary")
        by_class: dict = {}
        for (b, _name, obj), r in results.items():
            if b == backend:
                by_class.setdefault(structure_class(obj), []).append(r.padded(n_clicks))
        for label, rows in sorted(by_class.items(), key=lambda kv: -len(kv[1])):
            print(f"    {label}: {len(rows)} objects, mean Dice " + " ".join(f"{v:.2f}" for v in np.mean(rows, axis=0)))
        for modality, rows in by_modality.items():
            mean = np.mean(rows, axis=0)
            print(f"    {modality}: {len(rows)} objects, mean Dice " + " ".join(f"{v:.4f}" for v in mean)
                  + f" | >= 0.85 after 1 click: {sum(r[0] >= 0.85 for r in rows)}, after 5: {sum(r[-1] >= 0.85 for r in rows)}")
        print(f"    corrections that lowered Dice by > {WORSE}: {len(all_worse)} of {all_corr}")
        for w in all_worse:
            print(f"      {w[0]} / {w[1]}: click {w[2]} ({'positive' if w[5] else 'negative'}) {w[3]:.3f} -> {w[4]:.3f}")
        if latencies:
            slowest = max(latencies)
            print(f"    latency per click: median {statistics.median(t for t, *_ in latencies) * 1000:.0f} ms, "
                  f"max {slowest[0] * 1000:.0f} ms ({slowest[1]} / {slowest[2]}, click {slowest[3]})")
    return results


def first_click_spread(backends: list, n_points: int = 6, only: str = None, data: str = None,
                       klass: str = None, t2: bool = False, fine_labels: str = "nearest",
                       variants: str = "", noise_seed: int = 0) -> dict:
    """Dice after one click at the deepest point and at ``n_points`` other interior points.

    A user's first click lands anywhere well inside the object, not at its deepest
    voxel: the other points are drawn (fixed seed) among the voxels at least half as deep
    as the deepest (:func:`clicker.interior_points`), each clicked on a reset session.
    Prints per object the deepest point's Dice, the mean and the minimum over the other
    points, and the means per modality; a method that depends on the exact voxel shows a
    low minimum.
    """
    from napari_medseg.prompts.factory import make_session
    from napari_medseg.testing.clicker import deepest_point, dice, interior_points

    results = {}
    for backend in backends:
        print(f"\n== first click at the deepest point and at {n_points} other interior points: {backend}")
        by_modality: dict = {}
        datasets = protocol_datasets(False, t2=t2, fine_labels=fine_labels, variants=variants,
                                     noise_seed=noise_seed)
        for name, modality, volume, objects in _selected(datasets, only, data, klass):
            session = make_session(backend)
            session.set_volume(volume)
            spacing = volume.spacing_zyx
            print(f"  {name} ({len(objects)} objects): deepest | other points: mean min")
            for obj, mask in objects.items():
                scores = []
                for point in [deepest_point(mask, spacing)] + interior_points(mask, spacing, n_points):
                    session.reset()
                    scores.append(dice(session.add_point(point).mask, mask))
                others = scores[1:] or scores
                row = (scores[0], float(np.mean(others)), float(np.min(others)))
                results[(backend, name, obj)] = row
                for group in _groups(name, modality):
                    by_modality.setdefault(group, []).append(row)
                print(f"    {obj:28s} {row[0]:.3f} | {row[1]:.3f} {row[2]:.3f}")
        for modality, rows in by_modality.items():
            d, m, lo = np.mean(rows, axis=0)
            print(f"    {modality}: {len(rows)} objects, one click: deepest point {d:.4f}, "
                  f"other interior points {m:.4f} (mean of the per-object minima {lo:.4f})")
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller synthetic CT, fewer clicks")
    parser.add_argument("--backends", default=None, help="comma-separated subset")
    parser.add_argument("--protocol", action="store_true", help="the click protocol (Dice after clicks 1..5)")
    parser.add_argument("--only", default=None,
                        help="protocol: objects whose name contains one of these (comma-separated)")
    parser.add_argument("--data", default=None,
                        help="protocol: data sets whose name contains one of these, e.g. 'real CT 3,MR'")
    parser.add_argument("--class", dest="klass", default=None,
                        help="protocol: structure classes containing one of these, e.g. 'ribs,spine'")
    parser.add_argument("--explain", action="store_true",
                        help="protocol: what each correction added and removed, under each object")
    parser.add_argument("--t2", action="store_true",
                        help="protocol: also the MR phantom's T2-like contrast (joins the MR mean; "
                             "--data T2 runs it alone)")
    parser.add_argument("--fine-labels", choices=("nearest", "linear"), default="nearest",
                        help="protocol: the 1.5 mm set's reference, copied from the 3 mm voxels "
                             "(nearest) or interpolated like the image (linear, see _resample)")
    parser.add_argument("--first-clicks", type=int, default=0, metavar="N",
                        help="one click at the deepest point and at N other interior points per "
                             "object (the protocol's data and filters), instead of the protocol")
    parser.add_argument("--variants", default="", metavar="KEYS",
                        help="protocol / --first-clicks: also the real CT on another grid or with noise "
                             f"({', '.join(VARIANTS)}, or 'all'); reported in their own mean")
    parser.add_argument("--noise-seed", type=int, default=0, metavar="N",
                        help="--variants: another draw of the added noise (0: the reported one)")
    args = parser.parse_args(argv)

    if args.first_clicks:
        backends = args.backends.split(",") if args.backends else ["region-growing"]
        first_click_spread(backends, args.first_clicks, only=args.only, data=args.data,
                           klass=args.klass, t2=args.t2, fine_labels=args.fine_labels, variants=args.variants,
                           noise_seed=args.noise_seed)
        return 0

    if args.protocol:
        from napari_medseg.prompts.factory import backend_statuses

        avail = {s.name for s in backend_statuses() if s.available}
        wanted = args.backends.split(",") if args.backends else [
            b for b in ("region-growing", "sam-med3d", "nninteractive") if b in avail]
        protocol(wanted, quick=args.quick, only=args.only, data=args.data,
                 klass=args.klass, explain=args.explain, t2=args.t2, fine_labels=args.fine_labels,
                 variants=args.variants, noise_seed=args.noise_seed)
        return 0

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

    if "region-growing" in wanted:
        print(f"\n== corrective clicks (region-growing, protocol clicks 2..5) on the {syn_name}")
        correction_latency(*synthetic)
    if not args.quick and ("region-growing" in wanted):
        print("\n== memory (region-growing)")
        volume, objects = synthetic
        memory_run(volume, objects["liver"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
