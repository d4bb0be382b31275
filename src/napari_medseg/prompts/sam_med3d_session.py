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
from typing import Any, Optional, Sequence, Union

import numpy as np

from .._ndimage import bbox, linear_upsample_matrix, nearest_index, to_resampled
from ..errors import InvalidInputError
from ..io.volume import Volume
from ..progress import CancelLike, ProgressCallback, check_cancel, report
from ._torch_session import CroppedTorchSession, _bounds, padded_crop
from .base import Prediction, Prompts

log = logging.getLogger(__name__)

#: isotropic spacing (mm) the model works at
TARGET_SPACING_MM = 1.5
CROP = 128
LOW = 32
#: crops whose embeddings are kept (moving between a few crops does not re-encode)
EMBEDDING_CACHE_SIZE = 4


# --------------------------------------------------------------------------- geometry
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


def _load_network(checkpoint, device):
    from ..models.sam_med3d import load_sam_med3d  # torch: imported on first use only

    return load_sam_med3d(checkpoint, device=device)


class _AxisMap:
    """Original-axis indices <-> crop voxels for one axis of one crop."""

    def __init__(self, n_orig: int, n_res: int, start: int) -> None:
        self.n_orig, self.n_res, self.start = n_orig, n_res, start
        crop_idx = nearest_index(n_orig, n_res) - start  # nearest crop voxel of every original voxel
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


#: output tile of :func:`_positive_product`: rows x columns per matrix product (512 KB of
#: float32, which stays in a core's cache until it is thresholded)
TILE = (2048, 64)


def _positive_product(t, rows) -> np.ndarray:
    """``(t @ rows.T) > 0`` as a NumPy bool array, for interpolation ``rows`` (torch).

    A linear-interpolation row has two non-zero weights, next to each other, and the
    rows are sorted: a block of output columns draws on a few adjacent input columns
    only. Each tile of the output is one product over its block's columns (a tenth of
    the multiply-adds of the whole product on a fine grid); the weights left out are
    zeros, whose terms add nothing, so each value is the same two-term sum as in the
    whole product (bit for bit with the BLAS of the development machine). Each tile is
    thresholded while in cache, straight into the result.
    """
    import torch

    t2 = t.reshape(-1, t.shape[-1])
    n_rows, n = t2.shape[0], rows.shape[0]
    tile_rows, tile_cols = TILE
    if n_rows <= tile_rows and n <= tile_cols:  # one tile: no bands to look for
        return torch.matmul(t, rows.t()).numpy() > 0
    out = np.empty((n_rows, n), dtype=bool)
    used = (rows != 0).numpy()
    for c0 in range(0, n, tile_cols):
        c1 = min(c0 + tile_cols, n)
        cols = np.flatnonzero(used[c0:c1].any(axis=0))
        if not cols.size:
            out[:, c0:c1] = False
            continue
        k0, k1 = int(cols[0]), int(cols[-1]) + 1
        weights = rows[c0:c1, k0:k1].t()
        for r0 in range(0, n_rows, tile_rows):
            part = torch.matmul(t2[r0:r0 + tile_rows, k0:k1], weights)
            # NumPy's comparison: several times faster than torch's at 1 thread
            np.greater(part.numpy(), 0, out=out[r0:r0 + tile_rows, c0:c1])
    return out.reshape(t.shape[:-1] + (n,))


