"""Datasets in the Medical Segmentation Decathlon / LiTS layout, prepared for the 2.5D cascade.

Layout::

    DATA/imagesTr/<case>.nii.gz      CT in HU (nnU-Net style <case>_0000.nii.gz also accepted)
    DATA/labelsTr/<case>.nii.gz      0 background, 1 liver, 2 lesion (same grid as the image)

Every case is read once, flipped to the canonical orientation, resampled to the stage grids
and windowed with :mod:`napari_medseg.models.hybrid_liver.preprocessing` (the same code that
inference runs), and kept in memory as small float arrays. Training patches are 2.5D:
``2 * context + 1`` adjacent slices as channels, cropped with MONAI's
``RandCropByPosNegLabeld`` (centres drawn from foreground / background) after drawing a slice
with a probability weighted towards liver (stage 1) or lesions (stage 2), then flipped,
rotated by 90 degrees and intensity-jittered with MONAI transforms.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import GeometryMismatchError, InvalidInputError
from ..models.hybrid_liver import preprocessing as pp
from ..io.formats import WRITABLE, extension_of, strip_extension
from ..io.volume import Volume

#: volume files a training folder may hold (single-file formats and detached headers)
IMAGE_SUFFIXES = WRITABLE


def _stem(path: Path) -> str:
    return strip_extension(path.name, IMAGE_SUFFIXES) if extension_of(path.name, IMAGE_SUFFIXES) else path.stem


def find_cases(data_dir) -> list:
    """Pairs ``(image_path, label_path)`` of an MSD/LiTS-layout folder, sorted by case name.

    Raises
    ------
    InvalidInputError
        The folder lacks ``imagesTr``/``labelsTr``, holds no images, or an image has no label.
    """
    data_dir = Path(data_dir)
    images_dir, labels_dir = data_dir / "imagesTr", data_dir / "labelsTr"
    if not images_dir.is_dir() or not labels_dir.is_dir():
        raise InvalidInputError(
            f"{data_dir} is not a Decathlon/LiTS-layout dataset: it needs imagesTr/ and labelsTr/ "
            "folders (images in HU, labels 0 background, 1 liver, 2 lesion)"
        )
    labels = {}
    for path in labels_dir.iterdir():
        if path.name.startswith(".") or extension_of(path.name, IMAGE_SUFFIXES) is None:
            continue
        labels[_stem(path)] = path
    pairs = []
    for path in sorted(images_dir.iterdir()):
        if path.name.startswith(".") or extension_of(path.name, IMAGE_SUFFIXES) is None:
            continue  # macOS "._" files, notes, ...
        stem = _stem(path)
        key = stem[:-5] if stem.endswith("_0000") else stem
        label = labels.get(key) or labels.get(stem)
        if label is None:
            raise InvalidInputError(f"image {path} has no label file {key}.nii.gz in {labels_dir}")
        pairs.append((path, label))
    if not pairs:
        raise InvalidInputError(f"no images (.nii.gz/.nii/.nrrd/.mha) found in {images_dir}")
    return pairs


def read_case(image_path, label_path) -> tuple:
    """Read an image and its label map -> ``(Volume, uint8 labels array)``, checked."""
    try:
        from ..io import read_volume  # the shared reader (IO helper)
    except ImportError:  # pragma: no cover - before io exports it
        from ..io.readers import read_volume

    image = read_volume(image_path)
    labels = read_volume(label_path)
    try:
        image.check_same_grid(labels, what=f"labels {label_path}")
    except GeometryMismatchError:
        raise
    arr = np.asarray(labels.array)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.allclose(arr, np.round(arr)):
            raise InvalidInputError(f"label file {label_path} holds non-integer values")
    values = np.unique(arr)
    bad = [v for v in values.tolist() if v not in (0, 1, 2)]
    if bad:
        raise InvalidInputError(
            f"label file {label_path} holds values {bad}; expected 0 background, 1 liver, 2 lesion"
        )
    return image, arr.astype(np.uint8)


@dataclass
class PreparedCase:
    """A case on the two stage grids (canonical orientation), images windowed to [0, 1]."""

    name: str
    stage1_image: np.ndarray  # (z, y, x) float32, coarse grid
    stage1_label: np.ndarray  # (z, y, x) uint8, 1 = liver incl. lesions
    stage2_image: Optional[np.ndarray]  # liver box (+ margin) at the fine grid
    stage2_label: Optional[np.ndarray]  # 1 = lesion
    stage2_liver: Optional[np.ndarray] = None  # 1 = liver (incl. lesions) on the stage 2 grid


def prepare_case(name: str, image: Volume, labels: np.ndarray, preprocessing: dict) -> PreparedCase:
    """Resample/window one case exactly as :func:`liver_cascade.run_hybrid` does at inference.

    Stage 2's box comes from the ground-truth liver (at inference: the predicted one).
    """
    flips = pp.canonical_flips(image)
    arr = pp.apply_flips(image.array, flips)
    lab = pp.apply_flips(labels, flips)
    spacing = np.asarray(image.spacing_zyx, dtype=float)
    liver = lab > 0
    img1 = pp.stage1_input(arr, spacing, preprocessing)
    lab1 = pp.resample_mask(liver, img1.shape).astype(np.uint8)
    box = pp.stage2_box(liver, spacing, preprocessing)
    img2 = lab2 = liver2 = None
    if box is not None:
        img2 = pp.stage2_input(arr[box], spacing, preprocessing)
        lab2 = pp.resample_mask(lab[box] == 2, img2.shape).astype(np.uint8)
        liver2 = pp.resample_mask(liver[box], img2.shape)
    return PreparedCase(name, img1, lab1, img2, lab2, liver2)


class PatchSampler:
    """Random 2.5D training batches for one stage.

    Parameters
    ----------
    cases : list of PreparedCase
    stage : int
        1 (liver, coarse grid) or 2 (lesions, liver box).
    context : int
        Neighbouring slices each side (input channels ``2 * context + 1``).
    patch_size : tuple
        In-plane patch (y, x) in voxels of the stage grid.
    foreground_slice_fraction : float
        Probability of drawing a slice that contains foreground (liver / lesion).
    seed : int
    """

    def __init__(self, cases: Sequence[PreparedCase], stage: int, *, context: int = 1,
                 patch_size: Sequence[int] = (96, 96), foreground_slice_fraction: float = 0.7,
                 pos_neg: Sequence[float] = (1.0, 1.0), seed: int = 0) -> None:
        from monai.transforms import (
            Compose,
            RandCropByPosNegLabeld,
            RandFlipd,
            RandRotate90d,
            RandScaleIntensityd,
            RandShiftIntensityd,
            SpatialPadd,
        )

        self.stage = int(stage)
        self.context = int(context)
        self.rng = np.random.default_rng(seed)
        self.volumes = []
        for case in cases:
            img = case.stage1_image if self.stage == 1 else case.stage2_image
            lab = case.stage1_label if self.stage == 1 else case.stage2_label
            if img is None:
                continue
            fg = np.nonzero(lab.reshape(lab.shape[0], -1).any(axis=1))[0]
            self.volumes.append((img, lab, fg))
        if not self.volumes:
            raise InvalidInputError(f"no training case has the structures stage {stage} needs (a liver)")
        self.fg_fraction = float(foreground_slice_fraction)
        patch = tuple(int(p) for p in patch_size)
        keys = ["image", "label"]
        self.transform = Compose([
            SpatialPadd(keys, spatial_size=patch, mode="constant"),
            RandCropByPosNegLabeld(keys, label_key="label", spatial_size=patch, pos=float(pos_neg[0]),
                                   neg=float(pos_neg[1]), num_samples=1, allow_smaller=False),
            RandFlipd(keys, prob=0.5, spatial_axis=0),
            RandFlipd(keys, prob=0.5, spatial_axis=1),
            RandRotate90d(keys, prob=0.5, max_k=3),
            RandScaleIntensityd("image", factors=0.1, prob=0.5),
            RandShiftIntensityd("image", offsets=0.05, prob=0.5),
        ])
        self.transform.set_random_state(seed=seed)

    def sample(self) -> dict:
        """One patch: ``{'image': (C, Y, X) float32, 'label': (1, Y, X) int64}``."""
        img, lab, fg = self.volumes[int(self.rng.integers(len(self.volumes)))]
        if len(fg) and self.rng.random() < self.fg_fraction:
            z = int(fg[int(self.rng.integers(len(fg)))])
        else:
            z = int(self.rng.integers(img.shape[0]))
        x = pp.slabs(img, [z], self.context)[0]
        y = lab[z][None].astype(np.float32)
        with warnings.catch_warnings():
            # a background-only slice cannot give a foreground-centred crop: MONAI warns and
            # falls back to a background centre, which is what we want
            warnings.filterwarnings("ignore", message="Num foregrounds 0")
            out = self.transform({"image": x, "label": y})
        if isinstance(out, list):
            out = out[0]
        image = np.asarray(out["image"], dtype=np.float32)
        label = np.asarray(out["label"]).round().astype(np.int64)
        return {"image": image, "label": label}

    def batch(self, batch_size: int) -> tuple:
        """``(images (B, C, Y, X), labels (B, 1, Y, X))`` as torch tensors."""
        import torch

        items = [self.sample() for _ in range(batch_size)]
        return (torch.from_numpy(np.stack([i["image"] for i in items])),
                torch.from_numpy(np.stack([i["label"] for i in items])))
