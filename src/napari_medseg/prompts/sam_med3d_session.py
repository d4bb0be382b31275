"""SAM-Med3D as a prompt session: clicks in, a 3D mask on the volume's grid out.

The recipe follows the published SAM-Med3D inference code (``medim_infer.py`` /
``utils/infer_utils.py``), with the crop placed around the user's clicks:

1. **Resample** the whole volume once to 1.5 mm isotropic (trilinear, voxel-centre
   aligned; cached for the session's volume).
2. **Crop** a 128^3 cube (19.2 cm) centred on the first positive click (or the box
   centre), padding with 0 outside the volume, as torchio's ``CropOrPad`` does in the
   reference.
3. **Normalise** the crop by z-scoring with the mean/std of its voxels > 0 (torchio
   ``ZNormalization(masking_method=lambda x: x > 0)``).
4. **Encode** the crop with the ViT (the expensive step, seconds on a CPU); the
   embedding is cached per crop, so later clicks inside the crop only run the decoder.
5. **Decode** every click with all clicks of the object that fall in the crop
   (coordinates mapped into the crop's voxel frame) and the previous click's 32^3
   low-resolution logits as the mask prompt (zeros at the first click; a binary mask,
   as ``medim_infer.py`` does, when starting from an existing segmentation or after a
   re-crop).
6. **Map back**: logits are upsampled trilinearly to 128^3 and thresholded at 0
   (sigmoid > 0.5), then taken back to the original grid by nearest neighbour, only for
   the part of the crop where the object is; the session returns that region.

Objects larger than one crop: when the mask touches a crop face that is inside the
volume, :attr:`SamMed3DSession.message` says so. A positive click outside the current
crop starts a new crop around it (the part of the object outside the new crop is
kept, and the mask inside it is passed to the model as the mask prompt), so a large
object can be covered piece by piece.

Boxes: SAM-Med3D has no box embedding. A box adds a positive click at its centre (as
the authors do for box prompts) and the mask is clipped to the box.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..errors import InvalidInputError
from ..io.volume import Volume
from ..progress import CancelLike, ProgressCallback, check_cancel, report
from ._torch_session import TorchPromptSession
from .base import Prediction, Prompts

log = logging.getLogger(__name__)

#: isotropic spacing (mm) the model works at
TARGET_SPACING_MM = 1.5
CROP = 128
LOW = 32
#: crops whose embeddings are kept (moving between a few crops does not re-encode)
EMBEDDING_CACHE_SIZE = 4


# --------------------------------------------------------------------------- geometry
def resampled_shape(shape: Sequence[int], spacing_zyx: Sequence[float], target: float = TARGET_SPACING_MM) -> tuple:
    """Shape of the volume resampled to ``target`` mm (at least 1 voxel per axis)."""
    return tuple(max(1, int(round(n * s / target))) for n, s in zip(shape, spacing_zyx))


def to_resampled(index: float, n_in: int, n_out: int) -> float:
    """Continuous index on the resampled axis of a continuous original index (voxel centres)."""
    return (index + 0.5) * n_out / n_in - 0.5


def resample_volume(array: np.ndarray, new_shape: Sequence[int], *, chunk: int = 32):
    """Trilinear resampling (``align_corners=False``) of a z, y, x array to ``new_shape``.

    Done separably (in-plane per slab of slices, then along z) so the original volume
    is never converted to float32 as a whole; the result equals
    ``F.interpolate(..., mode="trilinear", align_corners=False)`` up to rounding.
    Returns a float32 torch tensor.
    """
    import torch
    import torch.nn.functional as F

    nz, ny, nx = array.shape
    rz, ry, rx = (int(v) for v in new_shape)
    plane = torch.empty((nz, ry, rx), dtype=torch.float32)
    for z0 in range(0, nz, chunk):
        slab = torch.from_numpy(np.ascontiguousarray(array[z0 : z0 + chunk], dtype=np.float32))
        if (ny, nx) == (ry, rx):
            plane[z0 : z0 + chunk] = slab
        else:
            plane[z0 : z0 + chunk] = F.interpolate(slab[None], size=(ry, rx), mode="bilinear", align_corners=False)[0]
    if rz == nz:
        return plane
    cols = plane.reshape(nz, ry * rx).t().unsqueeze(1)  # (pixels, 1, nz)
    out = F.interpolate(cols, size=rz, mode="linear", align_corners=False)
    return out[:, 0, :].t().reshape(rz, ry, rx).contiguous()


def linear_upsample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Rows = output samples of 1D linear interpolation (PyTorch ``align_corners=False``)."""
    scale = n_in / n_out
    m = np.zeros((n_out, n_in), dtype=np.float32)
    for o in range(n_out):
        src = max(scale * (o + 0.5) - 0.5, 0.0)
        i0 = min(int(math.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        w1 = src - i0
        m[o, i0] += 1.0 - w1
        m[o, i1] += w1
    return m


#: 128 x 32 interpolation rows of the low-res logits -> crop voxels
_UP = linear_upsample_matrix(LOW, CROP)


def normalise_crop(crop: np.ndarray) -> np.ndarray:
    """Z-score with the statistics of the voxels > 0 (SAM-Med3D's recipe).

    Falls back to the whole crop when fewer than 2 voxels are > 0 or their spread is 0
    (e.g. an MRI crop entirely in the background), so the result is always finite.
    """
    crop = crop.astype(np.float32, copy=False)
    fg = crop[crop > 0]
    if fg.size < 2 or float(fg.std()) < 1e-6:
        fg = crop
    mean = float(fg.mean())
    std = float(fg.std())
    if std < 1e-6:
        std = 1.0
    return (crop - mean) / std


def padded_crop(image, start: Sequence[int], size: int):
    """The ``size``-cube of the torch ``image`` (z, y, x) whose corner is ``start``.

    Parts outside the image are zero (crops around clicks near the border).
    """
    import torch

    out = torch.zeros((size,) * 3, dtype=torch.float32)
    src, dst = [], []
    for s, n in zip(start, image.shape):
        lo, hi = max(s, 0), min(s + size, n)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = image[tuple(src)]
    return out


def _load_network(checkpoint, device):
    from ..models.sam_med3d import load_sam_med3d  # torch: imported on first use only

    return load_sam_med3d(checkpoint, device=device)


class _AxisMap:
    """Original-axis indices <-> crop voxels for one axis of one crop."""

    def __init__(self, n_orig: int, n_res: int, start: int) -> None:
        self.n_orig, self.n_res, self.start = n_orig, n_res, start
        # nearest resampled voxel of every original voxel centre
        res = np.floor((np.arange(n_orig) + 0.5) * n_res / n_orig).astype(np.int64)
        res = np.clip(res, 0, n_res - 1)
        crop_idx = res - start
        inside = np.flatnonzero((crop_idx >= 0) & (crop_idx < CROP))
        self.lo = int(inside[0]) if inside.size else 0
        self.hi = int(inside[-1]) + 1 if inside.size else 0
        self.crop_index = crop_idx[self.lo : self.hi]  # crop voxel of original lo..hi-1
        self.rows = _UP[self.crop_index] if inside.size else np.zeros((0, LOW), np.float32)

    def point(self, index: float) -> float:
        return to_resampled(index, self.n_orig, self.n_res) - self.start

    def support(self, low_lo: int, low_hi: int) -> tuple:
        """Original index range whose crop voxels draw on low-res cells ``[low_lo, low_hi)``."""
        hit = np.flatnonzero(self.rows[:, low_lo:low_hi].sum(axis=1) > 0)
        if not hit.size:
            return 0, 0
        return int(hit[0]), int(hit[-1]) + 1


def _bbox(mask: np.ndarray) -> Optional[tuple]:
    if not mask.any():
        return None
    out = []
    for axis in range(mask.ndim):
        other = tuple(i for i in range(mask.ndim) if i != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        out.append((int(hit[0]), int(hit[-1]) + 1))
    return tuple(out)


def _union(a: Optional[tuple], b: Optional[tuple]) -> Optional[tuple]:
    if a is None:
        return b
    if b is None:
        return a
    return tuple((min(x[0], y[0]), max(x[1], y[1])) for x, y in zip(a, b))


def _slices(bounds: tuple) -> tuple:
    return tuple(slice(lo, hi) for lo, hi in bounds)


# --------------------------------------------------------------------------- session
class SamMed3DSession(TorchPromptSession):
    """Interactive SAM-Med3D segmentation of one object at a time.

    Parameters
    ----------
    weights
        Checkpoint file or folder (``sam_med3d_turbo.pth``); None: the installed
        weights of ``model_name`` (see ``medseg weights download sam-med3d-turbo``).
    device
        ``"auto"`` (CUDA, MPS, CPU), ``"cpu"``, ``"cuda"``, ``"mps"``.
    model_name
        Registry card: ``"sam-med3d-turbo"`` (default) or ``"sam-med3d"``.
    network
        An already built :class:`~napari_medseg.models.sam_med3d.SamMed3D` (tests,
        benchmarks); skips the weights lookup.

    Raises
    ------
    WeightsNotFoundError
        No checkpoint given or installed (the message says what to run).
    """

    name = "sam-med3d"
    #: At most this many torch CPU threads for the per-click decoder (None: torch's
    #: setting). Its matrices are small (512 image tokens): past a few threads the
    #: synchronisation costs more than it saves. On the idle 2-core development
    #: machine 2 threads took the decoder from ~47 ms to ~28 ms.
    decoder_threads: Optional[int] = 4

    def __init__(
        self,
        weights: Union[str, "object", None] = None,
        device: str = "auto",
        *,
        model_name: str = "sam-med3d-turbo",
        network: Any = None,
    ) -> None:
        super().__init__(weights, device, model_name, network, _load_network)
        self._resampled = None  # torch float32 (rz, ry, rx)
        self._res_shape: tuple = ()
        self._embeddings: dict = {}  # crop start -> embedding (LRU order)
        self._maps_cache: dict = {}
        self.message: str = ""
        self.last_iou: Optional[float] = None

    # ------------------------------------------------------------------ set-up

    def _prepare(self, volume: Volume, progress: Optional[ProgressCallback], cancel: Optional[CancelLike]) -> None:
        if volume.array.ndim != 3:
            raise InvalidInputError(f"SAM-Med3D needs a 3D volume, got an array of shape {volume.array.shape}")
        if not np.issubdtype(volume.array.dtype, np.number) or np.issubdtype(volume.array.dtype, np.complexfloating):
            raise InvalidInputError(f"SAM-Med3D needs a real-valued image, got dtype {volume.array.dtype}")
        report(progress, 0.0, "loading SAM-Med3D")
        self._model()
        check_cancel(cancel)
        report(progress, 0.3, "resampling to 1.5 mm")
        shape = resampled_shape(volume.shape, volume.spacing_zyx)
        resampled = resample_volume(volume.array, shape)
        if not bool(torch_isfinite_all(resampled)):
            raise InvalidInputError("the volume contains NaN or infinite voxels; SAM-Med3D cannot segment it")
        check_cancel(cancel)
        self._resampled = resampled
        self._res_shape = shape
        self._embeddings.clear()
        self._maps_cache.clear()
        self.message = ""
        report(progress, 1.0, "ready: the first click encodes a 128³ crop")

    # ------------------------------------------------------------------ crops
    def _crop_start(self, centre_res: Sequence[float]) -> tuple:
        return tuple(int(math.floor(c + 0.5)) - CROP // 2 for c in centre_res)

    def _crop_image(self, start: tuple) -> np.ndarray:
        return padded_crop(self._resampled, start, CROP).numpy()

    def _embedding(self, start: tuple):
        import torch

        if start in self._embeddings:
            emb = self._embeddings.pop(start)
            self._embeddings[start] = emb  # most recently used last
            return emb
        crop = normalise_crop(self._crop_image(start))
        tensor = torch.from_numpy(crop)[None, None].to(self.device)
        emb = self._model().encode(tensor)
        self._embeddings[start] = emb
        while len(self._embeddings) > EMBEDDING_CACHE_SIZE:
            self._embeddings.pop(next(iter(self._embeddings)))
        return emb

    def encode_around(self, zyx: Sequence[float]) -> None:
        """Encode (and cache) the crop centred on ``zyx`` ahead of the first click there."""
        self._embedding(self._crop_start(self._to_res(zyx)))

    def _to_res(self, zyx: Sequence[float]) -> tuple:
        return tuple(to_resampled(c, n, r) for c, n, r in zip(zyx, self.volume.shape, self._res_shape))

    def _axis_maps(self, start: tuple) -> list:
        key = (start, self._res_shape)
        maps = self._maps_cache.get(key)
        if maps is None:
            maps = [_AxisMap(n, r, s) for n, r, s in zip(self.volume.shape, self._res_shape, start)]
            if len(self._maps_cache) > 16:
                self._maps_cache.clear()
            self._maps_cache[key] = maps
        return maps

    @staticmethod
    def _in_crop(maps: list, zyx: Sequence[float]) -> bool:
        return all(0 <= m.point(c) < CROP for m, c in zip(maps, zyx))

    # ------------------------------------------------------------------ prediction
    def _predict(self, prompts: Prompts, previous_state: Any) -> Prediction:
        import torch

        points = list(prompts.points)
        labels = list(prompts.labels)
        if prompts.box is not None:
            centre = tuple((a + b) / 2.0 for a, b in zip(*prompts.box))
            points.insert(0, centre)
            labels.insert(0, True)
        positives = [p for p, lab in zip(points, labels) if lab]
        state = dict(previous_state or {})
        if not positives:
            # A negative click alone cannot place the object: keep what there is.
            self.message = "add a positive click inside the object first"
            return self._keep_previous(state)

        # Where to crop: keep the current crop while the newest click falls in it.
        start = state.get("start")
        if start is None:
            start = self._crop_start(self._to_res(positives[0]))
        elif labels[-1] and not self._in_crop(self._axis_maps(start), points[-1]):
            # a positive click outside the crop: move the crop there (extends the object)
            start = self._crop_start(self._to_res(points[-1]))
        recropped = start != state.get("start")
        maps = self._axis_maps(start)

        coords, lab = [], []
        for p, is_pos in zip(points, labels):
            if self._in_crop(maps, p):
                coords.append([m.point(c) for m, c in zip(maps, p)])
                lab.append(1 if is_pos else 0)
        if not any(lab):
            self.message = "the positive clicks are outside the current 128³ crop; click inside the object again"
            return self._keep_previous(state)

        device = self.device
        emb = self._embedding(start)
        if not recropped and state.get("low_res") is not None:
            mask_prompt = state["low_res"].to(device)
        else:
            mask_prompt = self._binary_prompt(maps, prompts).to(device)
        c = torch.tensor([coords], dtype=torch.float32, device=device)
        lt = torch.tensor([lab], dtype=torch.int64, device=device)
        threads = None
        if device.type == "cpu" and self.decoder_threads:
            threads = max(1, min(int(self.decoder_threads), torch.get_num_threads()))
        with _torch_threads(threads):
            low_res, iou = self._model().decode(emb, c, lt, mask_prompt)
            self.last_iou = float(iou.reshape(-1)[0])
            logits = low_res[0, 0].float().cpu().numpy()
            new_bounds, new_mask = self._map_back(maps, logits)
        crop_bounds = tuple((m.lo, m.hi) for m in maps)
        if prompts.box is not None and new_mask is not None:
            new_bounds, new_mask = self._clip_to_box(new_bounds, new_mask, prompts.box)

        state = {"start": start, "low_res": low_res.detach().cpu()}
        self._set_message(maps, logits)
        return self._merge(new_bounds, new_mask, crop_bounds, state)

    def _keep_previous(self, state: dict) -> Prediction:
        prev = self._mask
        bounds = self._previous_bounds() if prev is not None else None
        if bounds is None:
            return Prediction(np.zeros((0, 0, 0), bool), (slice(0, 0),) * 3, state or None)
        return Prediction(prev[_slices(bounds)].copy(), _slices(bounds), state or None)

    def _binary_prompt(self, maps: list, prompts: Prompts):
        """The current object mask inside the crop as a 32^3 0/1 mask prompt."""
        import torch

        prev = self._mask if self._mask is not None else prompts.initial_mask
        out = np.zeros((LOW,) * 3, dtype=np.float32)
        if prev is not None and prev.any():
            # nearest original voxel of every low-res cell centre
            idx = []
            for m in maps:
                res = m.start + (np.arange(LOW) + 0.5) * (CROP / LOW) - 0.5
                orig = np.floor((res + 0.5) * m.n_orig / m.n_res).astype(np.int64)
                idx.append(orig)
            valid = [(i >= 0) & (i < n) for i, n in zip(idx, self.volume.shape)]
            sub = prev[np.ix_(*(np.clip(i, 0, n - 1) for i, n in zip(idx, self.volume.shape)))]
            sub &= valid[0][:, None, None] & valid[1][None, :, None] & valid[2][None, None, :]
            out = sub.astype(np.float32)
        return torch.from_numpy(out)[None, None]

    @staticmethod
    def _map_back(maps: list, logits: np.ndarray) -> tuple:
        """Threshold the upsampled logits, and take them to the original grid, only
        where the object is.

        The low-resolution logits are upsampled (trilinear, separable small matrix
        products) only over the crop voxels that draw on cells near positive ones,
        thresholded there (at most 128^3), and the original voxels then pick their
        nearest crop voxel by three index gathers, restricted to the mask's bounding
        box. Same voxels as upsampling the whole crop and resampling the whole grid
        (the published recipe), at the cost of the object's size.
        """
        import torch

        pos = _bbox(logits > 0)
        if pos is None:
            return None, None
        cells, orig, crop = [], [], []
        for m, (lo, hi) in zip(maps, pos):
            a, b = m.support(lo, hi)
            if b <= a:
                return None, None
            clo, chi = max(lo - 1, 0), min(hi + 1, LOW)  # neighbours of the positive cells
            idx = m.crop_index[a:b]  # nearest crop voxel of original voxels a..b-1 (sorted)
            cells.append((clo, chi))
            orig.append(m.lo + a)
            crop.append((int(idx[0]), int(idx[-1]) + 1, idx))
        block = torch.from_numpy(np.ascontiguousarray(
            logits[cells[0][0]:cells[0][1], cells[1][0]:cells[1][1], cells[2][0]:cells[2][1]]))
        r0, r1, r2 = (torch.from_numpy(np.ascontiguousarray(_UP[c0:c1, lo:hi]))
                      for (c0, c1, _), (lo, hi) in zip(crop, cells))
        # separable trilinear interpolation on the crop grid: contract z, then y, then x
        t = (r0 @ block.reshape(block.shape[0], -1)).reshape(r0.shape[0], block.shape[1], block.shape[2])
        t = torch.matmul(r1, t)
        t = torch.matmul(t, r2.t())
        on_crop = t > 0
        tight = _bbox(on_crop.numpy())
        if tight is None:
            return None, None
        bounds, index = [], []
        for (c0, _, idx), o0, (t0, t1) in zip(crop, orig, tight):
            # original voxels whose nearest crop voxel lies in the tight range
            i0 = int(np.searchsorted(idx, c0 + t0, side="left"))
            i1 = int(np.searchsorted(idx, c0 + t1, side="left"))
            if i1 <= i0:  # the positive crop voxels fall between original voxel centres
                return None, None
            bounds.append((o0 + i0, o0 + i1))
            index.append(torch.from_numpy(idx[i0:i1] - c0))
        mask = on_crop.to(torch.uint8)
        # last axis first: its gather is element by element, so it should run while the
        # array is smallest; the others copy whole contiguous rows / planes
        for axis in reversed(range(len(index))):
            mask = torch.index_select(mask, axis, index[axis])
        return tuple(bounds), mask.numpy().view(bool)

    @staticmethod
    def _clip_to_box(bounds: tuple, mask: np.ndarray, box: tuple) -> tuple:
        (z0, y0, x0), (z1, y1, x1) = box
        keep = [(int(math.floor(a)), int(math.floor(b)) + 1) for a, b in ((z0, z1), (y0, y1), (x0, x1))]
        mask = mask.copy()
        for axis, ((lo, hi), (k0, k1)) in enumerate(zip(bounds, keep)):
            idx = np.arange(lo, hi)
            outside = (idx < k0) | (idx >= k1)
            sl = [slice(None)] * 3
            sl[axis] = outside
            mask[tuple(sl)] = False
        return bounds, mask

    def _merge(self, new_bounds, new_mask, crop_bounds: tuple, state: dict) -> Prediction:
        """Prediction region = new mask's box plus the previous object's box, so that the
        part of the object outside this crop is kept and the crop's part is replaced."""
        prev = self._mask
        prev_bounds = self._previous_bounds() if prev is not None else None
        region = _union(prev_bounds, new_bounds)
        if region is None:
            return Prediction(np.zeros((0, 0, 0), bool), (slice(0, 0),) * 3, state)
        sl = _slices(region)
        if prev_bounds is not None:
            out = prev[sl].copy()
            # clear the crop's part of the region: the prediction replaces it
            inter = [(max(a, c0), min(b, c1)) for (a, b), (c0, c1) in zip(region, crop_bounds)]
            if all(hi > lo for lo, hi in inter):
                out[tuple(slice(lo - r[0], hi - r[0]) for (lo, hi), r in zip(inter, region))] = False
        else:
            out = np.zeros(tuple(b - a for a, b in region), dtype=bool)
        if new_bounds is not None:
            out[tuple(slice(lo - r[0], hi - r[0]) for (lo, hi), r in zip(new_bounds, region))] |= new_mask
        return Prediction(out, sl, state)

    def _previous_bounds(self) -> Optional[tuple]:
        """Bounding box of the current object mask (kept by the base class)."""
        box = getattr(self, "_mask_box", None)
        if box is not None:
            return tuple((int(sl.start), int(sl.stop)) for sl in box)
        return _bbox(self._mask) if self._mask is not None else None

    def _set_message(self, maps: list, logits: np.ndarray) -> None:
        pos = logits > 0
        touching = []
        for axis, (m, name) in enumerate(zip(maps, "zyx")):
            first = np.take(pos, 0, axis=axis).any()
            last = np.take(pos, LOW - 1, axis=axis).any()
            # a face counts only when the volume continues beyond it
            if (first and m.start > 0) or (last and m.start + CROP < m.n_res):
                touching.append(name)
        if touching:
            self.message = (
                "the object reaches the edge of the 128³ SAM-Med3D crop (19 cm) along "
                + ", ".join(touching)
                + "; click inside the missing part to extend it with a new crop"
            )
        else:
            self.message = ""

    def reset(self) -> None:
        super().reset()
        self.message = ""
        self.last_iou = None


class _torch_threads:
    """Temporarily set torch's intra-op CPU threads (process-wide; restored on exit)."""

    def __init__(self, n: Optional[int]) -> None:
        self.n = n
        self.before = None

    def __enter__(self):
        if self.n:
            import torch

            self.before = torch.get_num_threads()
            if self.before != self.n:
                torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc) -> None:
        if self.n and self.before and self.before != self.n:
            import torch

            torch.set_num_threads(self.before)


def torch_isfinite_all(t) -> bool:
    import torch

    return bool(torch.isfinite(t).all())
