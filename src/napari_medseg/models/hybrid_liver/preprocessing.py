"""The preprocessing of the hybrid liver family, shared by training and inference.

Training (:func:`napari_medseg.training.data.prepare_case`) and inference
(:func:`napari_medseg.inference.liver_cascade.run_hybrid`) both call these functions, with
the ``preprocessing`` dict stored in the checkpoint, so a trained network sees at inference
exactly what it saw in training:

1. flip the array axes to a positive direction diagonal (:func:`canonical_flips`);
2. stage 1 (liver): resample to the coarse grid and window the HU (:func:`stage1_input`);
3. stage 2 (lesions): the liver's bounding box plus a margin (:func:`stage2_box`), resampled
   to the fine grid and windowed (:func:`stage2_input`);
4. masks and probabilities go between grids with :func:`resample_mask` (trilinear, then a
   threshold); the networks read 2.5D slabs of neighbouring slices (:func:`slabs`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..._ndimage import bbox_mm, resample_linear, resample_nearest, target_shape

#: Default preprocessing (stored in the checkpoint; inference reads it from there).
DEFAULT_PREPROCESSING = {
    "hu_window": [-200.0, 300.0],  # clipped and scaled to [0, 1]
    "stage1_spacing_xyz": [2.5, 2.5, 2.5],  # coarse grid for the liver
    "stage2_spacing_xyz": [1.0, 1.0, 2.5],  # fine grid for lesions (inside the liver box)
    "stage2_margin_mm": 10.0,  # margin around the liver's bounding box
    "min_lesion_mm3": 20.0,  # lesion components smaller than this are dropped (specks)
    "orientation": "array axes, flipped to positive direction diagonal",
}


def canonical_flips(volume) -> tuple:
    """Array axes (z, y, x) to flip so that the direction matrix has a positive diagonal.

    Scans stored with flipped axes (e.g. NIfTI in RAS read as LPS) then look the same to the
    network; flips are undone on the output. Axis permutations (sagittal/coronal acquisitions)
    are not changed: the network works on the array's slice axis.
    """
    diag = np.diag(volume.direction_zyx)
    return tuple(int(a) for a in range(3) if diag[a] < 0)


def apply_flips(array: np.ndarray, flips: Sequence[int]) -> np.ndarray:
    """Flip ``array`` along ``flips`` (its own inverse)."""
    return np.flip(array, axis=tuple(flips)) if flips else array


def resample_to_shape(array: np.ndarray, shape: Sequence[int], mode: str = "linear") -> np.ndarray:
    """Resample a 3D (or channels-first 4D) array to ``shape`` keeping its physical extent.

    ``mode`` "linear" (trilinear, float32 out: :func:`napari_medseg._ndimage.resample_linear`)
    or "nearest" (labels, dtype kept). Voxel centres follow the half-pixel convention
    (``align_corners=False``), i.e. the grids share their outer boundary.
    """
    shape = tuple(int(s) for s in shape)
    arr = np.asarray(array)
    if arr.shape[-3:] == shape:
        return arr.astype(np.float32) if mode == "linear" else arr
    if mode == "nearest":
        return resample_nearest(arr, shape)
    if arr.ndim == 4:
        return np.stack([resample_linear(channel, shape).numpy() for channel in arr])
    return resample_linear(arr, shape).numpy()


def resample_to_spacing(array: np.ndarray, spacing_zyx, target_zyx, mode: str = "linear") -> np.ndarray:
    """Resample ``array`` (z, y, x) from ``spacing_zyx`` to ``target_zyx`` (mm)."""
    return resample_to_shape(array, target_shape(np.shape(array)[-3:], spacing_zyx, target_zyx), mode)


def resample_mask(values: np.ndarray, shape: Sequence[int], threshold: float = 0.5) -> np.ndarray:
    """A mask or probability map moved to ``shape``: trilinear, then ``>= threshold`` (bool)."""
    return resample_to_shape(np.asarray(values, dtype=np.float32), shape, "linear") >= threshold


def window(array: np.ndarray, hu_window: Sequence[float]) -> np.ndarray:
    """Clip to the HU window and scale to [0, 1] (MONAI ``ScaleIntensityRange``), float32."""
    from monai.transforms import ScaleIntensityRange

    lo, hi = (float(v) for v in hu_window)
    out = ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)(
        np.asarray(array, dtype=np.float32)
    )
    return np.asarray(out, dtype=np.float32)


def slabs(volume01: np.ndarray, indices: Sequence[int], context: int) -> np.ndarray:
    """2.5D inputs: for each slice index, the ``2 * context + 1`` neighbours (edge-clamped).

    Returns ``(len(indices), 2 * context + 1, Y, X)`` float32.
    """
    nz = volume01.shape[0]
    offsets = np.arange(-context, context + 1)
    idx = np.clip(np.asarray(indices)[:, None] + offsets[None, :], 0, nz - 1)
    return np.ascontiguousarray(volume01[idx], dtype=np.float32)


def _spacing_zyx(preprocessing: dict, key: str) -> tuple:
    return tuple(reversed([float(v) for v in preprocessing[key]]))


def stage1_input(image: np.ndarray, spacing_zyx, preprocessing: dict) -> np.ndarray:
    """Stage 1's input: ``image`` (canonical orientation) on the coarse grid, windowed to [0, 1]."""
    coarse = resample_to_spacing(image, spacing_zyx, _spacing_zyx(preprocessing, "stage1_spacing_xyz"))
    return window(coarse, preprocessing["hu_window"])


def stage2_box(liver: np.ndarray, spacing_zyx, preprocessing: dict) -> Optional[tuple]:
    """Stage 2's region: the liver's bounding box grown by ``stage2_margin_mm`` (None: no liver)."""
    return bbox_mm(liver, spacing_zyx, float(preprocessing.get("stage2_margin_mm", 10.0)))


def stage2_input(crop: np.ndarray, spacing_zyx, preprocessing: dict) -> np.ndarray:
    """Stage 2's input: the liver box ``crop`` on the fine grid, windowed to [0, 1]."""
    fine = resample_to_spacing(crop, spacing_zyx, _spacing_zyx(preprocessing, "stage2_spacing_xyz"))
    return window(fine, preprocessing["hu_window"])
