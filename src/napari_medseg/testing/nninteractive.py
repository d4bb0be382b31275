"""Small random-weight nnInteractive model folders and a loopback server, for tests and benchmarks.

:func:`run_nninteractive_server` starts the nnInteractive package's own server
(``nninteractive-server``, i.e. ``python -m nnInteractive.inference.server.main``) on a
free loopback port, serving such a folder on the CPU, for the remote backend's tests.

:func:`make_random_nninteractive_folder` writes what nnInteractive's
``nnInteractiveInferenceSession.initialize_from_trained_model_folder`` reads, in the
layout of the published nnInteractive v1.0 weights:

* ``plans.json`` and ``dataset.json`` (nnU-Net v2 format; one image channel);
* ``inference_session_class.json`` (the legacy session metadata: point radius, scribble
  thickness, interaction decay, image padding mode; without ``inference_info.json`` the
  package uses its legacy capability: 2D boxes, points, scribbles, lasso, initial label,
  7 interaction channels);
* ``fold_0/checkpoint_final.pth`` with ``network_weights``, ``trainer_name`` and
  ``init_args["configuration"]``, saved the way nnU-Net's trainer saves a checkpoint.

The network takes 1 image + 7 interaction channels and gives 2 classes, as nnInteractive
rebuilds it (``nnInteractiveTrainer_stub.build_network_architecture``). The weights are
random, but the output layer is tied to the positive and negative point channels so that
clicks visibly change the mask (a parity test that compares two empty masks proves
nothing). It is small (a 3-stage U-Net of 4-16 features on 64^3 patches) so a CPU click takes well under a
second.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

__all__ = ["make_random_nninteractive_folder", "INTERACTION_CHANNELS", "NnInteractiveServer",
           "run_nninteractive_server"]

#: nnInteractive v1.0's interaction channels (legacy capability): previous segmentation,
#: box/lasso +/-, point +/-, scribble +/-.
INTERACTION_CHANNELS = 7

#: The trainer class the package rebuilds the network with. A name it does not ship makes it
#: search nnunetv2's trainers, which imports timm (a dependency of the published weights'
#: environment, not of this one) before falling back to this same stub; naming the stub
#: builds the identical network without that detour.
TRAINER = "nnInteractiveTrainer_stub"


def make_random_nninteractive_folder(
    out_dir: Union[str, Path],
    *,
    patch_size: Sequence[int] = (64, 64, 64),
    base_features: int = 4,
    max_features: int = 16,
    n_stages: int = 3,
    point_radius: int = 2,
    seed: int = 0,
) -> Path:
    """Write a complete random-weight nnInteractive model folder.

    Parameters
    ----------
    out_dir : str or Path
        Parent folder; the model goes to ``out_dir/nnInteractive_random``.
    patch_size : sequence of int
        The network's patch size (nnInteractive feeds every prediction at this size).
        Keep it above 48: the package plans refinement boxes with a fixed 24-voxel margin
        per side, and a smaller patch leaves its box sampler nothing to cover (it fails).
    base_features, max_features, n_stages : int
        Network size.
    point_radius : int
        Radius (voxels) of a click in the point channels.
    seed : int
        Seeds the weights.

    Returns
    -------
    Path
        The model folder (give it to ``initialize_from_trained_model_folder`` or to
        :class:`napari_medseg.prompts.nninteractive_session.NnInteractiveSession`).
    """
    import torch

    from ..models.nnunet.network import build_network
    from .nnunet import make_random_model_folder

    configuration = "3d_fullres_ps192_bs24"  # the published checkpoint's configuration name
    base = make_random_model_folder(
        out_dir, n_classes=2, patch_size=patch_size, spacing=(1.0, 1.0, 1.0),
        base_features=base_features, max_features=max_features, n_stages=n_stages,
        folds=(), configuration=configuration, trainer=TRAINER, plans_name="nnUNetResEncUNetLPlans",
        dataset_name="Dataset225_RandomInteractive", normalization="ZScoreNormalization",
        label_names={"background": 0, "foreground": 1}, seed=seed,
    )
    folder = Path(out_dir) / "nnInteractive_random"
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    base.rename(folder)
    plans = json.loads((folder / "plans.json").read_text())
    arch = plans["configurations"][configuration]["architecture"]
    (folder / "inference_session_class.json").write_text(json.dumps({
        "inference_class": "nnInteractiveInferenceSession",
        "point_radius": int(point_radius),
        "preferred_scribble_thickness": [2, 2, 2],
        "interaction_decay": 0.9,
        "pad_mode_image": "constant",
    }, indent=2))
    (folder / "LICENSE").write_text("CC0 1.0 (random test weights)\n")

    torch.manual_seed(seed)
    n_in = 1 + INTERACTION_CHANNELS
    net = build_network(arch, n_in, 2)
    _tie_to_interactions(net, seed, patch_size)
    checkpoint = {
        "network_weights": net.state_dict(),
        "optimizer_state": None,
        "grad_scaler_state": None,
        "logging": {},
        "_best_ema": 0.0,
        "current_epoch": 1000,
        "init_args": {
            "plans": plans,
            "configuration": configuration,
            "fold": 0,
            "dataset_json": json.loads((folder / "dataset.json").read_text()),
        },
        "trainer_name": TRAINER,
        "inference_allowed_mirroring_axes": (0, 1, 2),
    }
    (folder / "fold_0").mkdir(exist_ok=True)
    torch.save(checkpoint, folder / "fold_0" / "checkpoint_final.pth")
    return folder


def _tie_to_interactions(net, seed: int, patch_size: Sequence[int]) -> None:
    """Make clicks matter: the output follows the interaction channels and the image.

    Channel order after the image: 0 previous segmentation, 1/2 box +/-, 3/4 point +/-,
    5/6 scribble +/-. Norm layers get unit-ish scales; the output layer is aimed along the
    mean feature difference between a calibration input carrying positive prompts and one
    carrying negative prompts, and centred between them, so foreground appears around
    positive clicks (and the previous mask) and recedes at negative ones, with the image's
    random texture shaping the boundary.
    """
    import numpy as np
    import torch
    from scipy.ndimage import gaussian_filter

    gen = torch.Generator().manual_seed(seed + 17)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (torch.nn.InstanceNorm3d, torch.nn.BatchNorm3d)) and module.affine:
                module.weight.copy_(1.0 + 0.1 * torch.randn(module.weight.shape, generator=gen))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
        rng = np.random.default_rng(seed + 29)
        shape = tuple(int(p) for p in patch_size)
        image = gaussian_filter(rng.normal(size=shape), 1.5)
        image = (image - image.mean()) / (image.std() + 1e-8)
        zz, yy, xx = np.meshgrid(*[np.arange(s) - s / 2 for s in shape], indexing="ij")
        blob = (np.sqrt(zz**2 + yy**2 + xx**2) < min(shape) / 4).astype(np.float32)
        x = np.zeros((2, 1 + INTERACTION_CHANNELS, *shape), np.float32)
        x[:, 0] = image
        x[0, 1 + 0] = blob  # previous segmentation
        x[0, 1 + 3] = blob  # positive point
        x[1, 1 + 4] = blob  # negative point
        net.eval()
        feats = net.forward_features(torch.from_numpy(x))  # (2, C, *shape)
        inside = blob.astype(bool)
        f_pos = feats[0][:, torch.from_numpy(inside)].mean(1)
        f_neg = feats[1][:, torch.from_numpy(inside)].mean(1)
        d = f_pos - f_neg
        d = d / d.norm().clamp_min(1e-6) * 4.0
        seg = net.decoder.seg_layers[-1]
        w = torch.stack([-d, d]) / 2
        seg.weight.copy_(w.reshape(seg.weight.shape))
        seg.bias.copy_(-(w @ ((f_pos + f_neg) / 2)))


@dataclass
class NnInteractiveServer:
    """A running ``nninteractive-server`` (see :func:`run_nninteractive_server`)."""

    url: str
    log_path: Path
    process: object  # subprocess.Popen

    def log(self) -> str:
        """Everything the server printed so far (its uvicorn access log included)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def requests(self, path: str) -> int:
        """How many requests for ``path`` (e.g. ``"/set_image"``) the server answered."""
        return self.log().count(f'"POST {path} HTTP') + self.log().count(f'"GET {path} HTTP')


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def run_nninteractive_server(
    model_folder: Union[str, Path],
    log_dir: Union[str, Path],
    *,
    api_key: Optional[str] = None,
    torch_threads: Optional[int] = None,
    extra_args: Sequence[str] = (),
    start_timeout: float = 180.0,
) -> Iterator[NnInteractiveServer]:
    """Run the real ``nninteractive-server`` on 127.0.0.1 (CPU) for the ``with`` block.

    Parameters
    ----------
    model_folder : str or Path
        An nnInteractive model folder (e.g. :func:`make_random_nninteractive_folder`).
    log_dir : str or Path
        Where the server's output goes (``nninteractive-server.log``).
    api_key : str, optional
        Start it with ``--api-key`` (clients must send it).
    torch_threads : int, optional
        Its ``--torch-n-threads`` (default: the CPU count, as the local backend uses).
    extra_args : sequence of str
        More ``nninteractive-server`` options.
    start_timeout : float
        Seconds to wait for ``/healthz``.

    Yields
    ------
    NnInteractiveServer
        Its URL, log and process; the server is stopped when the block ends.
    """
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    port = _free_port()
    log_path = Path(log_dir) / "nninteractive-server.log"
    cmd = [sys.executable, "-m", "nnInteractive.inference.server.main", "--model-dir", str(model_folder),
           "--fold", "0", "--device", "cpu", "--host", "127.0.0.1", "--port", str(port),
           "--torch-n-threads", str(torch_threads or os.cpu_count() or 1), "--no-torch-compile",
           *extra_args]
    if api_key:
        cmd += ["--api-key", api_key]
    env = {k: v for k, v in os.environ.items() if k != "NN_INTERACTIVE_API_KEY"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = NnInteractiveServer(f"http://127.0.0.1:{port}", log_path, process)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"nninteractive-server exited ({process.returncode}) before answering:\n"
                                   f"{server.log()[-3000:]}")
            try:
                with urllib.request.urlopen(server.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"nninteractive-server did not answer within {start_timeout:g} s:\n"
                                   f"{server.log()[-3000:]}")
            time.sleep(0.3)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
