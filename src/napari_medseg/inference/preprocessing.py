"""nnU-Net's preprocessing of one case: transpose, crop to non-zero, normalise, resample.

Follows ``DefaultPreprocessor.run_case_npy`` step for step (the order matters:
normalisation happens *before* resampling, on the cropped image), and records
what the export needs to undo it (:class:`CaseGeometry`).

Differences that do not change the result:

* the crop box is computed from the non-zero mask directly; nnU-Net fills holes
  in the mask first, which can never move the bounding box (a hole is enclosed by
  non-zero voxels). The filled mask itself is only computed when a Z-score
  normalisation needs it (``use_mask_for_norm``);
* resampling uses :mod:`napari_medseg.inference.resample` (same operator, float32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..errors import InvalidInputError
from .resample import compute_new_shape, resample_like_nnunet

__all__ = ["CaseGeometry", "preprocess_case", "nonzero_bbox", "normalize_channel"]


@dataclass
class CaseGeometry:
    """What :func:`preprocess_case` did, so the prediction can be put back."""

    shape_before_cropping: tuple  # transposed order
    bbox: list  # [[start, stop), ...] in transposed order
    shape_after_cropping: tuple
    original_spacing: tuple  # transposed order
    target_spacing: tuple
    new_shape: tuple


def nonzero_bbox(data: np.ndarray) -> list:
    """Half-open bounding box of voxels non-zero in any channel (full box if none)."""
    mask = np.any(data != 0, axis=0)
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        if hit.size == 0:
            box.append([0, mask.shape[axis]])
        else:
            box.append([int(hit[0]), int(hit[-1]) + 1])
    return box


def normalize_channel(image: np.ndarray, scheme: str, props: Optional[dict],
                      use_mask: bool, mask: Optional[np.ndarray]) -> np.ndarray:
    """Apply one of nnU-Net's normalisation schemes in place (float32)."""
    if scheme == "CTNormalization":
        if not props:
            raise InvalidInputError("CTNormalization needs the plans' foreground intensity properties")
        np.clip(image, props["percentile_00_5"], props["percentile_99_5"], out=image)
        image -= props["mean"]
        image /= max(props["std"], 1e-8)
    elif scheme == "ZScoreNormalization":
        if use_mask and mask is not None:
            values = image[mask]
            mean, std = values.mean(), values.std()
            image[mask] = (image[mask] - mean) / max(std, 1e-8)
        else:
            mean, std = image.mean(), image.std()
            image -= mean
            image /= max(std, 1e-8)
    elif scheme == "RescaleTo01Normalization":
        image -= image.min()
        image /= np.clip(image.max(), a_min=1e-8, a_max=None)
    elif scheme == "RGBTo01Normalization":
        image /= 255.0
    elif scheme == "NoNormalization":
        pass
    else:
        raise InvalidInputError(f"normalization scheme '{scheme}' is not supported")
    return image


def preprocess_case(data: np.ndarray, spacing_zyx: Sequence[float], plans) -> tuple:
    """Preprocess a (C, Z, Y, X) image as nnU-Net does for ``plans``' configuration.

    Parameters
    ----------
    data : numpy.ndarray
        Channels first, SimpleITK axis order (z, y, x), any numeric dtype.
    spacing_zyx : sequence of float
        Voxel size in mm in the same order.
    plans : NnUNetPlans
        The resolved configuration.

    Returns
    -------
    (numpy.ndarray, CaseGeometry)
        float32 (C, ...) network input on the configuration's grid, and the geometry.
    """
    from scipy.ndimage import binary_fill_holes

    tf = plans.transpose_forward
    data = np.asarray(data).astype(np.float32)  # a copy: the caller's array is never touched
    data = data.transpose([0, *[i + 1 for i in tf]])
    original_spacing = tuple(float(spacing_zyx[i]) for i in tf)
    shape_before = tuple(data.shape[1:])

    bbox = nonzero_bbox(data)
    slicer = (slice(None),) + tuple(slice(a, b) for a, b in bbox)
    data = np.ascontiguousarray(data[slicer])
    shape_after = tuple(data.shape[1:])

    target_spacing = tuple(plans.spacing)
    if len(target_spacing) < len(shape_after):
        target_spacing = (original_spacing[0],) + target_spacing
    new_shape = compute_new_shape(shape_after, original_spacing, target_spacing)

    schemes = plans.normalization_schemes
    use_mask = plans.use_mask_for_norm
    props_all = plans.intensity_properties
    mask = None
    for c in range(data.shape[0]):
        scheme = schemes[c] if c < len(schemes) else schemes[-1]
        um = use_mask[c] if c < len(use_mask) else False
        if scheme == "ZScoreNormalization" and um and mask is None:
            # nnU-Net's seg: -1 outside the hole-filled non-zero mask of the cropped image
            mask = binary_fill_holes(np.any(data != 0, axis=0))
        normalize_channel(data[c], scheme, props_all.get(str(c)), um, mask)

    kw = plans.data_resampling_kwargs
    data = resample_like_nnunet(
        data, new_shape, original_spacing, target_spacing, order=int(kw.get("order", 3)),
        order_z=int(kw.get("order_z", 0)), force_separate_z=kw.get("force_separate_z"),
        separate_z_anisotropy_threshold=float(kw.get("separate_z_anisotropy_threshold", 3)),
    )
    geometry = CaseGeometry(shape_before_cropping=shape_before, bbox=bbox,
                            shape_after_cropping=shape_after, original_spacing=original_spacing,
                            target_spacing=target_spacing, new_shape=tuple(new_shape))
    return data, geometry
