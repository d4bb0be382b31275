"""``medseg weights list | path NAME | download NAME | import NAME PATH``: the weights manager."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="list, locate, download (https; sha256 recorded at the first download, later "
             "downloads must match) or import model weights",
        description=(
            "Manage model weights. Cache: $MEDSEG_WEIGHTS_DIR or ~/.cache/napari-medseg/weights; "
            "TotalSegmentator weights already on this machine ($TOTALSEG_WEIGHTS_PATH, "
            "~/.totalsegmentator/nnunet/results) are used as they are. Checksums: the current "
            "models' publishers give no sha256, so the first download is not verified; its "
            "sha256 is recorded (hashes.json in the cache) and every later download must "
            "match it (trust on first use)."
        ),
    )
    sub = parser.add_subparsers(dest="weights_command", metavar="ACTION")
    p_list = sub.add_parser("list", help="every model: installed or not, size, source, licence")
    p_list.add_argument("--json", action="store_true", help="print a JSON list")
    p_list.set_defaults(func=run_list)
    p_path = sub.add_parser("path", help="print where the weights of NAME are (error if missing)")
    p_path.add_argument("name")
    p_path.set_defaults(func=run_path)
    p_dl = sub.add_parser("download", help="download NAME's weights from the official source "
                                           "(https; trust-on-first-use sha256, see `list`)")
    p_dl.add_argument("name")
    p_dl.add_argument("--force", action="store_true", help="download again even if installed")
    p_dl.set_defaults(func=run_download)
    p_imp = sub.add_parser("import", help="copy (or link) weights you have into the cache")
    p_imp.add_argument("name")
    p_imp.add_argument("path", help="folder or checkpoint file holding the weights")
    p_imp.add_argument("--link", action="store_true", help="symlink instead of copying")
    p_imp.set_defaults(func=run_import)
    parser.set_defaults(func=lambda args: (parser.print_help(), 1)[1])


def run_list(args: argparse.Namespace) -> int:
    from ..models.registry import list_cards
    from ..models.weights import cache_dir, describe
    from ._common import print_json

    rows = [describe(card) for card in list_cards()]
    if getattr(args, "json", False):
        print_json({"cache": str(cache_dir()), "models": rows})
        return 0
    print(f"weights cache: {cache_dir()}")
    print(f"{'model':<24} {'installed':<10} {'size':>9}  {'kind':<14} source / licence")
    for r in rows:
        if r["installed"]:
            size = f"{r['size_mb']:.0f} MB" if r["size_mb"] else "-"
            state = "yes"
        else:
            size = f"~{r['download_mb']:.0f} MB" if r["download_mb"] else "-"
            state = "no"
        print(f"{r['name']:<24} {state:<10} {size:>9}  {r['kind']:<14} {r['source']}")
        print(f"{'':<24} {'':<10} {'':>9}  {'':<14} licence: {r['licence']}")
        print(f"{'':<24} {'':<10} {'':>9}  {'':<14} checksum: {r['checksum']}")
    return 0


def run_path(args: argparse.Namespace) -> int:
    from ..models.weights import resolve_weights

    found = resolve_weights(args.name)
    print(found if found is not None else f"{args.name} needs no weights")
    return 0


def run_download(args: argparse.Namespace) -> int:
    from ..models.weights import download
    from ._common import TqdmProgress

    with TqdmProgress(desc=f"download {args.name}") as bar:
        path = download(args.name, progress=bar, force=args.force)
    print(f"{args.name}: installed at {path}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from ..models.weights import import_weights

    path = import_weights(args.name, args.path, link=args.link)
    print(f"{args.name}: imported to {path}")
    return 0
