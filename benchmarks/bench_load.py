"""Load benchmark: peak memory of each stage on a large synthetic CT (issue 7, "Load").

A synthetic abdominal CT (the project's phantom, default 512 x 512 x 600 voxels) goes
through the whole pipeline, one stage per fresh Python process:

==========  ===========================================================================
generate    ``make_phantom`` at that size (setup; reported for information)
write       ``io.write_volume`` to a temporary ``.nii.gz`` (setup)
read        ``io.read_volume`` of that file
segment     ``inference.segment.segment(volume, "hu-tissue")`` (weights-free model)
prepare     ``prompts.factory.make_session("region-growing").set_volume(volume)``
clicks      three interactive clicks (two positive in a liver lesion, one negative)
repeat      50 more clicks, resident memory recorded after each (growth check)
statistics  ``analysis.statistics.label_statistics(image, labels, table)``
export      ``io.write_labels`` of the label map (+ sidecar)
==========  ===========================================================================

How memory is measured (Linux): each stage runs in its own process. The process first
warms up (imports and runs the stage once on a tiny phantom, so library imports and
caches are not counted), records its resident memory ``rss0``, loads the stage's inputs
from disk (``rss1``), resets the kernel's high-water mark (``/proc/self/clear_refs``)
and runs the stage; the high-water mark ``VmHWM`` afterwards is the true peak,
including memory that NumPy does not own (SimpleITK, torch). Reported per stage:

* ``peak``: ``VmHWM - rss0`` in units of the float32 volume (4 bytes x voxels), i.e.
  everything the stage holds at its worst, its input arrays included but not the
  interpreter and libraries. Target: < 4 for every stage but the model.
* ``work``: ``VmHWM - rss1``, what the stage needs on top of its inputs.
* ``numpy``: tracemalloc's peak of Python/NumPy allocations during the stage.

The machine is shared, so timings are noisy; memory figures are not.

Usage::

    python benchmarks/bench_load.py              # 512 x 512 x 600 (several minutes)
    python benchmarks/bench_load.py --quick      # 256 x 256 x 150
    python benchmarks/bench_load.py --shape 300,512,512 --json out.json

A stage whose API is missing is reported as "not available"; a stage that fails is
reported with its error, and the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

FULL_SHAPE = (600, 512, 512)
FULL_SPACING = (0.5, 0.8, 0.8)
QUICK_SHAPE = (150, 256, 256)
QUICK_SPACING = (2.0, 0.8, 0.8)
TARGET = 4.0  # peak below 4x the float32 volume for every stage but the model
EXEMPT = ("segment",)
STAGES = ("generate", "write", "read", "segment", "prepare_clicks", "statistics", "export")
N_REPEAT = 50

# --------------------------------------------------------------------- memory probes


def _status_bytes(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def rss() -> int:
    value = _status_bytes("VmRSS")
    if value is None:  # not Linux: best effort
        import resource

        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    return value


def hwm() -> int:
    value = _status_bytes("VmHWM")
    if value is None:
        return rss()
    return value


def reset_hwm() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0); False when impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class Probe:
    """Measure one stage: peak RSS (reset high-water mark) and tracemalloc peak."""

    def __init__(self, rss0: int) -> None:
        self.rss0 = rss0

    def __enter__(self) -> "Probe":
        import gc
        import tracemalloc

        gc.collect()
        self.rss1 = rss()
        self.exact = reset_hwm()
        tracemalloc.start()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        import tracemalloc

        self.seconds = time.perf_counter() - self.t0
        _, self.traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        self.hwm = hwm()

    def result(self, f32: int) -> dict:
        return {
            "seconds": round(self.seconds, 2),
            "inputs_mb": round((self.rss1 - self.rss0) / 1e6, 1),
            "peak_mb": round((self.hwm - self.rss0) / 1e6, 1),
            "work_mb": round((self.hwm - self.rss1) / 1e6, 1),
            "numpy_peak_mb": round(self.traced_peak / 1e6, 1),
            "peak_x": round((self.hwm - self.rss0) / f32, 2),
            "work_x": round((self.hwm - self.rss1) / f32, 2),
            "numpy_x": round(self.traced_peak / f32, 2),
            "exact_peak": self.exact,
        }


# ------------------------------------------------------------------- stage helpers


def _load_ct(work: Path):
    from napari_medseg.io import Volume

    meta = json.loads((work / "meta.json").read_text())
    return Volume.from_geometry_dict(np.load(work / "ct.npy"), meta["geometry"]), meta


def _labels_for_stats(work: Path, reference):
    """The automatic model's labels when that stage ran, else the phantom's truth."""
    from napari_medseg.io import LabelTable

    if (work / "labels_auto.npy").is_file():
        table = LabelTable.from_dict(json.loads((work / "labels_auto.json").read_text()))
        return reference.with_array(np.load(work / "labels_auto.npy"), modality=None), table, "hu-tissue"
    meta = json.loads((work / "meta.json").read_text())
    table = LabelTable.from_names({int(k): v for k, v in meta["names"].items()})
    return reference.with_array(np.load(work / "labels_gt.npy"), modality=None), table, "phantom truth"


def _click_points(meta: dict, labels_gt: np.ndarray) -> tuple:
    """Three clicks on the largest lesion (+, +, -) and 50 more positive clicks inside it."""
    lesion = meta["lesions"][0]
    center = np.asarray(lesion["center_zyx_vox"])
    spacing_zyx = np.asarray(meta["geometry"]["spacing_xyz"][::-1])
    semi_vox = np.asarray(lesion["semi_axes_xyz_mm"][::-1]) / spacing_zyx
    shape = np.asarray(labels_gt.shape)

    def clip(p):
        return tuple(float(v) for v in np.clip(np.round(p), 0, shape - 1))

    first = [(clip(center), True), (clip(center + 0.4 * semi_vox * np.array([0, 1, 0])), True)]
    # Negative: liver just outside the lesion along x.
    neg = center.copy()
    for step in range(1, int(semi_vox[2] * 3) + 2):
        neg = center + np.array([0, 0, semi_vox[2] + step])
        idx = tuple(int(v) for v in clip(neg))
        if labels_gt[idx] == 1:
            break
    first.append((clip(neg), False))
    rng = np.random.default_rng(0)
    repeat = []
    for _ in range(N_REPEAT):
        u = rng.normal(size=3)
        u /= np.linalg.norm(u)
        repeat.append((clip(center + 0.5 * rng.uniform() * semi_vox * u), True))
    return first, repeat


# ----------------------------------------------------------------------- the stages


def _held_bytes(obj, depth: int = 4, seen=None) -> int:
    """NumPy bytes reachable from ``obj`` through containers and attributes (bounded walk)."""
    seen = set() if seen is None else seen
    if isinstance(obj, np.ndarray):
        while isinstance(obj.base, np.ndarray):  # a view holds its base's memory
            obj = obj.base
        if id(obj) in seen:
            return 0
        seen.add(id(obj))
        return obj.nbytes if obj.base is None else 0
    if id(obj) in seen or depth < 0:
        return 0
    seen.add(id(obj))
    if isinstance(obj, dict):
        items = list(obj.values())
    elif isinstance(obj, (list, tuple, set)):
        items = list(obj)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        items = list(vars(obj).values())
    else:
        return 0
    return sum(_held_bytes(x, depth - 1, seen) for x in items)


def _history_bytes(session) -> int:
    """Bytes held by the session's undo history (bounding-box copies of earlier masks)."""
    return _held_bytes(getattr(session, "_history", []))


