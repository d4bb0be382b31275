"""``medseg sample OUTDIR``: write the synthetic abdominal CT (or MR) phantom and its labels.

Writes ``OUTDIR/ct.nii.gz`` (int16 HU), ``OUTDIR/labels.nii.gz`` (uint8 ids) with its
names/colours sidecar ``OUTDIR/labels.json``, and ``OUTDIR/lesions.json`` (the
analytic ground truth of the liver lesions: centres, semi-axes, volumes, diameters).
With ``--modality mr`` the image is ``OUTDIR/t1.nii.gz`` and ``OUTDIR/t2.nii.gz`` instead
(T1- and T2-weighted-like contrasts of the same anatomy with a smooth bias field and Rician
noise, :func:`napari_medseg.phantom.mr_contrast`); the labels are the same.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InvalidInputError
from ..phantom import SAMPLE_SEED


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sample",
        help="write the synthetic abdominal CT phantom (ct.nii.gz, labels.nii.gz + names)",
        description=(
            "Generate the deterministic synthetic abdominal CT phantom and write OUTDIR/ct.nii.gz, "
            "OUTDIR/labels.nii.gz with its label-name sidecar OUTDIR/labels.json, and "
            "OUTDIR/lesions.json (ground truth of the liver lesions)."
        ),
    )
    parser.add_argument("outdir", help="output folder (created if needed)")
    parser.add_argument("--seed", type=int, default=SAMPLE_SEED, help="random seed (default 0, the napari sample)")
    parser.add_argument("--shape", default="100,256,256", help="grid size z,y,x (default 100,256,256)")
    parser.add_argument("--spacing", default="2.5,0.8,0.8", help="voxel size z,y,x in mm (default 2.5,0.8,0.8)")
    parser.add_argument("--lesions", type=int, default=3, help="number of liver lesions, 0-8 (default 3)")
    parser.add_argument("--modality", default="ct", type=str.lower, choices=("ct", "mr"),
                        help="ct (default): ct.nii.gz in HU; mr: t1.nii.gz and t2.nii.gz of the same "
                             "anatomy (bias field, Rician noise)")
    parser.add_argument("--json", action="store_true", help="print one JSON object describing the output")
    parser.set_defaults(func=run)


def _parse_shape(text: str) -> tuple:
    from ._common import parse_triple

    values = parse_triple(text, what="--shape")
    if not all(v == int(v) and v > 0 for v in values):
        raise InvalidInputError(f"--shape must be three positive whole numbers z,y,x, got {text!r}")
    return tuple(int(v) for v in values)


def run(args: argparse.Namespace) -> int:
    from ..io import write_labels, write_volume
    from ..io.label_table import sidecar_path
    from ..phantom import make_phantom
    from ._common import parse_triple, print_json

    shape = _parse_shape(args.shape)
    spacing = parse_triple(args.spacing, what="--spacing")
    outdir = Path(args.outdir)
    if outdir.exists() and not outdir.is_dir():
        raise InvalidInputError(f"{outdir} exists and is not a folder; give a folder for the sample")

    phantom = make_phantom(seed=args.seed, shape=shape, spacing_zyx=spacing, n_lesions=args.lesions)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(f"cannot create the output folder {outdir}: {exc.strerror or exc}") from None
    images = {}
    if args.modality == "mr":
        from ..phantom import mr_contrast

        from ..io import atomic_write

        for weighting in ("T1", "T2"):
            path = write_volume(mr_contrast(phantom, weighting), outdir / f"{weighting.lower()}.nii.gz")
            images[weighting.lower()] = path
            # NIfTI has no modality field: a BIDS-style sidecar states it for every reader
            with atomic_write(outdir / f"{weighting.lower()}.json") as tmp:
                Path(tmp).write_text(json.dumps({
                    "Modality": "MR",
                    "SeriesDescription": f"synthetic {weighting}-weighted-like abdominal phantom"},
                    indent=2) + "\n", encoding="utf-8")
        ct_path = None
    else:
        ct_path = write_volume(phantom.ct, outdir / "ct.nii.gz")
        images["ct"] = ct_path
    labels_path = write_labels(phantom.labels_volume, outdir / "labels.nii.gz", phantom.label_table)
    lesions_path = outdir / "lesions.json"
    lesions_doc = {
        "seed": phantom.seed,
        "note": "liver lesions are axis-aligned ellipsoids in physical (LPS) mm; label id 2",
        "lesions": [lesion.to_dict() for lesion in phantom.lesions],
    }
    from ..io import atomic_write

    with atomic_write(lesions_path) as tmp:
        Path(tmp).write_text(json.dumps(lesions_doc, indent=2) + "\n", encoding="utf-8")

    written = {
        **{name: str(path) for name, path in images.items()},
        "modality": args.modality.upper(),
        "labels": str(labels_path),
        "label_names": str(sidecar_path(labels_path)),
        "lesions": str(lesions_path),
        "shape_zyx": list(shape),
        "spacing_zyx": list(spacing),
        "seed": phantom.seed,
        "labels_present": {phantom.names[i]: i for i in sorted(phantom.names)},
    }
    if args.json:
        print_json(written)
        return 0
    print(f"wrote synthetic abdominal {args.modality.upper()} phantom (seed {phantom.seed}, "
          f"{shape[2]} x {shape[1]} x {shape[0]} voxels x,y,z, "
          f"{spacing[2]:g} x {spacing[1]:g} x {spacing[0]:g} mm):")
    for name, path in images.items():
        print(f"  {path}  " + ("(int16 HU)" if name == "ct" else f"({name.upper()}-weighted-like, uint16)"))
    print(f"  {labels_path}  (uint8 label ids)")
    print(f"  {sidecar_path(labels_path)}  (label names and colours)")
    print(f"  {lesions_path}  (lesion ground truth)")
    for lesion in phantom.lesions:
        x, y, z = lesion.center_xyz_mm
        print(f"  lesion {lesion.index + 1}: {lesion.volume_ml:.2f} ml, longest axial diameter "
              f"{lesion.longest_axial_diameter_mm:.1f} mm, "
              + (f"{lesion.hu:.0f} HU, " if ct_path is not None else "")
              + f"centre ({x:.1f}, {y:.1f}, {z:.1f}) mm")
    return 0
