"""``medseg export LABELS [--reference IMAGE] -o OUT``: convert a label map between formats."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="convert labels between NIfTI, NRRD, MetaImage, 3D Slicer .seg.nrrd and DICOM-SEG",
        description=(
            "Write LABELS to OUT in the format of OUT's extension (.nii.gz, .nii, .nrrd, .mha, .mhd, "
            ".seg.nrrd, .dcm for DICOM-SEG). --reference gives the image the labels lie on: its grid is "
            "checked, and a DICOM-SEG references its DICOM series (required for .dcm)."
        ),
    )
    parser.add_argument("labels", help="label file (NIfTI/NRRD/MetaImage/.seg.nrrd/DICOM-SEG)")
    parser.add_argument("--reference", metavar="IMAGE",
                        help="the image (file or DICOM folder) the labels were drawn on")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io.export import export_labels, format_of, read_labels_any
    from ..io.readers import read_volume

    format_of(args.output)  # refuse an unknown extension before reading anything
    reference = read_volume(args.reference) if args.reference else None
    labels, table = read_labels_any(args.labels, reference=reference)
    out = export_labels(labels, table, args.output, reference=reference)
    print(f"wrote {out} ({len(table)} label(s): {', '.join(table.names.values())})", file=sys.stderr)
    return 0
