"""nnInteractive (Isensee, Rokuss et al., 2025) behind the common prompt-session API.

Optional: it needs the ``nninteractive`` package (``pip install nninteractive``, which
brings its own nnU-Net and PyTorch requirements; a CUDA GPU is strongly recommended)
and its weights (``medseg weights download nninteractive``; CC-BY-NC-SA 4.0, i.e.
non-commercial). Neither is a dependency of napari-medseg.

Wiring: the image is given unprocessed (nnInteractive normalises it itself, as its
README insists), points are voxel indices in the array's (z, y, x) order, negative
clicks are ``include_interaction=False``. nnInteractive accumulates interactions
internally, so a new click is sent as one more interaction, while undo, reset or a
changed box replay the whole prompt list from a reset state. Its pre-trained models
accept 2D boxes only: a 3D box is sent as the 2D box on its middle axial slice. Before
the third-party loader touches the checkpoint, it is opened with our safe loader
(``weights_only``), so a checkpoint carrying a pickle payload is refused first.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .._ndimage import bbox, union_box
from ..errors import MedsegError
from ..io.volume import Volume
from ..progress import CancelLike, ProgressCallback, check_cancel, report
from .base import Prediction, PromptSession, Prompts

INSTALL_HINT = (
    "the nnInteractive backend needs the optional 'nninteractive' package and its weights: "
    "run `pip install nninteractive` (it needs a matching PyTorch; a CUDA GPU is recommended) "
    "and download the weights with `medseg weights download nninteractive` (CC-BY-NC-SA 4.0, "
    "non-commercial use only)"
)


def package_available() -> bool:
    """True when the ``nnInteractive`` package can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("nnInteractive") is not None
    except (ImportError, ValueError):
        return False


def nninteractive_available(model_name: str = "nninteractive") -> bool:
    """True when both the package and the weights are installed."""
    if not package_available():
        return False
    from ..models.weights import installed

    return installed(model_name)


def _default_factory(device) -> Any:
    """nnInteractive's own inference session (imported only here)."""
    import os

    from nnInteractive.inference.inference_session import nnInteractiveInferenceSession  # type: ignore

    return nnInteractiveInferenceSession(
        device=device,
        use_torch_compile=False,
        verbose=False,
        torch_n_threads=os.cpu_count() or 1,
        do_autozoom=True,
        use_pinned_memory=getattr(device, "type", str(device)) == "cuda",
    )


class NnInteractiveSession(PromptSession):
    """Interactive segmentation with nnInteractive.

    Parameters
    ----------
    weights
        The nnInteractive model folder (holding ``plans.json`` and ``fold_0/``) or None
        for the installed weights.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``.
    backend_factory
        ``callable(torch.device) -> session`` with nnInteractive's session API; for
        tests. When given, neither the package nor the weights are required.

    Raises
    ------
    MedsegError
        The ``nninteractive`` package is not installed (says what to run).
    WeightsNotFoundError
        The weights are not installed (says what to run).
    """

    name = "nninteractive"

    def __init__(
        self,
        weights: Any = None,
        device: str = "auto",
        *,
        model_name: str = "nninteractive",
        backend_factory: Optional[Callable[[Any], Any]] = None,
    ) -> None:
        super().__init__()
        self._device_pref = device
        self._factory = backend_factory
        self._folder: Optional[Path] = None
        if backend_factory is None:
            if not package_available():
                raise MedsegError(INSTALL_HINT)
            from ..errors import WeightsNotFoundError
            from ..models.weights import resolve_weights

            try:
                self._folder = resolve_weights(model_name, weights)
            except WeightsNotFoundError as exc:
                raise WeightsNotFoundError(f"{exc} ({INSTALL_HINT})") from None
        self._backend = None
        self._applied: tuple = ((), (), None, None)  # points, labels, box, initial mask id
        self.message = ""

    # ------------------------------------------------------------------ set-up
    def _make_backend(self):
        from ..inference.device import choose_device

        device = choose_device(self._device_pref)
        if self._factory is not None:
            return self._factory(device)
        if self._folder is not None:
            ckpt = Path(self._folder) / "fold_0" / "checkpoint_final.pth"
            if ckpt.is_file():
                from ..models.safe_load import load_checkpoint

                load_checkpoint(ckpt)  # refuses pickle payloads before nnInteractive's loader runs
        backend = _default_factory(device)
        backend.initialize_from_trained_model_folder(str(self._folder))
        return backend

    def _prepare(self, volume: Volume, progress: Optional[ProgressCallback], cancel: Optional[CancelLike]) -> None:
        import torch

        report(progress, 0.0, "starting nnInteractive")
        if self._backend is None:
            self._backend = self._make_backend()
        check_cancel(cancel)
        report(progress, 0.5, "sending the image")
        self._backend.set_image(np.asarray(volume.array)[None])
        self._buffer = torch.zeros(volume.shape, dtype=torch.uint8)
        self._backend.set_target_buffer(self._buffer)
        self._applied = ((), (), None, None)
        report(progress, 1.0, "ready")

    # ------------------------------------------------------------------ interactions
    @staticmethod
    def _bbox_2d(box: tuple) -> list:
        (z0, y0, x0), (z1, y1, x1) = box
        zm = int(round((z0 + z1) / 2.0))
        return [[zm, zm + 1], [int(y0), int(y1) + 1], [int(x0), int(x1) + 1]]

    def _send(self, prompts: Prompts, start: int) -> None:
        b = self._backend
        for p, positive in list(zip(prompts.points, prompts.labels))[start:]:
            b.add_point_interaction(tuple(int(round(c)) for c in p), include_interaction=bool(positive))

    def _replay(self, prompts: Prompts) -> None:
        b = self._backend
        b.reset_interactions()
        if prompts.initial_mask is not None and hasattr(b, "add_initial_seg_interaction"):
            b.add_initial_seg_interaction(prompts.initial_mask.astype(np.uint8), run_prediction=False)
        if prompts.box is not None:
            b.add_bbox_interaction(self._bbox_2d(prompts.box), include_interaction=True)
        self._send(prompts, 0)

    def _predict(self, prompts: Prompts, previous_state: Any) -> Prediction:
        pts, labs, box, init = self._applied
        mask_id = None if prompts.initial_mask is None else id(prompts.initial_mask)
        n = len(pts)
        incremental = (
            n > 0
            and tuple(prompts.points[:n]) == pts
            and tuple(prompts.labels[:n]) == labs
            and prompts.box == box
            and mask_id == init
            and len(prompts.points) == n + 1
        )
        if incremental:
            self._send(prompts, n)
        else:
            self._replay(prompts)
        self._applied = (tuple(prompts.points), tuple(prompts.labels), prompts.box, mask_id)
        result = self._backend.target_buffer
        result = result.cpu().numpy() if hasattr(result, "cpu") else np.asarray(result)
        new = result.astype(bool)
        region = union_box(bbox(new), getattr(self, "_mask_box", None))
        if region is None:
            return Prediction(np.zeros((0, 0, 0), bool), (slice(0, 0),) * 3, None)
        return Prediction(new[region].copy(), region, None)

    def reset(self) -> None:
        super().reset()
        if self._backend is not None:
            self._backend.reset_interactions()
        self._applied = ((), (), None, None)
