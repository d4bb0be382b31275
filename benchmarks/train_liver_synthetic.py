"""Proof that the hybrid liver/lesion cascade learns: train on synthetic phantoms, test on others.

Generates phantom CTs with different seeds (liver shape, lesion number/size/contrast and noise
all vary with the seed), writes them in the Medical Segmentation Decathlon layout
(imagesTr/, labelsTr/; labels 0 background, 1 liver, 2 lesion) to a temporary folder, trains
through the same function `medseg train liver-lesion` calls, then runs the full cascade
(`segment_liver`, i.e. what the widget and `medseg lesions` run) on held-out seeds and prints
liver and lesion Dice on the original grid, plus lesion detection counts.

    python benchmarks/train_liver_synthetic.py            # ~10 min on a busy 2-core machine
    python benchmarks/train_liver_synthetic.py --quick    # smaller run
    python benchmarks/train_liver_synthetic.py --evaluate best.pt   # held-out evaluation only

Targets on held-out synthetic cases: liver Dice >= 0.9, lesion Dice >= 0.7.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_msd(root: Path, seeds, n_lesions_of) -> None:
    import SimpleITK as sitk

    from napari_medseg.phantom import make_phantom

    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        ph = make_phantom(seed=seed, n_lesions=n_lesions_of(seed))
        lab = np.zeros(ph.labels.shape, np.uint8)
        lab[ph.labels == 1] = 1
        lab[ph.labels == 2] = 2
        sitk.WriteImage(ph.ct.to_sitk(), str(root / "imagesTr" / f"liver_{seed:03d}.nii.gz"))
        sitk.WriteImage(ph.ct.to_sitk(lab), str(root / "labelsTr" / f"liver_{seed:03d}.nii.gz"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer cases and steps")
    parser.add_argument("--train-cases", type=int, default=10)
    parser.add_argument("--test-cases", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=40, help="steps per epoch and stage")
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is fastest on a shared, busy machine)")
    parser.add_argument("--keep", type=Path, default=None, help="keep data and checkpoints here")
    parser.add_argument("--evaluate", type=Path, default=None,
                        help="skip training: evaluate this checkpoint on the held-out seeds")
    args = parser.parse_args(argv)
    if args.quick:
        args.train_cases, args.test_cases, args.epochs, args.steps = 6, 3, 5, 30

    import torch

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); machine shared, timings noisy")
    n_lesions_of = lambda seed: 1 + seed % 4  # noqa: E731  1..4 lesions
    train_seeds = list(range(100, 100 + args.train_cases))
    test_seeds = list(range(900, 900 + args.test_cases))
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        if args.evaluate is not None:
            result, train_s = {"best": args.evaluate}, 0.0
        else:
            result, train_s = train(args, root, train_seeds, n_lesions_of)
        rows = evaluate(result["best"], test_seeds, n_lesions_of)
        liver = float(np.mean([r[1] for r in rows]))
        lesion = float(np.mean([r[2] for r in rows]))
        print(f"MEAN over {len(rows)} held-out cases: liver Dice {liver:.3f} (target >= 0.90), "
              f"lesion Dice {lesion:.3f} (target >= 0.70); training {train_s / 60:.1f} min")
        ok = liver >= 0.9 and lesion >= 0.7
        print("PASS" if ok else "BELOW TARGET")
        return 0 if ok else 1


def train(args, root, train_seeds, n_lesions_of):
    from napari_medseg.training.liver import TrainConfig, train_liver_lesion

    t0 = time.time()
    write_msd(root / "data", train_seeds, n_lesions_of)
    print(f"wrote {len(train_seeds)} training cases (seeds {train_seeds[0]}..{train_seeds[-1]}) "
          f"in {time.time() - t0:.0f} s")
    config = TrainConfig(epochs=args.epochs, steps_per_epoch=args.steps, features=args.features,
                         heads=args.heads, patch_size=(args.patch, args.patch),
                         batch_size=args.batch_size, val_fraction=0.2, seed=0, device="cpu",
                         threads=args.threads)
    t0 = time.time()
    result = train_liver_lesion(root / "data", root / "out", config)
    train_s = time.time() - t0
    print(f"training: {train_s:.0f} s ({train_s / 60:.1f} min) on CPU")
    return result, train_s


def evaluate(checkpoint, test_seeds, n_lesions_of):
    from napari_medseg.analysis.lesions import measure_lesions
    from napari_medseg.inference.liver_cascade import segment_liver
    from napari_medseg.phantom import make_phantom
    from napari_medseg.training.liver import dice

    rows = []
    for seed in test_seeds:
        ph = make_phantom(seed=seed, n_lesions=n_lesions_of(seed))
        t0 = time.time()
        pred, _ = segment_liver(ph.ct, "hybrid-liver", weights=checkpoint, device="cpu")
        inf_s = time.time() - t0
        truth_liver = np.isin(ph.labels, (1, 2))
        truth_lesion = ph.labels == 2
        d_liver = dice(pred > 0, truth_liver)
        d_lesion = dice(pred == 2, truth_lesion)
        found = len(measure_lesions(ph.ct, ph.ct.with_array(pred)).lesions)
        rows.append((seed, d_liver, d_lesion, len(ph.lesions), found, inf_s))
        print(f"held-out seed {seed}: liver Dice {d_liver:.3f}, lesion Dice {d_lesion:.3f}, "
              f"lesions true {len(ph.lesions)} / found {found}, inference {inf_s:.1f} s")
    return rows


if __name__ == "__main__":
    sys.exit(main())