def _cache_bytes(session) -> int:
    """Bytes held by the backend's caches (per-crop features, per-click components)."""
    return sum(_held_bytes(v) for k, v in vars(session).items()
               if "cache" in k or "component" in k)


def stage_generate(args, work: Path, f32: int) -> dict:
    from napari_medseg.phantom import make_phantom

    make_phantom(seed=0, shape=(32, 64, 64), n_lesions=1)  # warm-up
    rss0 = rss()
    with Probe(rss0) as probe:
        p = make_phantom(seed=0, shape=args.shape, spacing_zyx=args.spacing)
    np.save(work / "ct.npy", p.ct.array)
    np.save(work / "labels_gt.npy", p.labels)
    meta = {"geometry": p.ct.geometry_dict(), "names": {str(k): v for k, v in p.names.items()},
            "lesions": [l.to_dict() for l in p.lesions]}
    (work / "meta.json").write_text(json.dumps(meta))
    return probe.result(f32)


def stage_write(args, work: Path, f32: int) -> dict:
    from napari_medseg.io import Volume, write_volume

    write_volume(Volume(np.zeros((4, 4, 4), np.int16), modality="CT"), work / "warm.nii.gz")
    rss0 = rss()
    volume, _ = _load_ct(work)
    with Probe(rss0) as probe:
        write_volume(volume, work / "ct.nii.gz")
    out = probe.result(f32)
    out["file_mb"] = round((work / "ct.nii.gz").stat().st_size / 1e6, 1)
    return out


