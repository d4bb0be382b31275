"""nnInteractive (Isensee, Rokuss et al., 2025) behind the common prompt-session API.

Optional: it needs the ``nninteractive`` package (``pip install nninteractive``, which
brings its own nnU-Net and PyTorch requirements; a CUDA GPU is strongly recommended)
and its weights (``medseg weights download nninteractive``; CC-BY-NC-SA 4.0, i.e.
non-commercial). Neither is a dependency of napari-medseg.

Wiring: the image is given unprocessed (nnInteractive normalises it itself, as its
README insists), points are voxel indices in the array's (z, y, x) order, negative
clicks are ``include_interaction=False``. nnInteractive accumulates interactions
internally and each prediction starts from the mask the previous one left, so the
session keeps the ordered log of interactions the package holds: a new click or box is
sent as one more interaction; one level of undo uses the package's own ``undo``; deeper
undo replays the log in its original order from a reset state (so the result equals the
package called with the same interactions); an initial mask restarts the interactions,
as the package's ``add_initial_seg_interaction`` does; a new box replaces the previous
one. Its pre-trained models accept 2D boxes only: a 3D box is sent as the 2D box on its
middle axial slice. Spacing: nnInteractive works in voxels and ignores it; the volume is
sent on its acquired grid, unresampled, and :attr:`NnInteractiveSession.message` says so
when the voxels are more than 3:1 anisotropic. The package prints progress on stdout;
the session sends that to stderr. Before
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
from .base import Prediction, PromptSession, Prompts, Update

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

    with _quiet():
        return nnInteractiveInferenceSession(
            device=device,
            use_torch_compile=False,
            verbose=False,
            torch_n_threads=os.cpu_count() or 1,
            do_autozoom=True,
        )


def _quiet():
    """nnInteractive prints progress on stdout; keep stdout clean (``medseg prompt --json``)."""
    import contextlib
    import sys

    return contextlib.redirect_stdout(sys.stderr)


def _same(a: tuple, b: tuple) -> bool:
    """Equal interaction logs (an initial mask compares by identity, not by value)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x[0] != y[0]:
            return False
        if x[0] == "init":
            if x[1] is not y[1]:
                return False
        elif x != y:
            return False
    return True


