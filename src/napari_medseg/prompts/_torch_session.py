"""The base classes of the torch-backed prompt sessions (SAM-Med3D, 3DSAM-adapter).

:class:`TorchPromptSession` loads the network; :class:`CroppedTorchSession` adds what
both SAM sessions share: the resampled volume, crops placed by the clicks, the map back
to the original grid and the merge into the object's mask.

Each such session takes either a checkpoint (resolved through the weights manager, so a
missing file gives the usual "run `medseg weights download ...`" message at construction)
or an already built ``network`` (tests, benchmarks); picks the device on first use; and
loads the network there, in float32 (the precision their parity is established in), on
first use too, so constructing a session stays cheap.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .._ndimage import bbox, nearest_index, resample_linear, target_shape, to_resampled, union_box
from ..errors import InvalidInputError
from ..io.volume import Volume
from .base import Prediction, PromptSession


class TorchPromptSession(PromptSession):
    """A :class:`PromptSession` whose backend is a torch network loaded lazily.

    Heavy network calls go through :meth:`_run_network`, which runs them compiled by
    the CPU runtime :attr:`runtime` selects (OpenVINO, see
    :mod:`napari_medseg.inference.runtimes`), once per input shape, or with torch.
    """

    #: "auto" (PyTorch: this family is not in inference.runtimes.AUTO_OPENVINO_FAMILIES), "openvino" or "torch".
    runtime: str = "auto"

    def __init__(self, weights: Any, device: str, model_name: str, network: Any,
                 loader: Callable[..., Any]) -> None:
        super().__init__()
        self._device_pref = device
        self._device = None
        self._network = network
        self._network_ready = False
        self._loader = loader
        self._checkpoint = None
        #: What ran the compiled calls (set on the first :meth:`_run_network`).
        self.runtime_report = None
        self._compiled_calls: dict = {}
        if network is None:
            from ..models.weights import resolve_weights

            self._checkpoint = resolve_weights(model_name, weights)

    @property
    def device(self):
        """The torch device (chosen by :func:`~napari_medseg.inference.device.choose_device`)."""
        if self._device is None:
            from ..inference.device import choose_device

            self._device = choose_device(self._device_pref)
        return self._device

    def _run_network(self, module, x, what: str):
        """``module(x)`` for one tensor, compiled for ``x``'s shape when the runtime allows.

        The compiled model is kept for the session (the next crop, the next click reuse
        it) and on disk (the next session reads it). Any failure runs torch instead,
        with the reason in :attr:`runtime_report`.
        """
        from ..inference.runtimes import check_runtime, compile_module, resolve_runtime

        report = self.runtime_report
        if report is None or report.requested != check_runtime(self.runtime):
            report = self.runtime_report = resolve_runtime(self.runtime, self.device)
            self._compiled_calls.clear()
        key = (what, tuple(x.shape))
        if key not in self._compiled_calls:
            self._compiled_calls[key] = compile_module(module, tuple(x.shape), report=report,
                                                       what=what)
        fn = self._compiled_calls[key]
        if fn is not None and report.used == "openvino":
            try:
                out = fn(x)
                return [o.to(x.device) for o in out] if isinstance(out, list) else out.to(x.device)
            except Exception as exc:  # a runtime error: torch from now on, never a failure
                report.fall_back(f"OpenVINO failed while running the {what} "
                                 f"({type(exc).__name__}: {exc})")
                self._compiled_calls[key] = None
        import torch

        with torch.no_grad():
            return module(x)

    def _model(self):
        """The network on :attr:`device`, in float32, in eval mode (loaded on first use)."""
        if not self._network_ready:
            import torch

            if self._network is None:
                self._network = self._loader(self._checkpoint, device=self.device)
            self._network = self._network.to(device=self.device, dtype=torch.float32).eval()
            self._network_ready = True
        return self._network


def padded_crop(image, start: Sequence[int], size: int):
    """The ``size``-cube of the torch ``image`` (z, y, x) whose corner is ``start``.

    Parts outside the image are zero (crops around clicks near the border), as torchio's
    ``CropOrPad`` pads in the SAM references.
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