def stage_read(args, work: Path, f32: int) -> dict:
    from napari_medseg.io import read_volume

    read_volume(work / "warm.nii.gz")
    rss0 = rss()
    with Probe(rss0) as probe:
        volume = read_volume(work / "ct.nii.gz")
    out = probe.result(f32)
    out["check"] = "same voxels as written" if np.array_equal(volume.array, np.load(work / "ct.npy", mmap_mode="r")) \
        else "VOXELS DIFFER"
    return out


def stage_segment(args, work: Path, f32: int) -> dict:
    from napari_medseg.inference.segment import segment
    from napari_medseg.io import read_volume
    from napari_medseg.phantom import make_phantom

    read_volume(work / "warm.nii.gz")  # warm-up: imports (SimpleITK, ...) are not the stage's memory
    segment(make_phantom(seed=1, shape=(32, 64, 64), n_lesions=0).ct, "hu-tissue")
    rss0 = rss()
    volume = read_volume(work / "ct.nii.gz")
    with Probe(rss0) as probe:
        labels, table = segment(volume, "hu-tissue")
    np.save(work / "labels_auto.npy", labels)
    (work / "labels_auto.json").write_text(json.dumps(table.to_dict()))
    out = probe.result(f32)
    out["classes"] = len(table)
    return out


def stage_prepare_clicks(args, work: Path, f32: int) -> dict:
    from napari_medseg.io import read_volume
    from napari_medseg.phantom import make_phantom
    from napari_medseg.prompts.factory import make_session

    read_volume(work / "warm.nii.gz")  # warm-up
    tiny = make_phantom(seed=1, shape=(32, 64, 64), n_lesions=1)
    warm = make_session("region-growing")
    warm.set_volume(tiny.ct)
    warm.add_point(tuple(round(c) for c in tiny.lesions[0].center_zyx_vox))
    del warm, tiny

    rss0 = rss()
    volume = read_volume(work / "ct.nii.gz")
    meta = json.loads((work / "meta.json").read_text())
    first, repeat = _click_points(meta, np.load(work / "labels_gt.npy", mmap_mode="r"))
    results = {}
    with Probe(rss0) as probe:
        session = make_session("region-growing")
        session.set_volume(volume)
    results["prepare"] = probe.result(f32)
    with Probe(rss0) as probe:
        times = []
        for point, positive in first:
            times.append(session.add_point(point, positive=positive).timing_s)
    results["clicks"] = probe.result(f32)
    results["clicks"]["per_click_s"] = [round(t, 2) for t in times]
    results["clicks"]["mask_voxels"] = int(session.mask.sum())

    with Probe(rss0) as probe:
        import tracemalloc

        after, traced, history, caches = [], [], [], []
        for point, positive in repeat:
            session.add_point(point, positive=positive)
            after.append(rss())
            traced.append(tracemalloc.get_traced_memory()[0])  # live NumPy/Python objects
            history.append(_history_bytes(session))
            caches.append(_cache_bytes(session))
    rep = probe.result(f32)
    traced_mb = np.asarray(traced, dtype=float) / 1e6
    after_mb = np.asarray(after, dtype=float) / 1e6
    hist_mb = np.asarray(history, dtype=float) / 1e6
    cache_mb = np.asarray(caches, dtype=float) / 1e6
    slope = float(np.polyfit(np.arange(10, len(after_mb)), after_mb[10:], 1)[0]) if len(after_mb) > 12 else 0.0
    growth = float(after_mb[-1] - after_mb[9])
    hist_growth = float(hist_mb[-1] - hist_mb[9])
    cache_growth = float(cache_mb[-1] - cache_mb[9])
    n_history = len(session._history)
    session.reset()
    import gc

    gc.collect()
    rep.update({
        "n_clicks": len(after),
        "rss_after_click_mb": [round(v, 1) for v in after_mb],
        "cache_mb_after_click": [round(v, 1) for v in cache_mb],
        "growth_after_click10_mb": round(growth, 1),
        "undo_history_growth_mb": round(hist_growth, 1),
        "cache_growth_mb": round(cache_growth, 1),
        "cache_mb": round(float(cache_mb[-1]), 1),
        "unexplained_growth_mb": round(growth - hist_growth - cache_growth, 1),
        "live_objects_mb_after_click": [round(v, 1) for v in traced_mb],
        "live_objects_growth_mb": round(float(traced_mb[-1] - traced_mb[9]), 1),
        "live_unexplained_growth_mb": round(float(traced_mb[-1] - traced_mb[9]) - hist_growth - cache_growth, 1),
        "rss_after_reset_mb": round(rss() / 1e6, 1),
        "slope_mb_per_click": round(slope, 3),
        "undo_history": n_history,
        "undo_history_mb": round(float(hist_mb[-1]), 1),
    })
    results["repeat"] = rep
    return results


