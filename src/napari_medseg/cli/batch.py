"""``medseg batch INPUT -o OUTDIR --model NAME ...``: segment a cohort, resumably.

INPUT is a folder (every NIfTI/NRRD/MetaImage file and DICOM series subfolder is a
case), a quoted glob, or a CSV manifest of ``case_id,path`` lines. Writes
``OUTDIR/labels/<case_id>.<ext>`` (+ names sidecar), ``OUTDIR/records/`` (what makes a
case done), ``OUTDIR/results.csv`` (and ``results.parquet`` with pyarrow) and
``OUTDIR/run.json``. Exit status: 0 all cases ok or skipped; 3 some cases failed (listed);
2 refused before any case ran; 130 interrupted (rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import sys

from .segment import add_review_options

#: Exit status when the run finished but some cases failed.
EXIT_CASES_FAILED = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "batch",
        help="segment a cohort (folder, glob or CSV manifest) on a local process pool or a "
             "Ray cluster, resumably, into labels/ and a results table",
        description=(
            "Segment every case of a cohort with one automatic model. Each worker loads the "
            "model once. A rerun skips cases already done with the same input and settings; "
            "a failing case becomes one error row and the others finish. See docs/batch.md."
        ),
    )
    parser.add_argument("input", help="cohort folder, quoted glob pattern, or CSV manifest "
                                      "(case_id,path per line)")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                        help="output folder (labels/, records/, results.csv, results.parquet, "
                             "run.json); must not hold the inputs")
    parser.add_argument("--model", default="hu-tissue",
                        help="registry name (default: hu-tissue) or an nnU-Net v2 model folder")
    parser.add_argument("--weights", default=None,
                        help="folder holding the model's weights (as for medseg segment)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                        help="where the network runs in each worker (default: auto)")
    parser.add_argument("--runtime", default="auto", choices=("auto", "openvino", "torch"),
                        help="what runs the network on a CPU (as for medseg segment; part of "
                             "the settings fingerprint)")
    parser.add_argument("--roi-subset", default=None,
                        help="comma-separated structure names to keep (e.g. liver,spleen)")
    parser.add_argument("--channel", type=int, default=None,
                        help="for 4D / multi-channel images: which volume to use")
    parser.add_argument("--ext", default=".nii.gz",
                        choices=(".nii.gz", ".nii", ".nrrd", ".mha", ".seg.nrrd"),
                        help="label file format (default: .nii.gz)")
    parser.add_argument("--engine", default="local", choices=("local", "ray"),
                        help="local: worker processes on this machine (default); ray: Ray actors "
                             "(pip install \"napari-medseg[ray]\")")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join (auto, HOST:PORT, ray://HOST:10001); "
                             "without it --engine ray starts a local Ray instance")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes / actors (default: CPU cores here, or what the "
                             "Ray cluster offers); each holds its own copy of the model")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0,
                        help="Ray: GPUs each actor reserves (1: one actor per GPU; default 0: "
                             "CPU actors)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per worker (default: cores / workers; 1 per Ray "
                             "CPU actor)")
    parser.add_argument("--retries", type=int, default=2,
                        help="retries of a case whose worker process died during it (default 2)")
    parser.add_argument("--stats", action="store_true",
                        help="add each structure's volume (mL) and mean/std intensity to the rows")
    group = parser.add_argument_group("confidence (network models)")
    group.add_argument("--confidence", action="store_true",
                       help="add each structure's mean confidence, fraction of unsure voxels, "
                            "boundary confidence and review flag, and a review column (the "
                            "flagged structures), to the rows")
    add_review_options(group)
    parser.add_argument("--no-resume", action="store_true",
                        help="rerun every case, even those already done")
    parser.set_defaults(func=run)


class _Progress:
    """Cases done / failed / skipped with an ETA: a bar on a terminal, else one line per case."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.bar = None
        self.total = 0
        self.done = 0
        self.counts = {"ok": 0, "error": 0, "skipped": 0}

    def start(self, info: dict) -> None:
        self.total = info["cases"]
        text = (f"medseg batch: {info['cases']} case(s), {info['skipped']} already done, "
                f"{info['to_run']} to run")
        if info["to_run"]:
            text += f" on {info['engine']}" + (f" ({info['workers']} worker(s))"
                                               if info.get("workers") else "")
        print(text, file=sys.stderr, flush=True)
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc="medseg batch", unit="case", file=sys.stderr,
                            dynamic_ncols=True)

    def row(self, row: dict) -> None:
        self.done += 1
        self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1
        if self.bar is not None:
            self.bar.set_postfix_str(f"ok {self.counts['ok']} failed {self.counts['error']} "
                                     f"skipped {self.counts['skipped']}", refresh=False)
            self.bar.update(1)
            if row["status"] == "error":
                self.bar.write(f"  {row['case_id']}: error: {row['error']}", file=sys.stderr)
        elif row["status"] != "skipped":
            text = f"[{self.done}/{self.total}] {row['case_id']}: {row['status']}"
            if row.get("seconds") is not None:
                text += f" ({float(row['seconds']):.1f} s)"
            if row["status"] == "error":
                text += f": {row['error']}"
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> int:
    from ..batch import run_batch
    from .segment import review_thresholds

    roi = [s for s in args.roi_subset.split(",") if s.strip()] if args.roi_subset else None
    progress = _Progress()
    try:
        summary = run_batch(
            args.input, args.output, model=args.model, weights=args.weights, device=args.device,
            runtime=args.runtime, roi_subset=roi, channel=args.channel, ext=args.ext, stats=args.stats,
            confidence=args.confidence, temperature=args.temperature,
            review_thresholds=(review_thresholds(args.review_threshold)
                               if args.review_threshold else None),
            engine=args.engine, workers=args.workers, retries=args.retries, address=args.address,
            gpus_per_worker=args.gpus_per_worker, resume=not args.no_resume, threads=args.threads,
            on_start=progress.start, on_row=progress.row, argv=list(sys.argv))
    finally:
        progress.close()
    for note in summary.notes:
        print(f"note: {note}", file=sys.stderr)
    ran = summary.count("ok") + summary.count("error")
    rate = f", {60.0 * ran / summary.seconds:.1f} cases/min" if ran and summary.seconds > 0 else ""
    print(f"{summary.cases} case(s): {summary.count('ok')} ok, {summary.count('skipped')} skipped "
          f"(already done), {summary.count('error')} failed in {summary.seconds:.1f} s{rate}")
    print(f"results: {', '.join(str(p) for p in summary.files)}")
    if summary.failed:
        print("failed cases:")
        for row in summary.failed:
            print(f"  {row['case_id']}: {row['error']}")
    if summary.interrupted:
        missing = summary.cases - len(summary.rows)
        print(f"medseg batch: interrupted; {missing} case(s) not run, finished outputs kept; "
              "rerun the same command to resume", file=sys.stderr)
        return 130
    return EXIT_CASES_FAILED if summary.failed else 0
