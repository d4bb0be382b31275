"""``medseg segment IMAGE -o OUT [--model NAME] ...``: automatic segmentation, headless.

Writes the label map on the image's grid (same spacing, origin and direction) with the
names sidecar, atomically; ``--json`` prints what was written, the structures present with
their voxel counts and volumes, the timings (``total_s``: the whole command, read to
write; ``read_s``, ``segment_s``, ``write_s``, the model's own stages and ``convert_s``, the
time spent converting or loading compiled networks) and ``runtime`` (``--runtime``: what
ran the networks, and the reason for a fallback to PyTorch). An output that
is the input, options the model does not use (``--weights`` for hu-tissue, a GPU
``--device`` for hu-tissue or one this machine lacks), unknown ``--roi-subset`` names and,
for hu-tissue, a label map or non-CT image are refused before anything is written.
With ``--server URL --token-file FILE`` the work runs on a ``medseg serve`` machine
(:mod:`napari_medseg.serve.client`) and the same file is written here.
A multi-sequence nnU-Net model takes one image per channel: IMAGE then ``--image PATH``
repeated in the model's channel order, or IMAGE (the first channel) plus
``--channel-image NAME=PATH`` by the names of its ``dataset.json``; images on another grid
are resampled onto the first channel's grid with a note, a missing channel is refused.
``--confidence FILE`` also writes the model's confidence (the probability of each voxel's
class, float32 on the image's grid) and adds per-structure confidence figures and review
flags to ``--json`` (:mod:`napari_medseg.analysis.confidence`).
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment an image automatically (weights-free tissue model, TotalSegmentator tasks, "
             "any nnU-Net v2 model folder)",
        description=(
            "Run an automatic model on a CT/MR volume and write the label map with the source "
            "geometry and a JSON sidecar of names and colours. Models: `medseg weights list`. "
            "The default, hu-tissue, needs no weights."
        ),
    )
    parser.add_argument("image", nargs="?", default=None,
                        help="image file (NIfTI, NRRD, MetaImage) or DICOM folder (for a "
                             "multi-sequence model: its first channel)")
    parser.add_argument("--image", dest="images", action="append", default=[], metavar="PATH",
                        help="one more input image, repeated in the model's channel order "
                             "(e.g. T1, T1c, T2, FLAIR for a four-channel nnU-Net model)")
    parser.add_argument("--channel-image", action="append", default=[], metavar="NAME=PATH",
                        help="the image of the model channel NAME (names from the model's "
                             "dataset.json); images on another grid are resampled onto the "
                             "first channel's grid, with a note")
    parser.add_argument("-o", "--output", required=True,
                        help="output label file (.nii.gz, .nrrd, .seg.nrrd, .mha)")
    parser.add_argument("--model", default="hu-tissue",
                        help="registry name (default: hu-tissue) or an nnU-Net v2 model folder")
    parser.add_argument("--weights", default=None,
                        help="folder (or checkpoint) holding the model's weights, if not in the "
                             "cache or TotalSegmentator's folder (refused for hu-tissue and "
                             "model folders, which need none)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                        help="where the network runs (default: auto = CUDA, MPS, then CPU; "
                             "hu-tissue runs on the CPU only)")
    parser.add_argument("--runtime", default="auto", choices=("auto", "openvino", "torch"),
                        help="what runs the network on the CPU: openvino (compiled once and "
                             "cached; any failure falls back to PyTorch with a note) or torch; "
                             "default auto = OpenVINO for nnU-Net networks when the "
                             "compiled model is cached or the run repays the conversion, "
                             "else PyTorch; GPUs use PyTorch")
    parser.add_argument("--roi-subset", default=None,
                        help="comma-separated structure names to keep (e.g. liver,spleen); "
                             "for 'total' only the part models holding them run")
    parser.add_argument("--channel", type=int, default=None,
                        help="for 4D / multi-channel images: which volume to use")
    parser.add_argument("--json", action="store_true",
                        help="print output, model, labels present (voxels, ml) and timings as JSON "
                             "(total_s: the whole command)")
    _add_confidence_options(parser)
    from .serve import add_remote_options

    add_remote_options(parser)
    parser.set_defaults(func=run)


def _add_confidence_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("confidence (network models)")
    group.add_argument("--confidence", default=None, metavar="FILE",
                       help="also write the confidence map (probability of each voxel's class, "
                            "float32, 1 = certain) to FILE (.nii.gz, .nrrd, .mha), and add "
                            "per-structure confidence and review flags to the output")
    add_review_options(group)


def add_review_options(group) -> None:
    """``--temperature`` and ``--review-threshold``, shared by ``medseg segment`` and ``medseg batch``."""
    group.add_argument("--temperature", type=float, default=None,
                       help="softmax temperature for the confidence (default: the model's, 1); "
                            "fit one on your labelled cases with `medseg calibrate`")
    group.add_argument("--review-threshold", default=None, metavar="NAME=VALUE[,...]",
                       help="review-flag thresholds (voxel=0.9, mean=0.85, fraction_below=0.25, "
                            "boundary=0.7 by default)")


def review_thresholds(text):
    """``--review-threshold voxel=0.8,mean=0.9`` as a ReviewThresholds (SystemExit 2 on errors)."""
    from dataclasses import fields

    from ..analysis.confidence import ReviewThresholds
    from ..errors import InvalidInputError

    if not text:
        return ReviewThresholds()
    known = [f.name for f in fields(ReviewThresholds)]
    values = {}
    for item in str(text).split(","):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in known:
            raise InvalidInputError(f"--review-threshold: unknown name {name!r}; use "
                                    + ", ".join(known))
        try:
            values[name] = float(value)
        except ValueError:
            raise InvalidInputError(f"--review-threshold {name}: {value!r} is not a number") from None
    try:
        return ReviewThresholds(**values)
    except ValueError as exc:
        raise InvalidInputError(f"--review-threshold: {exc}") from None


def _confidence_outputs(args, volume, result, thresholds) -> dict:
    """Write the confidence map and return the per-structure figures (``{}`` when not asked)."""
    from ..analysis.confidence import flagged, summarise_confidence
    from ..io import write_volume

    if not args.confidence:
        return {}
    if result.confidence is None:
        return {"confidence": None}
    path = write_volume(volume.with_array(result.confidence.max_prob.astype("float32")),
                        args.confidence)
    summary = summarise_confidence(result.labels, result.confidence.max_prob, result.table.names,
                                   thresholds)
    return {"confidence": str(path), "temperature": result.confidence.temperature,
            "structures": {s.id: s for s in summary},
            "review": [s.name for s in flagged(summary)]}


def _channel_paths(args):
    """The input paths: a list in channel order, or ``{channel name: path}`` (first: IMAGE).

    Raises
    ------
    InvalidInputError
        No image at all, a ``--channel-image`` without ``NAME=``, a name given twice, or
        ``--channel-image`` mixed with repeated ``--image``.
    """
    from ..errors import InvalidInputError

    ordered = ([args.image] if args.image else []) + list(args.images)
    if not args.channel_image:
        if not ordered:
            raise InvalidInputError("no input image: give IMAGE (and --image PATH for each more "
                                    "channel, or --channel-image NAME=PATH)")
        return ordered
    if args.images:
        raise InvalidInputError("give the channels either in order (--image, repeated) or by name "
                                "(--channel-image NAME=PATH), not both")
    named = {}
    for item in args.channel_image:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise InvalidInputError(f"--channel-image {item!r}: write NAME=PATH, e.g. T2=t2.nii.gz")
        if name.strip().lower() in {n.lower() for n in named}:
            raise InvalidInputError(f"--channel-image: channel {name.strip()!r} given twice")
        named[name.strip()] = path.strip()
    if args.image:
        from ..inference.segment import model_channels

        first = model_channels(args.model)[0]
        if first.lower() in {n.lower() for n in named}:
            raise InvalidInputError(f"IMAGE is the model's first channel ({first}) and "
                                    f"--channel-image names {first} too: give it once")
        named = {first: args.image, **named}
    return named


def run(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from ..inference.segment import check_segment_options, segment_with_info
    from ..io import read_volume, write_labels
    from ..io.paths import check_outputs
    from ._common import TqdmProgress, print_json
    from .serve import remote_client

    t0 = time.perf_counter()
    roi = [s for s in args.roi_subset.split(",") if s.strip()] if args.roi_subset else None
    inputs = _channel_paths(args)
    args.image = next(iter(inputs.values())) if isinstance(inputs, dict) else inputs[0]
    # Refusals first: nothing is read, computed or written for a bad command line.
    check_outputs([args.output], list(inputs.values() if isinstance(inputs, dict) else inputs),
                  what="-o/--output")
    if args.confidence:
        check_outputs([args.confidence], [args.image, args.output], what="--confidence")
    thresholds = review_thresholds(args.review_threshold)
    if args.temperature is not None and not args.temperature > 0:
        from ..errors import InvalidInputError

        raise InvalidInputError(f"--temperature must be a positive number, got {args.temperature}")
    client = remote_client(args)  # None: run here
    if client is not None and args.confidence:
        from ..errors import InvalidInputError

        raise InvalidInputError("--confidence runs on this computer only; leave out --server")
    if client is not None and len(inputs) > 1:
        from ..errors import InvalidInputError

        raise InvalidInputError("multi-sequence inputs run on this computer only; leave out --server")
    if client is None:
        check_segment_options(args.model, weights=args.weights, device=args.device, roi_subset=roi,
                              runtime=args.runtime)
    if isinstance(inputs, dict):
        channels = {name: read_volume(p, channel=args.channel) for name, p in inputs.items()}
        volume = next(iter(channels.values()))
    else:
        channels = [read_volume(p, channel=args.channel) for p in inputs]
        volume = channels[0]
    model_input = channels if len(inputs) > 1 else volume
    t_read = time.perf_counter() - t0
    with TqdmProgress(desc=f"medseg segment ({args.model})") as bar:
        if client is not None:
            from ..serve.client import remote_segment

            with client:
                result = remote_segment(volume, args.model, client=client, roi_subset=roi,
                                        progress=bar)
        else:
            result = segment_with_info(model_input, args.model, weights=args.weights,
                                       device=args.device,
                                       roi_subset=roi, progress=bar, runtime=args.runtime,
                                       confidence=bool(args.confidence),
                                       temperature=args.temperature)
    t1 = time.perf_counter()
    path = write_labels(volume.with_array(result.labels), args.output, result.table)
    conf = _confidence_outputs(args, volume, result, thresholds)
    t_write = time.perf_counter() - t1

    counts = np.bincount(result.labels.ravel())
    present = []
    for idx in np.flatnonzero(counts):
        if idx == 0:
            continue
        present.append({
            "id": int(idx),
            "name": result.table.names.get(int(idx), f"label {int(idx)}"),
            "voxels": int(counts[idx]),
            "volume_ml": round(float(counts[idx]) * volume.voxel_volume_ml, 3),
        })
        if conf.get("structures") and int(idx) in conf["structures"]:
            figures = conf["structures"][int(idx)].as_dict()
            present[-1].update({k: figures[k] for k in (
                "mean_confidence", "fraction_below", "boundary_confidence", "review", "reasons")})
    # total_s is the whole command (read, segment, write, summary); segment_s the model.
    timings = {"read_s": round(t_read, 3)}
    timings.update({("segment_s" if k == "total_s" else k): round(v, 3)
                    for k, v in result.timings.items()})
    timings["write_s"] = round(t_write, 3)
    timings["total_s"] = round(time.perf_counter() - t0, 3)
    if args.json:
        print_json({
            "output": str(path),
            "model": result.model,
            "labels": present,
            "timings": timings,
            "runtime": getattr(result, "runtime", {}) or {"requested": args.runtime, "used": "none"},
            "notes": result.notes,
            **({"confidence": conf["confidence"], "temperature": conf.get("temperature"),
                "review": conf.get("review", []), "review_thresholds": vars(thresholds)}
               if conf else {}),
        })
    else:
        print(f"wrote {path} ({len(present)} structures, model {result.model}, "
              f"{timings['total_s']:.1f} s)")
        for note in result.notes:
            print(f"note: {note}")
        if conf.get("confidence"):
            print(f"wrote {conf['confidence']} (confidence); to review: "
                  + (", ".join(conf["review"]) or "none flagged"))
        for item in present:
            print(f"  {item['id']:>4}  {item['name']:<32} {item['volume_ml']:>10.1f} ml")
    return 0
