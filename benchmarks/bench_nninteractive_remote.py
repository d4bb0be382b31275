"""nninteractive-remote against the local nninteractive backend, in the same run.

Starts the real ``nninteractive-server`` (nnInteractive 2.6) on loopback on the CPU,
serving the random-weight test model (``napari_medseg.testing.nninteractive``), and runs
the same clicks through :class:`~napari_medseg.prompts.nninteractive_remote.NnInteractiveRemoteSession`
and the local :class:`~napari_medseg.prompts.nninteractive_session.NnInteractiveSession`:
set-up (open a session and send the image), per-click time (median), the remote/local
ratio, the bytes on the wire per click (request and answer bodies), and whether the masks
are equal at every click.

Both run on the same CPU, so the ratio is the protocol's overhead (HTTP, compression,
the changed box's copy), not what a GPU server gains. Usage::

    python benchmarks/bench_nninteractive_remote.py [--shape 40,80,80] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

CLICKS = [((20, 36, 40), True), ((20, 50, 34), False), ((14, 28, 30), True), ((24, 30, 46), True)]


def scan(shape) -> "object":
    from napari_medseg.io.volume import Volume

    rng = np.random.default_rng(0)
    img = rng.normal(40, 25, shape)
    img[10:30, 20:52, 24:56] += 150
    img[16:24, 44:60, 30:40] -= 120
    return Volume(img.astype(np.int16), spacing=(0.8, 0.8, 1.0))


def run(session, vol) -> tuple:
    """``(set-up seconds, [click seconds], [mask after each click])``."""
    t = time.perf_counter()
    session.set_volume(vol)
    setup = time.perf_counter() - t
    times, masks = [], []
    for zyx, positive in CLICKS:
        t = time.perf_counter()
        session.add_point(zyx, positive=positive)
        times.append(time.perf_counter() - t)
        masks.append(session.mask.copy())
    return setup, times, masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="40,80,80")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))

    from napari_medseg.prompts.nninteractive_remote import NnInteractiveRemoteSession
    from napari_medseg.prompts.nninteractive_session import NnInteractiveSession
    from napari_medseg.testing.nninteractive import make_random_nninteractive_folder, run_nninteractive_server

    vol = scan(shape)
    print(f"volume {shape}, {len(CLICKS)} clicks, {args.repeats} repeats, load {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_random_nninteractive_folder(Path(tmp))
        with run_nninteractive_server(folder, Path(tmp)) as server:
            rows = {"local": [], "remote": []}
            equal = True
            wire_all = []
            for _ in range(args.repeats):
                local = NnInteractiveSession(weights=folder, device="cpu")
                rows["local"].append(run(local, vol))
                remote = NnInteractiveRemoteSession(server.url)
                sizes = []
                # hook the client's HTTP traffic once the session exists (set_volume opens it)
                setup_t = time.perf_counter()
                remote.set_volume(vol)
                setup = time.perf_counter() - setup_t
                http = remote._backend._remote._http
                http.event_hooks["request"].append(lambda r: sizes.append((r.url.path, len(r.content), None)))

                def answered(response, sizes=sizes):
                    path, sent, _ = sizes[-1]
                    sizes[-1] = (path, sent, int(response.headers.get("content-length", 0)))

                http.event_hooks["response"].append(answered)
                times, masks, wire = [], [], []
                for zyx, positive in CLICKS:
                    n = len(sizes)
                    t = time.perf_counter()
                    remote.add_point(zyx, positive=positive)
                    times.append(time.perf_counter() - t)
                    masks.append(remote.mask.copy())
                    wire.append(sum(s + (r or 0) for _, s, r in sizes[n:]))
                rows["remote"].append((setup, times, masks))
                wire_all.append(wire)
                equal &= all(np.array_equal(a, b) for a, b in zip(rows["local"][-1][2], masks))
                remote.close()
    for name, runs in rows.items():
        setups = [r[0] for r in runs]
        clicks = [t for r in runs for t in r[1]]
        print(f"{name:7s} set-up median {statistics.median(setups):.3f} s; click median "
              f"{statistics.median(clicks):.3f} s (min {min(clicks):.3f}, max {max(clicks):.3f})")
    lc = statistics.median([t for r in rows["local"] for t in r[1]])
    rc = statistics.median([t for r in rows["remote"] for t in r[1]])
    ls = statistics.median([r[0] for r in rows["local"]])
    rs = statistics.median([r[0] for r in rows["remote"]])
    print(f"remote/local: click {rc / lc:.2f}x ({(rc - lc) * 1000:+.0f} ms), set-up {rs / ls:.2f}x")
    per_click = [b for w in wire_all for b in w]
    print(f"wire per click (request + answer bodies): median {statistics.median(per_click) / 1024:.1f} KiB, "
          f"max {max(per_click) / 1024:.1f} KiB; image {vol.array.nbytes / 1024:.0f} KiB raw, sent once")
    print(f"masks equal at every click: {equal}")


if __name__ == "__main__":
    main()
