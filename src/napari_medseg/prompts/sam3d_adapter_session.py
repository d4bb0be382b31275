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

import math
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import InvalidInputError
from ..io.volume import Volume
from ..progress import CancelLike, ProgressCallback, check_cancel, report
from ._torch_session import TorchPromptSession
from .base import Prediction, Prompts
from .sam_med3d_session import SamMed3DSession, _bbox, padded_crop, _slices, _union, resample_volume, resampled_shape, to_resampled

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


class Sam3DAdapterSession(TorchPromptSession):
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
        self._resampled = None
        self._res_shape: tuple = ()
        self._cache_key = None
        self._cache = None
        self.message = ""


    @property
    def crop_size(self) -> int:
        return int(self._model().config.crop_size)

    def _prepare(self, volume: Volume, progress: Optional[ProgressCallback], cancel: Optional[CancelLike]) -> None:
        import torch

        report(progress, 0.0, "loading 3DSAM-adapter")
        self._model()
        check_cancel(cancel)
        report(progress, 0.3, "resampling to 1 mm")
        shape = resampled_shape(volume.shape, volume.spacing_zyx, TARGET_SPACING_MM)
        res = resample_volume(volume.array, shape)
        if not bool(torch.isfinite(res).all()):
            raise InvalidInputError("the volume contains NaN or infinite voxels; 3DSAM-adapter cannot segment it")
        lo, hi = self._range
        self._resampled = ((res.clamp(lo, hi) - lo) / (hi - lo)).contiguous()
        self._res_shape = shape
        self._cache_key = self._cache = None
        report(progress, 1.0, "ready")

    # ------------------------------------------------------------------ helpers
    def _to_res(self, zyx: Sequence[float]) -> tuple:
        return tuple(to_resampled(c, n, r) for c, n, r in zip(zyx, self.volume.shape, self._res_shape))

    def _crop(self, start: tuple):
        return padded_crop(self._resampled, start, self.crop_size)

    def _encoded(self, start: tuple):
        if self._cache_key != start:
            self._cache = self._model().encode(self._crop(start).to(self.device))
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
            start = tuple(int(math.floor(c + 0.5)) - n // 2 for c in centre)
        inside = [p for p in positives if all(0 <= c - s < n for c, s in zip(p, start))]
        # reference order of the coordinates: (d, w, h) = (z, x, y) of our z, y, x crop
        dwh = [[p[0] - start[0], p[2] - start[2], p[1] - start[1]] for p in inside]
        cache = self._encoded(start)
        prob = self._model().decode(cache, torch.tensor([dwh], dtype=torch.float32, device=self.device))
        crop_mask = (prob > 0.5).cpu().numpy()

        bounds, mask = self._map_back(start, crop_mask)
        if mask is not None:
            mask = self._apply_negatives(bounds, mask, [p for p, lab in zip(points, labels) if not lab])
            if prompts.box is not None:
                bounds, mask = SamMed3DSession._clip_to_box(bounds, mask, prompts.box)
        crop_bounds = self._crop_bounds(start)
        self.message = ""
        return self._merge(bounds, mask, crop_bounds, {"start": start})

    def _axis_index(self, axis: int, start: int) -> np.ndarray:
        n_orig, n_res = self.volume.shape[axis], self._res_shape[axis]
        res = np.clip(np.floor((np.arange(n_orig) + 0.5) * n_res / n_orig).astype(np.int64), 0, n_res - 1)
        return res - start

    def _crop_bounds(self, start: tuple) -> tuple:
        out = []
        for axis, s in enumerate(start):
            idx = np.flatnonzero((self._axis_index(axis, s) >= 0) & (self._axis_index(axis, s) < self.crop_size))
            out.append((int(idx[0]), int(idx[-1]) + 1) if idx.size else (0, 0))
        return tuple(out)

    def _map_back(self, start: tuple, crop_mask: np.ndarray) -> tuple:
        box = _bbox(crop_mask)
        if box is None:
            return None, None
        idx, bounds = [], []
        for axis, (s, (lo, hi)) in enumerate(zip(start, box)):
            ci = self._axis_index(axis, s)
            hit = np.flatnonzero((ci >= lo) & (ci < hi))
            if not hit.size:
                return None, None
            bounds.append((int(hit[0]), int(hit[-1]) + 1))
            idx.append(ci[hit[0] : hit[-1] + 1])
        mask = crop_mask[np.ix_(*idx)]
        return tuple(bounds), mask

    @staticmethod
    def _apply_negatives(bounds: tuple, mask: np.ndarray, negatives: list) -> np.ndarray:
        if not negatives:
            return mask
        from scipy import ndimage

        lab, _ = ndimage.label(mask)
        for p in negatives:
            local = tuple(int(round(c)) - b[0] for c, b in zip(p, bounds))
            if all(0 <= v < s for v, s in zip(local, mask.shape)) and lab[local]:
                mask = mask & (lab != lab[local])
        return mask

    def _merge(self, new_bounds, new_mask, crop_bounds, state) -> Prediction:
        prev = self._mask
        prev_bounds = SamMed3DSession._previous_bounds(self) if prev is not None else None
        region = _union(prev_bounds, new_bounds)
        if region is None:
            return Prediction(np.zeros((0, 0, 0), bool), (slice(0, 0),) * 3, state)
        if prev_bounds is not None:
            out = prev[_slices(region)].copy()
            inter = [(max(a, c0), min(b, c1)) for (a, b), (c0, c1) in zip(region, crop_bounds)]
            if all(hi > lo for lo, hi in inter):
                out[tuple(slice(lo - r[0], hi - r[0]) for (lo, hi), r in zip(inter, region))] = False
        else:
            out = np.zeros(tuple(b - a for a, b in region), dtype=bool)
        if new_bounds is not None:
            out[tuple(slice(lo - r[0], hi - r[0]) for (lo, hi), r in zip(new_bounds, region))] |= new_mask
        return Prediction(out, _slices(region), state)

    def reset(self) -> None:
        super().reset()
        self.message = ""