def stage_statistics(args, work: Path, f32: int) -> dict:
    from napari_medseg.analysis.statistics import label_statistics
    from napari_medseg.io import LabelTable, read_volume
    from napari_medseg.phantom import make_phantom

    read_volume(work / "warm.nii.gz")  # warm-up
    tiny = make_phantom(seed=1, shape=(32, 64, 64), n_lesions=0)
    label_statistics(tiny.ct, tiny.labels_volume, LabelTable.from_names(tiny.names))
    rss0 = rss()
    volume = read_volume(work / "ct.nii.gz")
    labels, table, source = _labels_for_stats(work, volume)
    with Probe(rss0) as probe:
        rows = label_statistics(volume, labels, table)
    out = probe.result(f32)
    out.update({"labels_from": source, "rows": len(rows)})
    return out


def stage_export(args, work: Path, f32: int) -> dict:
    from napari_medseg.io import Volume, read_volume, write_labels

    read_volume(work / "warm.nii.gz")  # warm-up
    write_labels(Volume(np.zeros((4, 4, 4), np.uint8)), work / "warm_labels.nii.gz")
    rss0 = rss()
    volume = read_volume(work / "ct.nii.gz")
    labels, table, source = _labels_for_stats(work, volume)
    del volume
    with Probe(rss0) as probe:
        write_labels(labels, work / "labels_out.nii.gz", table)
    out = probe.result(f32)
    out.update({"labels_from": source, "file_mb": round((work / "labels_out.nii.gz").stat().st_size / 1e6, 2)})
    return out


STAGE_FUNCS = {
    "generate": stage_generate, "write": stage_write, "read": stage_read, "segment": stage_segment,
    "prepare_clicks": stage_prepare_clicks, "statistics": stage_statistics, "export": stage_export,
}


def run_child(args) -> int:
    work = Path(args.workdir)
    f32 = 4 * int(np.prod(args.shape))
    try:
        result = {"status": "ok", **STAGE_FUNCS[args.child](args, work, f32)}
    except (ImportError, AttributeError) as exc:
        result = {"status": "not available", "reason": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # report and let the other stages run
        result = {"status": "error", "reason": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc()[-2000:]}
    print("RESULT " + json.dumps(result))
    return 0


# ----------------------------------------------------------------------- the parent


def _triple(text: str, kind=float) -> tuple:
    values = tuple(kind(v) for v in text.split(","))
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"need three comma-separated numbers, got {text!r}")
    return values


def _rows(results: dict) -> list:
    """Flatten to (stage, dict) rows in pipeline order."""
    rows = []
    for stage in STAGES:
        res = results.get(stage, {})
        if stage == "prepare_clicks" and res.get("status") == "ok":
            for sub in ("prepare", "clicks", "repeat"):
                rows.append((sub if sub != "repeat" else f"{N_REPEAT} more clicks", {"status": "ok", **res[sub]}))
        else:
            rows.append((stage, res))
    return rows


