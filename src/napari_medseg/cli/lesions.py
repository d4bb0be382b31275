"""``medseg lesions``: segment the liver and its lesions (or take a label map) and measure them.

Writes to OUTDIR: the label map (``liver_lesions.nii.gz`` with a JSON sidecar of names;
not rewritten when ``--labels`` is given), ``lesions.csv`` (one row per lesion) and
``lesions.json`` (everything, incl. axis endpoints), and prints a short summary.
Refused before any work: an OUTDIR whose files would overwrite an input (or that lies
inside a DICOM input folder), and --model/--weights/--device with --labels (unused).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "lesions", help="liver + lesion segmentation and per-lesion measurements (RECIST axes, volume)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", help="CT volume (NIfTI, NRRD, MetaImage, DICOM folder)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--model", default=None,
                   help="hybrid-liver (default; needs --weights or installed weights), an nnU-Net "
                        "trained-model folder, or an nnU-Net/TotalSegmentator registry name")
    p.add_argument("--weights", default=None, help="checkpoint (hybrid-liver) or weights folder")
    p.add_argument("--labels", default=None, help="measure this existing label map instead of segmenting")
    p.add_argument("--liver-id", type=int, default=None, help="liver label id in --labels (default: by name, else 1)")
    p.add_argument("--lesion-id", type=int, default=None, help="lesion label id in --labels (default: by name, else 2)")
    p.add_argument("--device", default=None, choices=("auto", "cpu", "cuda", "mps"),
                   help="where the network runs (default: auto = CUDA, MPS, then CPU)")
    p.add_argument("--runtime", default=None, choices=("auto", "openvino", "torch"),
                   help="what runs the networks (hybrid-liver stages or an nnU-Net --model) on the "
                        "CPU: openvino (compiled once per input shape, cached; any failure falls "
                        "back to PyTorch with the reason) or torch (default: auto = PyTorch)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a summary")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from ..analysis.liver import DEFAULT_MODEL, segment_and_measure
    from ..errors import InvalidInputError
    from ..inference.runtimes import describe_runtime
    from ..io import read_labels, read_volume, write_labels
    from ..io.paths import check_outputs
    from ._common import TqdmProgress, print_json

    out = Path(args.out)
    if args.labels:
        # said in the flags' words, before any file is read (the core refuses the same)
        unused = [flag for flag, value in (("--model", args.model), ("--weights", args.weights),
                                           ("--device", args.device), ("--runtime", args.runtime))
                  if value is not None]
        if unused:
            raise InvalidInputError(
                f"--labels measures an existing label map, so {', '.join(unused)} would not be "
                "used; drop them (or drop --labels to segment the image)")
    written = [out / "lesions.csv", out / "lesions.json"]
    if not args.labels:
        written.append(out / "liver_lesions.nii.gz")
    check_outputs(written, [args.image, args.labels, args.weights], what="the lesion output")
    image = read_volume(args.image)
    if args.labels:
        given, table = read_labels(args.labels, reference=image)
        result = segment_and_measure(image, labels=given, table=table, liver_id=args.liver_id,
                                     lesion_id=args.lesion_id)
        label_path = Path(args.labels)
    else:
        with TqdmProgress("liver cascade") as bar:
            result = segment_and_measure(image, model=args.model or DEFAULT_MODEL,
                                         weights=args.weights, device=args.device or "auto",
                                         liver_id=args.liver_id, lesion_id=args.lesion_id,
                                         progress=bar, runtime=args.runtime)
        out.mkdir(parents=True, exist_ok=True)
        label_path = write_labels(result.labels, out / "liver_lesions.nii.gz", result.table)
    report = result.report
    report.metadata.update({"image": str(args.image), "labels": str(label_path)})
    out.mkdir(parents=True, exist_ok=True)
    report.to_csv(out / "lesions.csv")
    report.to_json(out / "lesions.json")
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.summary())
        ran = describe_runtime(report.metadata.get("runtime")).strip()
        if ran:  # what ran the networks, and why not OpenVINO after a fallback
            print(ran)
        print(f"wrote {label_path if not args.labels else '(labels given)'}, {out / 'lesions.csv'}, "
              f"{out / 'lesions.json'}")
    return 0
