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
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="output file (never LABELS, the reference, or a file inside a "
                             "DICOM reference folder)")
    parser.add_argument("--seg-type", choices=("binary", "labelmap"), default=None,
                        help="DICOM-SEG flavour for .dcm: binary (default; read by every SEG "
                             "consumer) or labelmap (DICOM 2024+ Label Map Segmentation)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io.export import export_labels, format_of, read_labels_any
    from ..io.readers import read_volume

    from ..io.paths import check_outputs

    kind = format_of(args.output)  # refuse an unknown extension before reading anything
    if args.seg_type is not None and kind != "dicom-seg":
        from ..errors import InvalidInputError

        raise InvalidInputError(f"--seg-type applies to DICOM-SEG (.dcm) output only, not "
                                f"{args.output}; drop it")
    check_outputs([args.output], [args.labels, args.reference], what="-o/--output")
    reference = read_volume(args.reference) if args.reference else None
    from ..io.dicom_seg import segment_ids
    from ..models.totalseg_classes import with_anatomical_codes

    labels, table = read_labels_any(args.labels, reference=reference)
    table = with_anatomical_codes(table)  # known structure names get their published codes
    out = export_labels(labels, table, args.output, reference=reference,
                        dicom_seg_type=args.seg_type or "binary")
    # report what the file holds: the ids present (a DICOM-SEG writes one segment each),
    # not every name the table lists
    ids = segment_ids(labels)
    print(f"wrote {out} ({len(ids)} segment(s): {', '.join(table.name_of(i) for i in ids)})",
          file=sys.stderr)
    return 0
