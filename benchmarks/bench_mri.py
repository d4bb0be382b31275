"""MRI benchmark: nnU-Net MR path vs nnUNetPredictor, deepbet, the interactive default on MR.

Run: ``python benchmarks/bench_mri.py`` (``--quick``: smaller phantom and networks).

1. **nnU-Net on MR** (Z-score normalisation, with and without ``use_mask_for_norm``): a
   random-weight MR model folder (``napari_medseg.testing.nnunet``) on the T1-weighted-like
   MR phantom (``medseg sample --modality mr``'s image, with the air outside the body set
   to zero as a skull-stripped / masked MR has, so the non-zero crop and the mask matter).
   Our engine and nnunetv2's ``nnUNetPredictor`` run in this process, alternating, same
   torch threads; printed: median predict time of each, the ratio ours / nnU-Net (the
   ratio the CT benchmark reports), and parity (% identical voxels, target >= 99.9 %).
2. **deepbet** on the MNI152 T1 template nilearn's wheel ships (1 mm, 197 x 233 x 189):
   the time of ``segment(volume, "deepbet")`` and of deepbet's own ``BrainExtraction`` in
   the same run, and the Dice of the plugin's mask against the template's filled grey +
   white matter mask (probabilities summed > 0.2, holes filled).
3. **Interactive default on MR**: the click protocol of ``bench_prompt.py --protocol``
   (``napari_medseg.testing.clicker.run_protocol``: click 1 at the deepest point, then the
   largest error region) with region growing on every labelled structure of the MR
   phantom, T1 and T2, without and with N4 bias-field correction
   (``make_session("region-growing", bias_correct=True)``); Dice after 1 and 3 clicks per
   structure and the means.
4. **N4 bias-field correction** (:mod:`napari_medseg.inference.bias_field`): time of the
   first (fitted) and second (cached) call on realistic MR sizes (the MNI152 T1 template,
   1 mm 197 x 233 x 189; the MR phantom 256 x 256 x 100; an abdominal-size 512 x 512 x 200
   upsampled copy of it) and the within-structure coefficient of variation of the
   phantom before and after.

The machine is shared: timings are noisy; ratios are measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _phantom(quick: bool):
    from napari_medseg.phantom import make_phantom

    shape, spacing = ((48, 128, 128), (4.0, 1.6, 1.6)) if quick else ((80, 192, 192), (3.0, 1.1, 1.1))
    return make_phantom(seed=0, shape=shape, spacing_zyx=spacing, n_lesions=2)


def bench_nnunet(quick: bool, repeats: int) -> list:
    import torch

    from napari_medseg.inference.segment import segment
    from napari_medseg.phantom import mr_contrast
    from napari_medseg.testing.nnunet import make_random_model_folder, reference_predict

    torch.set_num_threads(2)
    ph = _phantom(quick)
    t1 = mr_contrast(ph, "T1")
    t1 = t1.with_array(np.where(ph.labels > 0, t1.array, 0).astype(np.uint16))
    rows = []
    for use_mask in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            folder = make_random_model_folder(
                tmp, n_classes=5, normalization="ZScoreNormalization", use_mask_for_norm=use_mask,
                spacing=(3.0, 1.5, 1.5), patch_size=(32, 64, 64) if quick else (48, 96, 96),
                base_features=8 if quick else 16, max_features=64 if quick else 160)
            ours_t, ref_t = [], []
            for _ in range(repeats):
                t = time.perf_counter()
                ref = reference_predict(folder, t1)
                ref_t.append(time.perf_counter() - t)
                t = time.perf_counter()
                ours = segment(t1, folder, device="cpu", runtime="torch")[0]
                ours_t.append(time.perf_counter() - t)
            same = float(np.mean(ours == ref)) * 100
            row = {"use_mask_for_norm": use_mask, "ours_s": statistics.median(ours_t),
                   "nnunet_s": statistics.median(ref_t), "identical_pct": same,
                   "classes_present": int(len(np.unique(ref)))}
            row["ratio"] = row["ours_s"] / row["nnunet_s"]
            rows.append(row)
            print(f"nnU-Net MR (Z-score, use_mask_for_norm={use_mask}): ours {row['ours_s']:.2f} s, "
                  f"nnUNetPredictor {row['nnunet_s']:.2f} s, ratio {row['ratio']:.2f}; "
                  f"{same:.3f} % identical voxels ({row['classes_present']} classes present)")
    return rows


def bench_deepbet() -> dict:
    try:
        import deepbet  # noqa: F401
        import nilearn
    except ImportError as exc:
        print(f"deepbet: skipped ({exc}); install with pip install -e '.[mri]'")
        return {}
    import nibabel as nib
    import torch
    from scipy.ndimage import binary_fill_holes

    from napari_medseg.inference.segment import segment
    from napari_medseg.io import read_volume
    from napari_medseg.models.deepbet import archive_paths

    torch.set_num_threads(2)
    data = Path(nilearn.__file__).parent / "datasets" / "data"
    t1_path = data / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    vol = read_volume(t1_path)
    gm = read_volume(data / "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz").array.astype(float)
    wm = read_volume(data / "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz").array.astype(float)
    ref = binary_fill_holes((gm + wm) > 0.2)
    from napari_medseg.models import deepbet as deepbet_model

    deepbet_model.release()
    # first call: loads the networks (kept for the process); second call: reuses them
    t = time.perf_counter()
    segment(vol, "deepbet", device="cpu")
    ours_first = time.perf_counter() - t
    t = time.perf_counter()
    labels = segment(vol, "deepbet", device="cpu")[0]
    ours_s = time.perf_counter() - t
    from deepbet import BrainExtraction

    paths = archive_paths()
    img = nib.load(str(t1_path))
    t = time.perf_counter()
    bet = BrainExtraction(no_gpu=True, model_path=str(paths["model"]),
                          bbox_model_path=str(paths["bbox"]))
    bet.run(img)
    own_first = time.perf_counter() - t
    t = time.perf_counter()
    _, mask_img, _ = bet.run(img)
    own_s = time.perf_counter() - t
    mask = labels == 1
    dice = 2 * (mask & ref).sum() / (mask.sum() + ref.sum())
    own = np.asarray(mask_img.dataobj).astype(bool).transpose(2, 1, 0)
    same = float(np.mean(own == mask)) * 100
    print(f"deepbet on the MNI152 template: first call (loads the networks) plugin {ours_first:.2f} s, "
          f"deepbet's own code {own_first:.2f} s (ratio {ours_first / own_first:.2f}); second call "
          f"plugin {ours_s:.2f} s, deepbet's own {own_s:.2f} s (ratio {ours_s / own_s:.2f}); "
          f"Dice vs filled grey+white matter {dice:.3f}; {same:.3f} % voxels identical to deepbet's own mask")
    return {"plugin_first_s": ours_first, "deepbet_first_s": own_first, "plugin_s": ours_s,
            "deepbet_s": own_s, "dice": float(dice), "identical_pct": same}


def bench_interactive(quick: bool, n_clicks: int = 3) -> dict:
    from napari_medseg.phantom import mr_contrast
    from napari_medseg.prompts.factory import make_session
    from napari_medseg.testing.clicker import run_protocol, structures

    ph = _phantom(quick)
    objects = structures(ph.labels, ph.names)
    out = {}
    for weighting in ("T1", "T2"):
        vol = mr_contrast(ph, weighting)
        per_mode = {}
        for bias_correct in (False, True):
            session = make_session("region-growing", bias_correct=bias_correct)
            session.set_volume(vol)
            rows = {}
            for name, mask in objects.items():
                res = run_protocol(session, mask, n_clicks=n_clicks)
                dice = res.dice + [res.dice[-1]] * (n_clicks - len(res.dice))
                rows[name] = (dice[0], dice[min(2, n_clicks - 1)])
            per_mode[bias_correct] = rows
        plain, n4 = per_mode[False], per_mode[True]
        means = {k: (statistics.mean(v[0] for v in r.values()), statistics.mean(v[1] for v in r.values()))
                 for k, r in per_mode.items()}
        print(f"\nregion growing on the {weighting}-weighted-like MR phantom ({len(plain)} structures): "
              f"mean Dice {means[False][0]:.3f} after 1 click, {means[False][1]:.3f} after 3; with N4 "
              f"{means[True][0]:.3f}, {means[True][1]:.3f}")
        print(f"  {'structure':<28} {'plain 1 -> 3':>14}   {'N4 1 -> 3':>14}")
        for name in sorted(plain):
            (a1, a3), (b1, b3) = plain[name], n4[name]
            print(f"  {name:<28} {a1:.3f} -> {a3:.3f}   {b1:.3f} -> {b3:.3f}")
        out[weighting] = {"per_structure": plain, "per_structure_n4": n4, "mean_1": means[False][0],
                          "mean_3": means[False][1], "mean_1_n4": means[True][0], "mean_3_n4": means[True][1]}
    return out


def bench_bias_field(quick: bool) -> dict:
    from scipy import ndimage as ndi

    from napari_medseg.inference.bias_field import clear_cache, correct_bias_field
    from napari_medseg.io.volume import Volume
    from napari_medseg.phantom import make_phantom, mr_contrast

    cases = []
    try:
        import nilearn

        from napari_medseg.io import read_volume

        data = Path(nilearn.__file__).parent / "datasets" / "data"
        cases.append(("MNI152 T1 template 197x233x189, 1 mm",
                      read_volume(data / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")))
    except ImportError:
        print("N4: nilearn not installed, MNI152 template case skipped")
    ph = _phantom(True) if quick else make_phantom(seed=0)
    t1 = mr_contrast(ph, "T1")
    z, y, x = t1.shape
    cases.append((f"MR phantom T1 {x}x{y}x{z}", t1))
    if not quick:
        big = ndi.zoom(t1.array.astype(np.float32), (200 / z, 512 / y, 512 / x), order=1)
        sp = tuple(s * n / m for s, n, m in zip(t1.spacing_zyx, t1.shape, big.shape))
        cases.append(("MR phantom T1 upsampled 512x512x200",
                      Volume(np.clip(big, 0, 65535).astype(np.uint16), spacing=sp[::-1], modality="MR")))
    rows = {}
    for name, vol in cases:
        clear_cache()
        t = time.perf_counter()
        out = correct_bias_field(vol)
        first = time.perf_counter() - t
        t = time.perf_counter()
        correct_bias_field(vol)
        second = time.perf_counter() - t
        rows[name] = {"first_s": first, "cached_s": second}
        print(f"N4 on {name}: {first:.2f} s first call, {second:.3f} s cached")
        del out
    clear_cache()
    corrected = correct_bias_field(t1)
    ids = {n: i for i, n in ph.names.items()}
    print("within-structure coefficient of variation on the MR phantom T1 (eroded by 1 voxel), before -> after N4:")
    cv = {}
    for name in ("liver", "spleen", "kidney_left", "muscle", "subcutaneous_fat", "visceral_fat"):
        mask = ndi.binary_erosion(ph.labels == ids[name], iterations=1)
        a, b = t1.array[mask].astype(float), corrected.array[mask].astype(float)
        cv[name] = (a.std() / a.mean(), b.std() / b.mean())
        print(f"  {name:<20} {cv[name][0]:.4f} -> {cv[name][1]:.4f}")
    rows["cv"] = cv
    clear_cache()
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller phantom and networks")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per engine (default 3)")
    parser.add_argument("--only", choices=("nnunet", "deepbet", "interactive", "n4"), default=None)
    args = parser.parse_args(argv)
    if args.only in (None, "nnunet"):
        bench_nnunet(args.quick, args.repeats)
    if args.only in (None, "deepbet"):
        bench_deepbet()
    if args.only in (None, "interactive"):
        bench_interactive(args.quick)
    if args.only in (None, "n4"):
        bench_bias_field(args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
