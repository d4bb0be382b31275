"""``medseg serve`` on loopback: upload time and size, per-click latency and bytes, remote vs local.

Run: ``python benchmarks/bench_serve.py`` (a 300 x 512 x 512 int16 phantom CT;
``--quick``: 150 x 256 x 256; ``--no-sam``: region growing only).

A real uvicorn server runs in this process (a thread) on 127.0.0.1; the clients are the
project's own (:mod:`napari_medseg.serve.client`). Measured:

* upload: compressing and sending the CT once (``set_volume`` minus the server's own
  preparation, which a local session pays too), its bytes vs the raw volume; target
  <= 2 s for 512 x 512 x 300 int16;
* per click, median over clicks in the liver, spleen and kidneys: local session vs the
  same backend on the server (region growing; SAM-Med3D full remote and split mode,
  whose clicks inside an encoded crop stay on this machine), and the bytes each click
  sends and receives vs the changed box; target: remote <= local + 20 ms, bytes in
  proportion to the changed box (bits, compressed), not the volume.

SAM-Med3D runs with seeded random weights of the released shapes (same cost as the real
checkpoint). Ratios are figure / target (<= 1 meets it). Server and client share this
machine's cores, so remote latencies include the contention of both.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy import ndimage as ndi

TOKEN = "bench-token-" + "x" * 32


def clicks(labels: np.ndarray, ids: list, spacing, per_object: int) -> list:
    out = []
    step = 2 if labels.size > 20_000_000 else 1
    for i in ids:
        small = labels[::step, ::step, ::step] == i
        if not small.any():
            continue
        d = ndi.distance_transform_edt(small, sampling=np.asarray(spacing) * step)
        inside = np.argwhere(d > 0.5 * d.max())
        rng = np.random.default_rng(i)
        pts = [inside[j] * step for j in rng.integers(0, len(inside), size=per_object)]
        out.append([tuple(int(v) for v in p) for p in pts])
    return out


def run_clicks(session, objects: list) -> tuple:
    times, sizes, boxes, overhead = [], [], [], []
    for points in objects:
        session.reset()
        for p in points:
            t = time.perf_counter()
            update = session.add_point(p)
            times.append(time.perf_counter() - t)
            overhead.append(times[-1] - getattr(session, "last_server_s", times[-1]))
            boxes.append(int(np.prod([s.stop - s.start for s in update.changed])))
            sizes.append(sum(getattr(session, "last_bytes", (0, 0))))
    run_clicks.overhead = overhead
    return times, sizes, boxes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-sam", action="store_true")
    args = parser.parse_args()

    from napari_medseg.phantom import make_phantom
    from napari_medseg.prompts.factory import make_session
    from napari_medseg.serve.app import ServeConfig, serve_in_thread
    from napari_medseg.serve.client import RemotePromptSession
    from napari_medseg.serve.wire import default_codec, pack

    shape = (150, 256, 256) if args.quick else (300, 512, 512)
    spacing = (2.0, 1.5, 1.5) if args.quick else (1.0, 0.75, 0.75)
    t = time.perf_counter()
    ph = make_phantom(shape=shape, spacing_zyx=spacing, n_lesions=1)
    volume = ph.ct
    print(f"phantom CT {shape} {volume.array.dtype} ({volume.array.nbytes / 1e6:.0f} MB raw) "
          f"made in {time.perf_counter() - t:.1f} s; codec {default_codec()}")
    ids = [ph.label_ids[n] for n in ("liver", "spleen", "kidney_left", "kidney_right") if n in ph.label_ids]
    objects = clicks(ph.labels, ids, volume.spacing_zyx, 4)

    net_factory = None
    if not args.no_sam:
        import torch

        from napari_medseg.models.sam_med3d import build_sam_med3d
        from napari_medseg.prompts.sam_med3d_session import SamMed3DSession

        def net():
            torch.manual_seed(0)
            return build_sam_med3d()

        def net_factory(backend, device):
            if backend == "sam-med3d":
                return SamMed3DSession(network=net(), device="cpu")
            return make_session(backend)

    handle = serve_in_thread(ServeConfig(tokens=[TOKEN], session_factory=net_factory,
                                         max_upload_bytes=2 << 30))
    try:
        t = time.perf_counter()
        body = pack({}, {"image": volume.array})
        t_pack = time.perf_counter() - t
        print(f"\nupload: {len(body) / 1e6:.1f} MB on the wire for {volume.array.nbytes / 1e6:.0f} MB "
              f"raw ({len(body) / volume.array.nbytes:.2f} x), compressing took {t_pack:.2f} s")
        del body
        remote = RemotePromptSession("region-growing", url=handle.url, token=TOKEN)
        t = time.perf_counter()
        remote.set_volume(volume)
        total = time.perf_counter() - t
        local = make_session("region-growing")
        t = time.perf_counter()
        local.set_volume(volume)
        setup_local = time.perf_counter() - t
        upload = total - setup_local
        print(f"upload + server set-up {total:.2f} s (local set-up {setup_local:.2f} s): upload "
              f"~{upload:.2f} s; ratio to the 2 s target {upload / 2.0:.2f}")

        rows = []
        lt, _, lb = run_clicks(local, objects)
        rt, rs, rb = run_clicks(remote, objects)
        assert lb == rb
        rows.append(("region-growing", lt, rt, rs, rb))
        transport = [("region-growing", run_clicks.overhead)]
        remote.close()

        if not args.no_sam:
            from napari_medseg.serve.split import SplitSamMed3DSession

            sam_local = SamMed3DSession(network=net(), device="cpu")
            sam_local.set_volume(volume)
            sam_remote = RemotePromptSession("sam-med3d", url=handle.url, token=TOKEN)
            sam_remote.set_volume(volume)
            sam_split = SplitSamMed3DSession(network=net(), url=handle.url, token=TOKEN)
            sam_split.set_volume(volume)
            # encode every object's crop first (the one-off cost, excluded from click latency)
            for session in (sam_local, sam_remote, sam_split):
                for points in objects:
                    session.reset()
                    session.add_point(points[0])
            lt, _, lb = run_clicks(sam_local, objects)
            rt, rs, rb = run_clicks(sam_remote, objects)
            transport.append(("sam-med3d (full remote)", run_clicks.overhead))
            st, _, _ = run_clicks(sam_split, objects)
            rows.append(("sam-med3d (full remote)", lt, rt, rs, rb))
            rows.append(("sam-med3d (split)", lt, st, [0] * len(st), rb))
            print(f"split mode fetched {sam_split.fetched} embeddings, "
                  f"{sam_split.embedding_bytes / 1e6:.1f} MB in all")
            sam_remote.close()
            sam_split.close()

        print("\nper click (median of", len(rows[0][1]), "clicks)")
        print(f"{'backend':<26}{'local ms':>10}{'remote ms':>11}{'+ms':>8}{'ratio':>7}"
              f"{'bytes/click':>13}{'box voxels':>12}{'bytes/box':>10}")
        for name, lt, rt, rs, rb in rows:
            lm, rm = 1e3 * statistics.median(lt), 1e3 * statistics.median(rt)
            extra = rm - lm
            bpc, box = statistics.median(rs), statistics.median(rb)
            print(f"{name:<26}{lm:>10.1f}{rm:>11.1f}{extra:>8.1f}{max(extra, 0) / 20:>7.2f}"
                  f"{bpc:>13.0f}{box:>12.0f}{bpc / max(box, 1):>10.4f}")
        print("\ntransport per click (round trip minus the server's own compute: HTTP, JSON,")
        print("compression, pasting the box): the part remote adds on equal hardware")
        for name, values in transport:
            ms = 1e3 * statistics.median(values)
            print(f"{name:<26}{ms:>8.1f} ms  ratio to 20 ms {ms / 20:.2f}")
        print(f"\n(a bit-packed mask of the whole volume would be {volume.array.size / 8 / 1e6:.1f} MB)")
    finally:
        handle.stop()


if __name__ == "__main__":
    main()