def _bounds(box: Optional[tuple]) -> Optional[tuple]:
    """A box of slices as ``((lo, hi), ...)`` integer pairs (``None`` stays ``None``)."""
    return None if box is None else tuple((int(s.start), int(s.stop)) for s in box)


def _slices(bounds: tuple) -> tuple:
    return tuple(slice(lo, hi) for lo, hi in bounds)


_EMPTY = (slice(0, 0),) * 3


def _touches_every_face(mask: np.ndarray) -> bool:
    """Whether ``mask`` has a true voxel on each of the six faces of its array, i.e. its
    bounding box is the whole array (the faces are views: no copy)."""
    if 0 in mask.shape:
        return False
    return all(bool(mask[(slice(None),) * axis + (end,)].any())
               for axis in range(mask.ndim) for end in (0, -1))


class CroppedTorchSession(TorchPromptSession):
    """A torch session that works on cubic crops of the volume resampled to an isotropic grid.

    What SAM-Med3D and 3DSAM-adapter share: the volume resampled once per
    :meth:`set_volume` to :attr:`target_spacing_mm` (trilinear, voxel-centre aligned),
    click coordinates on that grid, the zero-padded crop whose corner is a crop
    ``start``, the original voxels a crop covers (nearest neighbour), the map back of a
    crop mask to the original grid, clipping to a box prompt, and merging the crop's
    answer into the object's mask (the part of the object outside the crop is kept).

    Bounds are ``((lo, hi), ...)`` integer pairs on the original grid, one per axis.
    """

    #: isotropic spacing (mm) the network works at
    target_spacing_mm: float = 1.0

    def __init__(self, weights: Any, device: str, model_name: str, network: Any,
                 loader: Callable[..., Any]) -> None:
        super().__init__(weights, device, model_name, network, loader)
        self._resampled = None  # torch float32 (rz, ry, rx), CPU
        self._res_shape: tuple = ()
        self.message: str = ""

    # ------------------------------------------------------------------ grids
    def _resample(self, volume: Volume, what: str):
        """``volume`` on the working grid (torch float32); NaN/inf voxels are refused."""
        import torch

        shape = target_shape(volume.shape, volume.spacing_zyx, self.target_spacing_mm)
        res = resample_linear(volume.array, shape)
        if not bool(torch.isfinite(res).all()):
            raise InvalidInputError(f"the volume contains NaN or infinite voxels; {what} cannot segment it")
        self._res_shape = shape
        return res

    def _to_res(self, zyx: Sequence[float]) -> tuple:
        """Continuous original voxel index -> continuous index on the working grid."""
        return tuple(to_resampled(c, n, r) for c, n, r in zip(zyx, self.volume.shape, self._res_shape))

    @staticmethod
    def _crop_start(centre_res: Sequence[float], size: int) -> tuple:
        """Corner of the ``size``-cube centred on a working-grid point."""
        return tuple(int(math.floor(c + 0.5)) - size // 2 for c in centre_res)

    def _crop_index(self, axis: int, start: int) -> np.ndarray:
        """Crop voxel (may lie outside the crop) nearest to every original voxel of ``axis``."""
        return nearest_index(self.volume.shape[axis], self._res_shape[axis]) - start

    def _crop_bounds(self, start: tuple, size: int) -> tuple:
        """Original-grid bounds of the voxels whose nearest working voxel is in the crop."""
        out = []
        for axis, s in enumerate(start):
            ci = self._crop_index(axis, s)
            idx = np.flatnonzero((ci >= 0) & (ci < size))
            out.append((int(idx[0]), int(idx[-1]) + 1) if idx.size else (0, 0))
        return tuple(out)

    def _map_back_nearest(self, start: tuple, crop_mask: np.ndarray) -> tuple:
        """``(bounds, mask)`` of a crop mask on the original grid (nearest neighbour), only
        over the mask's bounding box; ``(None, None)`` when nothing maps back."""
        box = _bounds(bbox(crop_mask))
        if box is None:
            return None, None
        idx, bounds = [], []
        for axis, (s, (lo, hi)) in enumerate(zip(start, box)):
            ci = self._crop_index(axis, s)
            hit = np.flatnonzero((ci >= lo) & (ci < hi))
            if not hit.size:
                return None, None
            bounds.append((int(hit[0]), int(hit[-1]) + 1))
            idx.append(ci[hit[0] : hit[-1] + 1])
        return tuple(bounds), crop_mask[np.ix_(*idx)]

    # ------------------------------------------------------------------ results
    @staticmethod
    def _clip_to_box(bounds: tuple, mask: np.ndarray, box: tuple) -> tuple:
        """``mask`` (at ``bounds``) without the voxels outside the box prompt's voxels."""
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

    def _previous_bounds(self) -> Optional[tuple]:
        """Bounding box of the current object mask (kept by the base class)."""
        box = getattr(self, "_mask_box", None)
        if box is not None:
            return _bounds(box)
        return _bounds(bbox(self._mask)) if self._mask is not None else None

    def _keep_previous(self, state: Optional[dict]) -> Prediction:
        """The current object unchanged (a prompt that cannot be answered)."""
        prev = self._mask
        bounds = self._previous_bounds() if prev is not None else None
        if bounds is None:
            return Prediction(np.zeros((0, 0, 0), bool), _EMPTY, state or None)
        # the previous bounds are the object's bounding box: the region is its tight box
        return Prediction(prev[_slices(bounds)].copy(), _slices(bounds), state or None,
                          box=_slices((0, hi - lo) for lo, hi in bounds))

    def _merge(self, new_bounds, new_mask, crop_bounds: tuple, state) -> Prediction:
        """Prediction region = new mask's box plus the previous object's box, so that the
        part of the object outside this crop is kept and the crop's part is replaced.

        When the answer is the new mask alone, the prediction carries its bounding box
        (``new_bounds``, if the mask touches all six faces of its array: a few planes read
        instead of the whole mask).
        """
        prev = self._mask
        prev_bounds = self._previous_bounds() if prev is not None else None
        region = _bounds(union_box(None if prev_bounds is None else _slices(prev_bounds),
                                   None if new_bounds is None else _slices(new_bounds)))
        if region is None:
            return Prediction(np.zeros((0, 0, 0), bool), _EMPTY, state)
        sl = _slices(region)
        if prev_bounds is None or all(c0 <= a and b <= c1 for (a, b), (c0, c1) in zip(prev_bounds, crop_bounds)):
            # The whole previous object lies in this crop, where the prediction replaces it:
            # nothing of it is kept, so the answer is the new mask alone (no copy of the
            # previous one to clear; a crop-filling mask is 14 M voxels on a 0.7 mm grid).
            box = None
            if new_bounds is not None and _touches_every_face(new_mask):
                box = tuple(slice(lo - r[0], hi - r[0]) for (lo, hi), r in zip(new_bounds, region))
            if new_bounds is not None and tuple(new_bounds) == region:
                return Prediction(new_mask, sl, state, box=box)
            out = np.zeros(tuple(b - a for a, b in region), dtype=bool)
            if new_bounds is not None:
                out[tuple(slice(lo - r[0], hi - r[0]) for (lo, hi), r in zip(new_bounds, region))] = new_mask
            return Prediction(out, sl, state, box=box)
        out = prev[sl].copy()
        # clear the crop's part of the region: the prediction replaces it
        inter = [(max(a, c0), min(b, c1)) for (a, b), (c0, c1) in zip(region, crop_bounds)]
        if all(hi > lo for lo, hi in inter):
            out[tuple(slice(lo - r[0], hi - r[0]) for (lo, hi), r in zip(inter, region))] = False
        if new_bounds is not None:
            out[tuple(slice(lo - r[0], hi - r[0]) for (lo, hi), r in zip(new_bounds, region))] |= new_mask
        return Prediction(out, sl, state)

    def reset(self) -> None:
        super().reset()
        self.message = ""