def print_report(results: dict, shape: tuple, f32: int, elapsed: float) -> None:
    print(f"\nLoad benchmark: {shape[2]} x {shape[1]} x {shape[0]} voxels (x, y, z); "
          f"float32 volume = {f32 / 1e6:.0f} MB; int16 CT = {f32 / 2e6:.0f} MB; total {elapsed:.0f} s")
    print("peak/work/numpy in units of the float32 volume (target: peak < 4 except the model)\n")
    header = f"{'stage':<16}{'time s':>8}{'inputs MB':>11}{'peak MB':>10}{'peak x':>8}{'work x':>8}{'numpy x':>9}  verdict"
    print(header)
    print("-" * len(header))
    for stage, res in _rows(results):
        if res.get("status") != "ok":
            print(f"{stage:<16}  {res.get('status', 'not run')}: {res.get('reason', '')[:100]}")
            continue
        exempt = stage in EXEMPT or stage == "generate"
        verdict = ("(model, exempt)" if stage in EXEMPT else "(setup)" if stage == "generate"
                   else "PASS" if res["peak_x"] < TARGET else "FAIL")
        if not exempt and not res.get("exact_peak", True):
            verdict += " (peak includes loading)"
        print(f"{stage:<16}{res['seconds']:>8.1f}{res['inputs_mb']:>11.0f}{res['peak_mb']:>10.0f}"
              f"{res['peak_x']:>8.2f}{res['work_x']:>8.2f}{res['numpy_x']:>9.2f}  {verdict}")
    pc = results.get("prepare_clicks", {})
    if pc.get("status") == "ok":
        rep = pc["repeat"]
        # Growth the undo history explains is by design (one bounding-box copy of the mask
        # per click). A leak shows as live objects (tracemalloc) growing beyond that; RSS
        # may also grow through allocator fragmentation, reported separately.
        growth_ok = rep["live_unexplained_growth_mb"] < 0.01 * f32 / 1e6 + 5
        print(f"\nclicks: {pc['clicks']['per_click_s']} s each; mask {pc['clicks']['mask_voxels']} voxels")
        print(f"{rep['n_clicks']} repeated clicks: RSS after click 1 / 10 / {rep['n_clicks']}: "
              f"{rep['rss_after_click_mb'][0]:.0f} / {rep['rss_after_click_mb'][9]:.0f} / "
              f"{rep['rss_after_click_mb'][-1]:.0f} MB; clicks 10-{rep['n_clicks']}: "
              f"{rep['growth_after_click10_mb']:+.1f} MB ({rep['slope_mb_per_click']:+.3f} MB/click), of which "
              f"undo history {rep['undo_history_growth_mb']:+.1f} MB ({rep['undo_history']} entries, "
              f"{rep['undo_history_mb']:.1f} MB), backend caches {rep['cache_growth_mb']:+.1f} MB "
              f"(now {rep['cache_mb']:.1f} MB), unexplained {rep['unexplained_growth_mb']:+.1f} MB; "
              f"live NumPy/Python objects {rep['live_objects_growth_mb']:+.1f} MB, beyond undo history and "
              f"caches {rep['live_unexplained_growth_mb']:+.1f} MB -> {'NO LEAK' if growth_ok else 'GROWING'}; "
              f"RSS after reset() {rep['rss_after_reset_mb']:.0f} MB")
    for stage in ("write", "read", "statistics", "export", "segment"):
        res = results.get(stage, {})
        extra = {k: res[k] for k in ("file_mb", "check", "labels_from", "rows", "classes") if k in res}
        if extra:
            print(f"{stage}: {extra}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=lambda t: _triple(t, int), default=None, help="z,y,x (default 600,512,512)")
    parser.add_argument("--spacing", type=_triple, default=None, help="z,y,x mm (default 0.5,0.8,0.8)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SHAPE} voxels instead")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of " + ",".join(STAGES))
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.shape is None:
        args.shape = QUICK_SHAPE if args.quick else FULL_SHAPE
    if args.spacing is None:
        args.spacing = QUICK_SPACING if args.quick else FULL_SPACING
    if args.child:
        return run_child(args)

    f32 = 4 * int(np.prod(args.shape))
    wanted = [s for s in args.stages.split(",") if s]
    unknown = set(wanted) - set(STAGES)
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}; choose from {','.join(STAGES)}")
    results = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="medseg_bench_load_") as tmp:
        for stage in STAGES:
            if stage not in wanted and stage not in ("generate", "write"):
                continue  # generate and write make the inputs of every other stage
            cmd = [sys.executable, os.path.abspath(__file__), "--child", stage, "--workdir", tmp,
                   "--shape", ",".join(map(str, args.shape)), "--spacing", ",".join(map(str, args.spacing))]
            print(f"[{time.perf_counter() - t0:6.0f} s] {stage} ...", flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = next((l for l in reversed(proc.stdout.splitlines()) if l.startswith("RESULT ")), None)
            if line is None:
                results[stage] = {"status": "error",
                                  "reason": f"process exited {proc.returncode}: {proc.stderr.strip()[-300:]}"}
            else:
                results[stage] = json.loads(line[len("RESULT "):])
            if results[stage].get("status") == "error" and "traceback" in results[stage]:
                print(results[stage]["traceback"], file=sys.stderr)
    elapsed = time.perf_counter() - t0
    print_report(results, args.shape, f32, elapsed)
    if args.json:
        doc = {"shape_zyx": list(args.shape), "spacing_zyx": list(args.spacing), "float32_mb": f32 / 1e6,
               "seconds": elapsed, "results": results}
        Path(args.json).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
