"""``medseg info PATH [--json]``: what a file holds, its shape, geometry, type and modality.

The path is opened by :func:`napari_medseg.io.opening.open_path`, the function napari's
reader uses, so ``info`` says what napari will show: an image, a label map and its
classes, a DICOM series (a folder, or one file of it, with or without extension) or a
DICOM-SEG.
"""

from __future__ import annotations

import argparse

import numpy as np


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="print the shape, spacing, origin, direction, voxel type and modality of a volume",
        description="Read a NIfTI/NRRD/MetaImage file, a DICOM folder or file (with or without "
                    "extension) or a DICOM-SEG, and print what it holds and its geometry.",
    )
    parser.add_argument("path", help="image file, or a DICOM folder / file of a series")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--channel", type=int, default=None,
                        help="for 4D / multi-channel files: which volume to describe (0..N-1)")
    parser.set_defaults(func=run)


def volume_info(volume) -> dict:
    """The ``medseg info --json`` document for a Volume."""
    arr = volume.array
    return {
        "shape_zyx": [int(s) for s in arr.shape],
        "spacing_xyz": [float(v) for v in volume.spacing],
        "origin_xyz": [float(v) for v in volume.origin],
        "direction": [float(v) for v in volume.direction],
        "dtype": str(arr.dtype),
        "modality": volume.modality,
    }


def run(args: argparse.Namespace) -> int:
    from ..io.opening import open_path
    from ._common import print_json

    opened = open_path(args.path, channel=args.channel)[0]
    volume = opened.volume
    info = volume_info(volume)
    if args.json:
        print_json(info)
        return 0
    arr = volume.array
    z, y, x = info["shape_zyx"]
    d = np.reshape(info["direction"], (3, 3))
    lines = [
        f"{args.path}",
        f"  content   : {opened.describe()}",
        f"  size      : {x} x {y} x {z} voxels (x, y, z)",
        "  spacing   : " + " x ".join(f"{s:g}" for s in info["spacing_xyz"]) + " mm (x, y, z)",
        "  origin    : (" + ", ".join(f"{o:g}" for o in info["origin_xyz"]) + ") mm, LPS",
        "  direction : " + " | ".join(" ".join(f"{v:+.4g}" for v in row) for row in d)
        + ("  (axis-aligned)" if volume.is_axis_aligned else ""),
        f"  extent    : " + " x ".join(f"{n * s:.1f}" for n, s in zip((x, y, z), info["spacing_xyz"])) + " mm",
        f"  voxel type: {info['dtype']}",
        f"  modality  : {info['modality'] or 'unknown (not stated in the file)'}",
    ]
    if arr.size and arr.dtype.kind in "iuf":
        finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr
        if finite.size:
            lines.append(f"  values    : {finite.min():g} .. {finite.max():g}")
    dicom = volume.metadata.get("dicom")
    if dicom:
        lines.append(f"  DICOM     : series {dicom.get('SeriesInstanceUID')}, {len(dicom.get('SOPInstanceUIDs', []))} slices")
    print("\n".join(lines))
    return 0
