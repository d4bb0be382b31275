"""``medseg stats IMAGE LABELS [--csv OUT] [--json]``: per-label volume and intensity statistics."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stats",
        help="per-label voxels, volume (mL), image mean/std/min/max/median, bounding box, centroid",
        description=(
            "Compute statistics of every label of LABELS over IMAGE (the same numbers as the "
            "Statistics widget). LABELS must lie on IMAGE's voxel grid; DICOM-SEG files are accepted."
        ),
    )
    parser.add_argument("image", help="image file or DICOM folder")
    parser.add_argument("labels", help="label file (NIfTI/NRRD/MetaImage/.seg.nrrd/DICOM-SEG)")
    parser.add_argument("--csv", metavar="OUT", help="write the table as CSV to OUT (atomically; never over IMAGE, LABELS "
                             "or their sidecars)")
    parser.add_argument("--json", action="store_true", help="print a JSON list of objects")
    parser.add_argument("--bias-correct", action="store_true",
                        help="MR only: intensity columns from the N4 bias-field corrected image "
                             "(refused for CT)")
    parser.set_defaults(func=run)


def format_table(stats: list) -> str:
    """A fixed-width text table of the statistics (for the terminal)."""
    head = f"{'label':>6}  {'name':<28} {'voxels':>10} {'volume_mL':>11} {'mean':>9} {'std':>8} {'median':>8}"
    lines = [head, "-" * len(head)]

    def f(v, w, p=1):
        return f"{'-':>{w}}" if v is None else f"{v:>{w}.{p}f}"

    for s in stats:
        lines.append(f"{s['label']:>6}  {s['name'][:28]:<28} {s['voxels']:>10} {f(s['volume_ml'], 11, 3)} "
                     f"{f(s['mean'], 9)} {f(s['std'], 8)} {f(s['median'], 8)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..analysis.statistics import label_statistics, to_csv
    from ..io.export import read_labels_any
    from ..io.readers import read_volume
    from ._common import print_json

    from ..io.paths import check_outputs

    check_outputs([args.csv], [args.image, args.labels], what="--csv")
    image = read_volume(args.image)
    labels, table = read_labels_any(args.labels, reference=image)
    stats = label_statistics(image, labels, table, bias_correct=args.bias_correct)
    if args.bias_correct:
        print("intensities are N4 bias-field corrected", file=sys.stderr)
    if args.csv:
        path = to_csv(stats, args.csv)
        print(f"wrote {len(stats)} rows to {path}", file=sys.stderr)
    if args.json:
        print_json(stats)
    elif not args.csv:
        print(format_table(stats))
    return 0
