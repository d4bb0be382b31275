"""``medseg calibrate CASES --model FOLDER -o temperature.json``: fit a model's softmax temperature.

CASES is a CSV manifest of ``image,labels`` lines (paths relative to the manifest) or a
folder holding ``images/`` and ``labels/`` with the same file names (an nnU-Net
``imagesTr/`` + ``labelsTr/`` pair, ``case_0000.nii.gz`` beside ``case.nii.gz``, works
too). For each case the model's class scores are sampled on the case's grid
(:func:`napari_medseg.analysis.calibration.calibration_samples`); the temperature that
makes their softmax best match the reference labels (minimum negative log-likelihood,
:func:`napari_medseg.analysis.confidence.fit_temperature`) is printed and written as
JSON. Use it with ``medseg segment --confidence FILE --temperature T`` (or ``medseg
batch --confidence --temperature T``). Cases whose labels hold ids outside the model's
classes, or that are not on their image's grid, are refused before anything is fitted.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="fit an nnU-Net model's confidence temperature on your labelled cases",
        description=("Fit the softmax temperature that makes a model's confidence match your "
                     "labelled cases; use it with `medseg segment --temperature T`. See "
                     "docs/auto_segmentation.md (Confidence)."),
    )
    parser.add_argument("cases", help="CSV manifest (image,labels per line) or a folder with "
                                      "images/ and labels/ (or imagesTr/ and labelsTr/)")
    parser.add_argument("--model", required=True, help="nnU-Net v2 trained-model folder")
    parser.add_argument("-o", "--output", default=None, metavar="FILE",
                        help="write the fitted temperature as JSON (default: print only)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--max-voxels", type=int, default=200_000,
                        help="voxels sampled per case (default 200000)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def _cases(source: str) -> list:
    """``[(image, labels), ...]`` from a manifest or a folder (InvalidInputError if none)."""
    from ..errors import InvalidInputError

    src = Path(source).expanduser()
    if src.is_file():
        pairs = []
        with open(src, newline="") as fh:
            for k, row in enumerate(csv.reader(fh), 1):
                if not row or row[0].strip().startswith("#") or row[0].strip().lower() == "image":
                    continue
                if len(row) < 2:
                    raise InvalidInputError(f"{src} line {k}: expected image,labels; got {row!r}")
                pairs.append(tuple((src.parent / r.strip()) for r in row[:2]))
    elif src.is_dir():
        for img_dir, lab_dir in (("images", "labels"), ("imagesTr", "labelsTr")):
            if (src / img_dir).is_dir() and (src / lab_dir).is_dir():
                break
        else:
            raise InvalidInputError(f"{src} has no images/ and labels/ (or imagesTr/ and labelsTr/) "
                                    "folders; give a folder with both, or a CSV manifest of "
                                    "image,labels lines")
        pairs = []
        for img in sorted(p for p in (src / img_dir).iterdir() if not p.name.startswith(".")):
            name = img.name.replace("_0000.", ".")
            lab = src / lab_dir / name
            if not lab.exists():
                raise InvalidInputError(f"{img}: no reference labels {lab}; every image needs "
                                        "its label map of the same name")
            pairs.append((img, lab))
    else:
        raise InvalidInputError(f"{src} does not exist; give a CSV manifest or a folder")
    if not pairs:
        raise InvalidInputError(f"{src} holds no cases")
    for img, lab in pairs:
        for p in (img, lab):
            if not Path(p).exists():
                raise InvalidInputError(f"{p} does not exist (listed in {src})")
    return pairs


def run(args: argparse.Namespace) -> int:
    from ..analysis.calibration import calibration_samples
    from ..analysis.confidence import fit_temperature
    from ..errors import InvalidInputError
    from ..io import read_labels, read_volume
    from ..io.atomic import atomic_write_text

    if args.max_voxels < 1000:
        raise InvalidInputError(f"--max-voxels must be 1000 or more, got {args.max_voxels}")
    pairs = _cases(args.cases)
    scores, labels = [], []
    for k, (img, lab) in enumerate(pairs, 1):
        volume = read_volume(img)
        ref, _ = read_labels(lab, reference=volume)
        try:
            s, y = calibration_samples(volume, ref.array, args.model, device=args.device,
                                       max_voxels=args.max_voxels, seed=k)
        except InvalidInputError as exc:
            raise InvalidInputError(f"case {k} ({lab}): {exc}") from None
        scores.append(s)
        labels.append(y)
        print(f"[{k}/{len(pairs)}] {Path(img).name}: {y.size} voxels sampled", file=sys.stderr)
    t = fit_temperature(scores, labels, max_voxels=args.max_voxels * len(pairs))
    doc = {"model": str(args.model), "temperature": round(t, 4), "cases": len(pairs),
           "voxels": int(sum(y.size for y in labels)),
           "usage": f"medseg segment IMAGE -o OUT --model {args.model} --confidence conf.nii.gz "
                    f"--temperature {t:.4g}"}
    if args.output:
        atomic_write_text(args.output, json.dumps(doc, indent=2) + "\n")
        doc["output"] = str(args.output)
    if args.json:
        print(json.dumps(doc))
    else:
        kind = "over-confident" if t > 1.05 else "under-confident" if t < 0.95 else "about right"
        print(f"temperature {t:.4g} ({kind} on these {len(pairs)} case(s))")
        print(f"use it: {doc['usage']}")
        if args.output:
            print(f"wrote {args.output}")
    return 0
