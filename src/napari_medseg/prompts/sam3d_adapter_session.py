"""3DSAM-adapter as a prompt session (point prompts, one tumour at a time).

Recipe of the published ``test.py`` / datasets code, with the crop placed by the clicks:

1. **Resample** the volume once to 1 mm isotropic (trilinear, cached).
2. **Window** the intensities to the model's training range (e.g. KiTS: -54..247 HU)
   and scale them to [0, 1] (MONAI ``ScaleIntensityRange`` with clipping).
3. **Crop** 128^3 voxels centred on the middle of the positive clicks' bounding box
   (zero padding outside the volume); the crop is kept while later clicks fall inside
   it with a 16-voxel margin, otherwise the crop is re-centred and re-encoded.
4. **Encode** the crop (4x upsampled to 512^3 slices through SAM's ViT-B: heavy, a GPU
   is strongly recommended) once per crop; the prompt-independent part of the head is
   cached too.
5. **Decode** every click: the positive points (crop voxels, in the reference's
   (d, w, h) order) refine the deepest feature map; the head gives a 128^3 foreground
   probability, thresholded at 0.5 and mapped back to the original grid by nearest
   neighbour, only where the object is.

The model has no negative prompt. A negative click removes the connected part of the
mask it falls in (so a wrong blob can be deleted) and is otherwise ignored; boxes add a
positive click at their centre and clip the mask to the box.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .._ndimage import components_at
from ..io.volume import Volume
from ..progress import CancelLike, ProgressCallback, check_cancel, report
from ._torch_session import CroppedTorchSession, padded_crop
from .base import Prediction, Prompts

TARGET_SPACING_MM = 1.0
#: clicks closer than this to the crop face trigger a re-crop (voxels at 1 mm)
MARGIN = 16


def _dataset_of(model_name: str) -> str:
    for key in ("kits", "lits", "pancreas", "colon"):
        if key in model_name:
            return key
    return "kits"


def _load_network(checkpoint, device):
    from ..models.sam3d_adapter import load_sam3d_adapter  # torch: imported on first use only

    return load_sam3d_adapter(checkpoint, device=device)


class Sam3DAdapterSession(CroppedTorchSession):
    """Interactive 3DSAM-adapter segmentation.

    Parameters
    ----------
    weights
        ``best.pth.tar`` of one of the published models, or None for the installed
        weights of ``model_name``.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``.
    model_name
        ``"3dsam-adapter-kits"`` (default), ``-lits``, ``-pancreas`` or ``-colon``: also
        selects the intensity window the model was trained with.
    network
        A built :class:`~napari_medseg.models.sam3d_adapter.Sam3DAdapter` (tests).
    intensity_range
        Override of the (low, high) window scaled to [0, 1].
    """

    name = "3dsam-adapter"
    target_spacing_mm = TARGET_SPACING_MM

    def __init__(
        self,
        weights: Any = None,
        device: str = "auto",
        *,
        model_name: str = "3dsam-adapter-kits",
        network: Any = None,
        intensity_range: Optional[Sequence[float]] = None,
    ) -> None:
        from ..models.sam3d_adapter.model import INTENSITY_RANGES

        super().__init__(weights, device, model_name, network, _load_network)
        self._range = tuple(intensity_range) if intensity_range is not None else INTENSITY_RANGES[_dataset_of(model_name)]
        self._cache_key = None
        self._cache = None

    @property
    def crop_size(self) -> int:
        return int(self._model().config.crop_size)

    def _prepare(self, volume: Volume, progress: Optional[ProgressCallback], cancel: Optional[CancelLike]) -> None:
        report(progress, 0.0, "loading 3DSAM-adapter")
        self._model()
        check_cancel(cancel)
        report(progress, 0.3, "resampling to 1 mm")
        res = self._resample(volume, "3DSAM-adapter")
        lo, hi = self._range
        self._resampled = ((res.clamp(lo, hi) - lo) / (hi - lo)).contiguous()
        self._cache_key = self._cache = None
        report(progress, 1.0, "ready")

    # ------------------------------------------------------------------ helpers
    def _crop(self, start: tuple):
        return padded_crop(self._resampled, start, self.crop_size)

    def _encoded(self, start: tuple):
        if self._cache_key != start:
            # the encoder's blocks through the CPU runtime (compiled once per crop size)
            self._cache = self._model().encode(
                self._crop(start).to(self.device),
                run_blocks=lambda module, x: self._run_network(module, x, "3DSAM-adapter encoder"))
            self._cache_key = start
        return self._cache

    # ------------------------------------------------------------------ prediction
    def _predict(self, prompts: Prompts, previous_state: Any) -> Prediction:
        import torch

        points = list(prompts.points)
        labels = list(prompts.labels)
        if prompts.box is not None:
            points.insert(0, tuple((a + b) / 2.0 for a, b in zip(*prompts.box)))
            labels.insert(0, True)
        positives = [self._to_res(p) for p, lab in zip(points, labels) if lab]
        if not positives:
            self.message = "3DSAM-adapter needs a positive click inside the object"
            return Prediction(np.zeros((0, 0, 0), bool), (slice(0, 0),) * 3, None)
        n = self.crop_size
        start = (previous_state or {}).get("start")
        margin = min(MARGIN, n // 8)
        fits = start is not None and all(
            margin <= c - s < n - margin for p in positives for c, s in zip(p, start)
        )
        if not fits:
            pts = np.array(positives)
            centre = (pts.max(axis=0) + pts.min(axis=0)) / 2.0
            start = self._crop_start(centre, n)
        inside = [p for p in positives if all(0 <= c - s < n for c, s in zip(p, start))]
        # reference order of the coordinates: (d, w, h) = (z, x, y) of our z, y, x crop
        dwh = [[p[0] - start[0], p[2] - start[2], p[1] - start[1]] for p in inside]
        cache = self._encoded(start)
        prob = self._model().decode(cache, torch.tensor([dwh], dtype=torch.float32, device=self.device))
        crop_mask = (prob > 0.5).cpu().numpy()

        bounds, mask = self._map_back_nearest(start, crop_mask)
        if mask is not None:
            mask = self._apply_negatives(bounds, mask, [p for p, lab in zip(points, labels) if not lab])
            if prompts.box is not None:
                bounds, mask = self._clip_to_box(bounds, mask, prompts.box)
        crop_bounds = self._crop_bounds(start, n)
        self.message = ""
        return self._merge(bounds, mask, crop_bounds, {"start": start})

    @staticmethod
    def _apply_negatives(bounds: tuple, mask: np.ndarray, negatives: list) -> np.ndarray:
        """``mask`` without the connected parts that hold a negative click."""
        if not negatives:
            return mask
        seeds = [tuple(int(round(c)) - b[0] for c, b in zip(p, bounds)) for p in negatives]
        return mask & ~components_at(mask, seeds)
