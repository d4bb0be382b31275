"""``medseg train liver-lesion``: train the hybrid liver / lesion cascade.

Data in the Medical Segmentation Decathlon / LiTS layout (``imagesTr/``, ``labelsTr/``;
labels 0 background, 1 liver, 2 lesion). Writes ``best.pt``, ``last.pt`` and ``history.json``
to ``--out``; ``best.pt`` is what ``medseg lesions --weights`` and the widget load.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model (liver-lesion: the hybrid CNN-Transformer cascade)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tasks = parser.add_subparsers(dest="task", metavar="TASK")
    p = tasks.add_parser("liver-lesion", help="hybrid liver + lesion cascade (MSD/LiTS layout)",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset folder with imagesTr/ and labelsTr/")
    p.add_argument("--out", required=True, help="output folder for best.pt, last.pt, history.json")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps-per-epoch", type=int, default=50, help="optimisation steps per stage and epoch")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--features", type=int, default=16, help="network width (first level channels)")
    p.add_argument("--transformer-layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4, help="attention heads (must divide 8 x features)")
    p.add_argument("--patch-size", type=int, default=96, help="in-plane patch size (voxels)")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda or mps")
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--install", action="store_true",
                   help="also install best.pt as the 'hybrid-liver' weights (cache folder), so the "
                        "widget and `medseg lesions` use it without --weights")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (1 is fastest on a busy shared machine)")
    p.set_defaults(func=_run)
    parser.set_defaults(func=lambda args: (parser.print_help(), 1)[1])


def _run(args) -> int:
    from pathlib import Path

    from ..io.paths import check_outputs
    from ..training.liver import TrainConfig, train_liver_lesion
    from ._common import TqdmProgress

    out = Path(args.out)
    check_outputs([out / "best.pt", out / "last.pt", out / "history.json"],
                  [Path(args.data) / "imagesTr", Path(args.data) / "labelsTr"], what="--out")

    config = TrainConfig(
        epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
        lr=args.lr, features=args.features, transformer_layers=args.transformer_layers, heads=args.heads,
        patch_size=(args.patch_size, args.patch_size), val_fraction=args.val_fraction,
        seed=args.seed, device=args.device, amp=not args.no_amp, threads=args.threads,
    )
    with TqdmProgress("train liver-lesion") as bar:
        def log(line: str) -> None:
            bar._bar.write(line) if not bar._bar.disable else print(line, flush=True)

        result = train_liver_lesion(args.data, args.out, config, progress=bar, log=log)
    if args.install:
        print(f"installed as hybrid-liver weights: {install(result['best'])}")
    last = result["history"][-1]
    print(f"best checkpoint: {result['best']}\nlast checkpoint: {result['last']}")
    if "liver_dice" in last:
        print(f"final validation Dice: liver {last['liver_dice']:.3f}, lesion {last['lesion_dice']:.3f}")
    return 0


def install(checkpoint) -> "Path":
    """Copy ``checkpoint`` to ``<weights cache>/hybrid-liver/model.pth`` (atomic)."""
    import shutil
    from pathlib import Path

    from ..io.atomic import atomic_write
    from ..models.hybrid_liver.checkpoint import validate_checkpoint
    from ..models.safe_load import load_checkpoint
    from ..models.weights import cache_dir

    validate_checkpoint(load_checkpoint(checkpoint), source=str(checkpoint))
    target = Path(cache_dir()) / "hybrid-liver" / "model.pth"
    with atomic_write(target) as tmp:
        shutil.copyfile(checkpoint, tmp)
    return target
