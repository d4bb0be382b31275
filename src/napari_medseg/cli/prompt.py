"""``medseg prompt IMAGE -o OUT --point z,y,x ...``: click-prompted 3D segmentation, headless.

Points and boxes are voxel indices in the array's (z, y, x) order, as napari shows
them. Each prompt is one interaction, replayed in the order given: the positive
points, then the negative points, then the box (a box alone also works). The output
is a uint8 mask on the image's grid (same spacing, origin, direction) holding 0 and
``--label`` (default 1), written atomically with a names sidecar. The command echoes the
clicked voxel's value (HU on CT) and position in mm and warns when the object is
implausible for a click (:mod:`napari_medseg.prompts.plausibility`); ``--json`` holds
that report under ``"click"`` and ``timings.total_s`` (the whole command). Coordinates
may be negative on the command line (``--point -1,52,91``): a point outside the image is
refused with the image's shape.
With ``--server URL --token-file FILE`` the work runs on a ``medseg serve`` machine
(:mod:`napari_medseg.serve.client`) and the same file is written here. With
``--model nninteractive-remote --server URL`` it runs on an ``nninteractive-server`` (the
nnInteractive package's own server, as labs run for 3D Slicer); ``--token-file`` is then
optional and holds its ``--api-key`` (default: ``NN_INTERACTIVE_API_KEY``).
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prompt",
        help="segment one object from clicks (points inside/outside, a box)",
        description=(
            "Segment one object of a CT/MR volume from point and box prompts and write its "
            "mask with the source geometry. Coordinates are voxel indices z,y,x (array "
            "order). The default backend, region-growing, needs no weights."
        ),
    )
    parser.add_argument("image", help="image file (NIfTI, NRRD, MetaImage) or DICOM folder")
    parser.add_argument("-o", "--output", required=True, help="output mask file (.nii.gz, .nrrd, .mha)")
    parser.add_argument("--model", default="region-growing",
                        help="backend: region-growing (default, weights-free), sam-med3d, "
                             "3dsam-adapter, nninteractive, nninteractive-remote (on a running "
                             "nninteractive-server: give its URL with --server)")
    parser.add_argument("--weights", default=None, help="checkpoint for backends that need one")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                        help="where a network backend runs (default: auto)")
    parser.add_argument("--runtime", default="auto", choices=("auto", "openvino", "torch"),
                        help="what runs the network's image encoder on the CPU: openvino "
                             "(compiled once and cached) or torch; default auto = PyTorch")
    parser.add_argument("--point", action="append", default=[], metavar="Z,Y,X",
                        help="a positive click (inside the object); repeatable")
    parser.add_argument("--negative", action="append", default=[], metavar="Z,Y,X",
                        help="a negative click (outside the object); repeatable")
    parser.add_argument("--box", default=None, metavar="Z0,Y0,X0,Z1,Y1,X1",
                        help="two opposite corners of a box bounding the object")
    parser.add_argument("--label", type=int, default=1, help="value written for the object (1-255, default 1)")
    parser.add_argument("--name", default=None, help="object name for the sidecar (default: 'object')")
    parser.add_argument("--channel", type=int, default=None, help="for 4D / multi-channel images: which volume")
    parser.add_argument("--bias-correct", action="store_true",
                        help="MR only, region-growing only: grow on the N4 bias-field corrected "
                             "intensities (refused for CT)")
    parser.add_argument("--json", action="store_true",
                        help="print output, voxel count, volume, the click report and timings (set-up, "
                             "each interaction, total) as JSON")
    from .serve import add_remote_options

    add_remote_options(parser)
    parser.set_defaults(func=run)


def _parse_prompts(args: argparse.Namespace, shape: tuple) -> list:
    """``[(kind, value), ...]`` in replay order, all checked against the volume shape."""
    from ..errors import InvalidInputError
    from ._common import parse_triple

    def check(point: tuple, what: str) -> tuple:
        for axis, (c, n) in enumerate(zip(point, shape)):
            if not (0 <= c <= n - 1):
                raise InvalidInputError(
                    f"{what} {','.join(f'{v:g}' for v in point)} lies outside the image: axis "
                    f"{'zyx'[axis]} must be in 0..{n - 1} (image shape z,y,x = "
                    f"{','.join(str(s) for s in shape)})"
                )
        return point

    steps = []
    for text in args.point:
        steps.append(("point", check(parse_triple(text, "--point (z,y,x)"), "--point")))
    for text in args.negative:
        steps.append(("negative", check(parse_triple(text, "--negative (z,y,x)"), "--negative")))
    if args.box is not None:
        values = parse_triple(args.box, "--box (z0,y0,x0,z1,y1,x1)", n=6)
        steps.append(("box", (check(values[:3], "--box corner"), check(values[3:], "--box corner"))))
    if not any(kind in ("point", "box") for kind, _ in steps):
        raise InvalidInputError(
            "give at least one --point z,y,x inside the object (or a --box); "
            "negative clicks alone do not define an object"
        )
    return steps


def run(args: argparse.Namespace) -> int:
    import sys
    import time

    import numpy as np

    from ..errors import InvalidInputError
    from ..io import LabelTable, read_volume, write_labels
    from ..io.paths import check_outputs
    from ..prompts.factory import make_session
    from ..prompts.plausibility import click_report
    from ._common import TqdmProgress, print_json
    from .serve import remote_client

    t0 = time.perf_counter()
    # nnInteractive's own server: --server names it, --token-file (optional) holds its API key
    nni_server = str(args.model).strip().lower() == "nninteractive-remote"
    client = None if nni_server else remote_client(args)  # None: run here
    if not 1 <= int(args.label) <= 255:
        raise InvalidInputError(f"--label must be 1..255 (the mask is uint8), got {args.label}")
    check_outputs([args.output], [args.image], what="-o/--output")
    volume = read_volume(args.image, channel=args.channel)
    t_read = time.perf_counter() - t0
    steps = _parse_prompts(args, volume.shape)  # before any heavy work: bad input fails fast

    if nni_server:
        from ..serve.auth import read_token

        token = read_token(args.token_file) if args.token_file else None
        session = make_session(args.model, weights=args.weights, device=args.device, runtime=args.runtime,
                               bias_correct=args.bias_correct, server=args.server, token=token)
    elif client is not None:
        from ..serve.client import RemotePromptSession

        if args.bias_correct:
            raise InvalidInputError("--bias-correct runs on this computer only; drop it or "
                                    "--server")
        session = RemotePromptSession(args.model, client=client)
    else:
        session = make_session(args.model, weights=args.weights, device=args.device,
                               runtime=args.runtime, bias_correct=args.bias_correct)
    t1 = time.perf_counter()
    with TqdmProgress(desc=f"medseg prompt ({args.model})") as bar:
        session.set_volume(volume, progress=bar)
    t_setup = time.perf_counter() - t1

    interactions = []
    update = None
    for kind, value in steps:
        t = time.perf_counter()
        if kind == "point":
            update = session.add_point(value, positive=True)
        elif kind == "negative":
            update = session.add_point(value, positive=False)
        else:
            update = session.add_box(value[0], value[1])
        interactions.append({
            "prompt": kind,
            "zyx": [list(v) for v in value] if kind == "box" else list(value),
            "seconds": round(time.perf_counter() - t, 4),
            "voxels": int(np.count_nonzero(update.mask)),
        })

    mask = session.mask
    if client is not None:
        session.close()
        client.close()
    elif nni_server:
        session.close()  # gives the server's session back
    # Echo what the first positive click hit (the box centre for a box alone) and warn
    # when the object is implausible for a click, e.g. grown into most of the body.
    anchor = next((v for k, v in steps if k == "point"), None)
    if anchor is None:
        box = next(v for k, v in steps if k == "box")
        anchor = tuple((a + b) / 2 for a, b in zip(box[0], box[1]))
    report = click_report(volume, anchor, mask)
    out = np.zeros(volume.shape, dtype=np.uint8)
    out[mask] = np.uint8(args.label)
    name = args.name or "object"
    t2 = time.perf_counter()
    path = write_labels(volume.with_array(out), args.output, LabelTable.from_names({int(args.label): name}))
    t_write = time.perf_counter() - t2
    voxels = int(np.count_nonzero(mask))
    if args.json:
        for warning in report.warnings:  # stderr: seen by a person, not mixed into the JSON
            print(f"medseg prompt: warning: {warning}", file=sys.stderr)
        print_json({
            "output": str(path),
            "model": args.model,
            "label": int(args.label),
            "name": name,
            "voxels": voxels,
            "volume_ml": round(voxels * volume.voxel_volume_ml, 3),
            "shape_zyx": list(volume.shape),
            "click": report.to_dict(),
            "timings": {
                "read_s": round(t_read, 3),
                "setup_s": round(t_setup, 3),
                "interactions": interactions,
                "write_s": round(t_write, 3),
                "total_s": round(time.perf_counter() - t0, 3),
            },
            # what ran the encoder (absent for weights-free and remote backends)
            "runtime": (session.runtime_report.as_dict()
                        if getattr(session, "runtime_report", None) is not None else None),
        })
    else:
        print(report.text())
        print(f"wrote {path}: {voxels} voxels ({voxels * volume.voxel_volume_ml:.1f} ml) as label {args.label}")
    return 0