#: anisotropy (largest / smallest voxel side) above which the session says what happens
ANISOTROPY_NOTE = 3.0


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
        # The interactions the backend holds, in the order it received them: ("point",
        # (z, y, x), positive), ("box", 2D box) or ("init", mask). The session's state
        # (kept per undo level by the base class) is (log, points sent, box sent).
        self._applied: tuple = ()
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
        with _quiet():
            backend.initialize_from_trained_model_folder(str(self._folder))
        return backend

    def _new_buffer(self, shape: tuple):
        """The target buffer the backend writes its mask into (the caller owns it)."""
        import torch

        return torch.zeros(shape, dtype=torch.uint8)

    def _prepare(self, volume: Volume, progress: Optional[ProgressCallback], cancel: Optional[CancelLike]) -> None:
        report(progress, 0.0, "starting nnInteractive")
        if self._backend is None:
            self._backend = self._make_backend()
        check_cancel(cancel)
        report(progress, 0.5, "sending the image")
        # the acquired grid, unresampled: nnInteractive works in voxels and was trained on
        # scans of every spacing; resampling would blur thin slices' edges and move clicks
        # off the voxels the user saw
        self._buffer = self._new_buffer(volume.shape)
        self._call(lambda b: self._upload(b, volume))
        self._applied = ()
        sz = volume.spacing_zyx
        ratio = max(sz) / min(sz)
        self.message = "" if ratio <= ANISOTROPY_NOTE else (
            f"nnInteractive ignores voxel spacing: this volume's voxels are "
            f"{' x '.join(f'{v:g}' for v in sz)} mm (z, y, x; {ratio:.1f}:1), segmented on that grid "
            "as acquired; expect coarser boundaries across the thick axis"
        )
        report(progress, 1.0, "ready")

    def _upload(self, backend, volume: Volume) -> None:
        """Give ``backend`` the image and the (zeroed) target buffer."""
        backend.set_image(np.asarray(volume.array)[None])
        self._buffer[...] = 0
        backend.set_target_buffer(self._buffer)

    # ------------------------------------------------------------------ interactions
    @staticmethod
    def _bbox_2d(box: tuple) -> list:
        (z0, y0, x0), (z1, y1, x1) = box
        zm = int(round((z0 + z1) / 2.0))
        return [[zm, zm + 1], [int(y0), int(y1) + 1], [int(x0), int(x1) + 1]]

    def _call(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(backend)``, with the package's stdout kept off ours (a remote session also
        reconnects here when its server dropped it)."""
        with _quiet():
            return fn(self._backend)

    def _send(self, event: tuple) -> Optional[list]:
        """Give one interaction to the backend; returns the box it changed (if it says)."""
        return self._call(lambda b: self._send_to(b, event))

    @staticmethod
    def _send_to(b, event: tuple) -> Optional[list]:
        if event[0] == "point":
            return b.add_point_interaction(event[1], include_interaction=event[2])
        if event[0] == "box":
            return b.add_bbox_interaction(event[1], include_interaction=True)
        b.add_initial_seg_interaction(event[1].astype(np.uint8), run_prediction=False)
        return None

    def _replay(self, log: tuple) -> None:
        """Bring the backend to ``log`` from a reset state, in the original order (each
        interaction predicts from the mask the previous one left, as it did the first time)."""
        self._call(lambda b: b.reset_interactions())
        for event in log:
            self._send(event)

    def _predict(self, prompts: Prompts, previous_state: Any) -> Prediction:
        log, n_points, box = previous_state if previous_state is not None else ((), 0, None)
        new = [("point", tuple(int(round(c)) for c in p), bool(lab))
               for p, lab in zip(prompts.points[n_points:], prompts.labels[n_points:])]
        if prompts.box != box and prompts.box is not None:
            # a box replaces the previous one: the old box leaves the log (a replay)
            log = tuple(e for e in log if e[0] != "box")
            new.append(("box", self._bbox_2d(prompts.box)))
        target = tuple(log) + tuple(new)
        changed = None
        if new and _same(self._applied, tuple(log)):
            for event in new:  # incremental: the backend already holds the rest
                changed = union_box(changed, _slices(self._send(event)))
        else:
            self._replay(target)
            changed = None
        self._applied = target
        result = self._backend.target_buffer
        result = result.cpu().numpy() if hasattr(result, "cpu") else np.asarray(result)
        if changed is None:
            changed = bbox(result)  # a replay: anything may have changed
        region = union_box(changed, getattr(self, "_mask_box", None))
        state = (target, len(prompts.points), prompts.box)
        if region is None:
            return Prediction(np.zeros((0, 0, 0), bool), (slice(0, 0),) * 3, state)
        return Prediction(result[region].astype(bool), region, state)

    def set_initial_mask(self, mask: np.ndarray) -> Update:
        """Start from an existing segmentation (nnInteractive's initial-label interaction;
        like the package, it starts the object's interactions afresh)."""
        update = super().set_initial_mask(mask)
        if self._backend is not None and hasattr(self._backend, "add_initial_seg_interaction"):
            event = ("init", self._prompts.initial_mask)
            self._send(event)
            self._applied = (event,)
            self._state = ((event,), len(self._prompts.points), self._prompts.box)
        return update

    def undo(self) -> Update:
        """Revert the last interaction: nnInteractive's own undo when the backend is exactly
        one interaction ahead (it keeps one level), otherwise the next interaction replays."""
        applied = self._applied
        update = super().undo()
        restored = self._state[0] if self._state is not None else ()
        b = self._backend
        if (b is not None and len(applied) == len(restored) + 1 and _same(applied[:-1], restored)
                and getattr(b, "supports_undo", False)):
            if self._call(lambda backend: backend.undo()):
                self._applied = restored
        return update

    def reset(self) -> None:
        super().reset()
        if self._backend is not None:
            self._call(lambda b: b.reset_interactions())
        self._applied = ()


def _slices(box: Optional[list]) -> Optional[tuple]:
    """nnInteractive's changed box ``[[lo, hi], ...]`` as slices (None when it gives none)."""
    if box is None:
        return None
    return tuple(slice(int(lo), int(hi)) for lo, hi in box)