# --------------------------------------------------------------------------- session
class SamMed3DSession(CroppedTorchSession):
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
    target_spacing_mm = TARGET_SPACING_MM
    #: At most this many torch CPU threads for the per-click decoder (None: torch's
    #: setting). Its matrices are small (512 image tokens): past a few threads the
    #: synchronisation costs more than it saves. On the idle 2-core development
    #: machine 2 threads took the decoder from ~47 ms to ~28 ms. One thread while the
    #: CPUs are oversubscribed (:func:`_oversubscribed`).
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
        self._embeddings: dict = {}  # crop start -> embedding (LRU order)
        self._maps_cache: dict = {}
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
        resampled = self._resample(volume, "SAM-Med3D")
        check_cancel(cancel)
        self._resampled = resampled
        self._embeddings.clear()
        self._maps_cache.clear()
        self.message = ""
        report(progress, 1.0, "ready: the first click encodes a 128³ crop")

    # ------------------------------------------------------------------ crops
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
        # the image encoder is the expensive call: compiled for the CPU when possible
        net = self._model()
        encoder = getattr(net, "image_encoder", None)  # stand-in networks have encode() only
        emb = (self._run_network(encoder, tensor, "SAM-Med3D image encoder")
               if encoder is not None else net.encode(tensor))
        self._embeddings[start] = emb
        while len(self._embeddings) > EMBEDDING_CACHE_SIZE:
            self._embeddings.pop(next(iter(self._embeddings)))
        return emb

    def encode_around(self, zyx: Sequence[float]) -> None:
        """Encode (and cache) the crop centred on ``zyx`` ahead of the first click there."""
        self._embedding(self._crop_start(self._to_res(zyx), CROP))

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
            start = self._crop_start(self._to_res(positives[0]), CROP)
        elif labels[-1] and not self._in_crop(self._axis_maps(start), points[-1]):
            # a positive click outside the crop: move the crop there (extends the object)
            start = self._crop_start(self._to_res(points[-1]), CROP)
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
            if threads > 1 and _oversubscribed():
                threads = 1
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

        The low-resolution logits are interpolated (trilinear, separable small matrix
        products, z then y then x) only over the voxels that draw on cells near positive
        ones, and thresholded there. Along an axis where the original voxels are finer
        than the crop's, the values are computed on the crop voxels and each original
        voxel then takes its nearest crop voxel's answer (an index gather, done on the
        thresholded booleans and restricted to the mask's bounding box); along an axis
        where they are as coarse or coarser, the interpolation rows of the crop voxels
        the original voxels sample are used directly, so nothing is computed that no
        original voxel reads. Along x, the last axis, the original voxels' rows are used
        for large outputs too (:func:`_positive_product`: a banded product, no gather).
        Same voxels as upsampling the whole crop and resampling the whole grid (the
        published recipe), at the cost of the object's size.
        """
        import torch

        pos = _bounds(bbox(logits > 0))
        if pos is None:
            return None, None
        cells, rows, origin, gathers = [], [], [], []
        for m, (lo, hi) in zip(maps, pos):
            a, b = m.support(lo, hi)
            if b <= a:
                return None, None
            clo, chi = max(lo - 1, 0), min(hi + 1, LOW)  # neighbours of the positive cells
            idx = m.crop_index[a:b]  # nearest crop voxel of original voxels a..b-1 (sorted)
            c0, c1 = int(idx[0]), int(idx[-1]) + 1
            cells.append((clo, chi))
            origin.append(m.lo + a)
            # Along x (the last axis), for an output of more than one tile, the rows of the
            # original voxels are used: its product is banded (_positive_product), so it costs
            # about the same per row either way, and a gather along the last axis is element
            # by element, the slowest one.
            big = len(rows) == 2 and rows[0].shape[0] * rows[1].shape[0] * (b - a) > TILE[0] * TILE[1]
            if b - a <= c1 - c0 or big:  # sample directly
                rows.append(m.rows[a:b, clo:chi])
                gathers.append(None)
            else:
                rows.append(_UP[c0:c1, clo:chi])
                gathers.append(idx - c0)
        block = torch.from_numpy(np.ascontiguousarray(
            logits[cells[0][0]:cells[0][1], cells[1][0]:cells[1][1], cells[2][0]:cells[2][1]]))
        r0, r1, r2 = (torch.from_numpy(np.ascontiguousarray(r)) for r in rows)
        # separable trilinear interpolation: contract z, then y, then x
        t = (r0 @ block.reshape(block.shape[0], -1)).reshape(r0.shape[0], block.shape[1], block.shape[2])
        t = torch.matmul(r1, t)
        mask = _positive_product(t, r2)
        tight = _bounds(bbox(mask))
        if tight is None:
            return None, None
        bounds, index, box = [], [], []
        for g, o0, (t0, t1) in zip(gathers, origin, tight):
            if g is None:  # rows are original voxels already: keep the tight range
                bounds.append((o0 + t0, o0 + t1))
                box.append(slice(t0, t1))
                index.append(None)
                continue
            # original voxels whose nearest crop voxel lies in the tight range
            i0 = int(np.searchsorted(g, t0, side="left"))
            i1 = int(np.searchsorted(g, t1, side="left"))
            if i1 <= i0:  # the positive crop voxels fall between original voxel centres
                return None, None
            bounds.append((o0 + i0, o0 + i1))
            box.append(slice(None))
            index.append(g[i0:i1])
        mask = mask[tuple(box)]
        # NumPy's gathers (plain loops) rather than torch's index_select, whose per-call
        # threading costs more than the copy on a small machine. The last axis first: its
        # gather is element by element, so it runs while the array is smallest; then z and
        # y together, one ``take`` of whole x rows by their flat (z, y) index (a row copy
        # each; two index arrays would go through NumPy's slower advanced indexing).
        iz, iy, ix = index
        if ix is not None:
            mask = np.take(mask, ix, axis=2)
        if iz is not None and iy is not None:
            rows = (iz[:, None] * mask.shape[1] + iy[None, :]).ravel()  # (z, y) rows of the x-gathered mask
            mask = np.take(mask.reshape(-1, mask.shape[2]), rows, axis=0).reshape(len(iz), len(iy), -1)
        elif iz is not None:
            mask = np.take(mask, iz, axis=0)
        elif iy is not None:
            mask = np.take(mask, iy, axis=1)
        return tuple(bounds), mask

    def _set_message(self, maps: list, logits: np.ndarray) -> None:
        pos = logits > 0
        before = self._mask  # the object before this click (other crops' parts)
        box = self._mask_box
        touching = []
        for axis, (m, name) in enumerate(zip(maps, "zyx")):
            first = np.take(pos, 0, axis=axis).any()
            last = np.take(pos, LOW - 1, axis=axis).any()
            span = box[axis] if box is not None else None
            # a face counts only when the volume continues beyond it and the object is not
            # already there (an earlier crop covered that side: nothing was cut)
            if first and m.start > 0 and not self._continues(before, axis, m.lo - 1, span):
                touching.append(name)
            elif last and m.start + CROP < m.n_res and not self._continues(before, axis, m.hi, span):
                touching.append(name)
        if touching:
            self.message = (
                "the object reaches the edge of the 128³ SAM-Med3D crop (19 cm) along "
                + ", ".join(touching)
                + "; click inside the missing part to extend it with a new crop"
            )
        else:
            self.message = ""

    @staticmethod
    def _continues(mask: Optional[np.ndarray], axis: int, index: int, span: Optional[slice] = None) -> bool:
        """Whether ``mask`` holds object voxels on the plane ``index`` of ``axis``.

        ``span``: the mask's extent along ``axis`` (its bounding box), when known; a plane
        outside it is empty without reading it (a plane of a 512 x 512 x 300 grid is up to
        a quarter of a million voxels).
        """
        if mask is None or not 0 <= index < mask.shape[axis]:
            return False
        if span is not None and not span.start <= index < span.stop:
            return False
        return bool(mask[(slice(None),) * axis + (index,)].any())  # a view of the plane, not a copy

    def reset(self) -> None:
        super().reset()
        self.last_iou = None


def _oversubscribed() -> bool:
    """Whether more threads have been runnable than this process has cores (the 1-minute
    load average above its CPU count).

    Then a small multi-threaded product waits for workers the scheduler has put aside:
    one decoder call at 2 threads took 680 ms, at 1 thread 78 ms, at load 7 on 2 cores.
    """
    import os

    try:
        return os.getloadavg()[0] > len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no load average or affinity on this platform
        return False


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
