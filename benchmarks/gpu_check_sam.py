"""GPU check of the SAM backends (for the lead to run on a CUDA machine).

Prints PASS/FAIL lines:

1. SAM-Med3D parity with the shared reference (``../shared/fixtures/
   sam_med3d_reference.npz``, deterministic weights) on CUDA in float32. Tolerance:
   5e-3 absolute with TF32 matmuls allowed (PyTorch's default for cuDNN convolutions;
   TF32 keeps 10 mantissa bits, so ~1e-3 relative errors are expected through the
   12-block ViT), and 1e-4 with TF32 disabled (strict float32).
2. Timings on CUDA: encoding a 128^3 crop, one click (decoder), and a session click
   (decoder + map back + paste) on a synthetic 512 x 512 x 300 CT.
3. 3DSAM-adapter: a full-size forward (random weights) on CUDA: encoding time and
   per-click time, and that the probability map is finite with the crop's shape.

Run: ``python benchmarks/gpu_check_sam.py`` (exits 1 if a check fails, 0 otherwise;
without CUDA it says so and exits 0).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
FIXTURES = REPO.parent / "shared" / "fixtures"


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def check_parity(device, tf32: bool) -> bool:
    import torch

    from napari_medseg.models.sam_med3d import build_sam_med3d
    from napari_medseg.testing.sam_med3d import deterministic_state_dict, fixture_input

    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    shapes = json.loads((FIXTURES / "sam_med3d_state_dict.json").read_text())["state_dict_shapes"]
    ref = dict(np.load(FIXTURES / "sam_med3d_reference.npz"))
    net = build_sam_med3d()
    net.load_state_dict(deterministic_state_dict(shapes))
    net = net.to(device)
    emb = net.encode(fixture_input().to(device))
    l1, i1 = net.decode(emb, torch.from_numpy(ref["points_click1"]).to(device),
                        torch.from_numpy(ref["labels_click1"]).to(device), None)
    l2, i2 = net.decode(emb, torch.from_numpy(ref["points_click2"]).to(device),
                        torch.from_numpy(ref["labels_click2"]).to(device), l1)
    got = {"image_embedding": emb, "low_res_logits_click1": l1, "iou_click1": i1,
           "low_res_logits_click2": l2, "iou_click2": i2}
    tol = 5e-3 if tf32 else 1e-4
    ok = True
    for k, v in got.items():
        err = float(np.abs(v.float().cpu().numpy() - ref[k]).max())
        good = err <= tol
        ok &= good
        print(f"{'PASS' if good else 'FAIL'} parity tf32={tf32} {k}: max abs error {err:.2e} (tolerance {tol:.0e})")
    return ok


def time_sam_med3d(device) -> bool:
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_sam import synthetic_ct

    from napari_medseg.models.sam_med3d import build_sam_med3d
    from napari_medseg.prompts.sam_med3d_session import SamMed3DSession

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    net = build_sam_med3d().to(device)
    x = torch.randn(1, 1, 128, 128, 128, device=device)
    net.encode(x)
    _sync()
    t = time.perf_counter()
    for _ in range(3):
        emb = net.encode(x)
    _sync()
    t_enc = (time.perf_counter() - t) / 3
    c = torch.tensor([[[64.0, 64.0, 64.0]]], device=device)
    lab = torch.tensor([[1]], device=device)
    net.decode(emb, c, lab, None)
    _sync()
    t = time.perf_counter()
    for _ in range(10):
        net.decode(emb, c, lab, None)
    _sync()
    t_dec = (time.perf_counter() - t) / 10
    vol, centre = synthetic_ct()
    s = SamMed3DSession(network=net, device="cuda")
    s.set_volume(vol)
    s.add_point(centre)
    times, backend = [], []
    orig = s._predict

    def timed(prompts, state):
        t0 = time.perf_counter()
        out = orig(prompts, state)
        backend.append(time.perf_counter() - t0)
        return out

    s._predict = timed
    for i in range(5):
        t = time.perf_counter()
        s.add_point((centre[0], centre[1] + i, centre[2] + 2), positive=(i % 2 == 0))
        times.append(time.perf_counter() - t)
    click = float(np.median(times)) * 1000
    model_part = float(np.median(backend)) * 1000
    print(f"INFO SAM-Med3D CUDA: encode 128^3 {t_enc * 1000:.1f} ms, decoder {t_dec * 1000:.1f} ms, "
          f"session click on 512x512x300: backend {model_part:.1f} ms, whole add_point {click:.1f} ms "
          "(the rest is the base session's full-grid bookkeeping, on the CPU)")
    ok = model_part <= 50.0
    print(f"{'PASS' if ok else 'FAIL'} SAM-Med3D click (decoder + map back) <= 50 ms on CUDA ({model_part:.1f} ms)")
    return ok


def check_adapter(device) -> bool:
    import torch

    from napari_medseg.models.sam3d_adapter import Sam3DAdapter

    torch.manual_seed(0)
    model = Sam3DAdapter().to(device).eval()
    crop = torch.rand(128, 128, 128, device=device)
    pts = torch.tensor([[[64.0, 60.0, 70.0]]], device=device)
    _sync()
    t = time.perf_counter()
    cache = model.encode(crop)
    _sync()
    t_enc = time.perf_counter() - t
    model.decode(cache, pts)
    _sync()
    t = time.perf_counter()
    prob = model.decode(cache, pts)
    _sync()
    t_dec = time.perf_counter() - t
    ok = tuple(prob.shape) == (128, 128, 128) and bool(torch.isfinite(prob).all())
    print(f"INFO 3DSAM-adapter CUDA: encode {t_enc:.2f} s, click {t_dec * 1000:.1f} ms, "
          f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    print(f"{'PASS' if ok else 'FAIL'} 3DSAM-adapter full-size forward on CUDA")
    return ok


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("SKIP no CUDA device: nothing to check here")
        return 0
    device = torch.device("cuda")
    print(f"INFO device {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    ok = True
    if (FIXTURES / "sam_med3d_reference.npz").is_file():
        ok &= check_parity(device, tf32=False)
        ok &= check_parity(device, tf32=True)
    else:
        print(f"FAIL fixtures not found in {FIXTURES}")
        ok = False
    ok &= time_sam_med3d(device)
    ok &= check_adapter(device)
    print("ALL PASS" if ok else "SOME FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
