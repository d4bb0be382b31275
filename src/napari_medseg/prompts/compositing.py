"""Compositing one interactive object into a label map that holds other objects.

A promptable session (:class:`~napari_medseg.prompts.base.PromptSession`) answers
each interaction with the current object's boolean mask and the box that changed.
An :class:`ObjectCompositor` turns that into the voxels to write into the label
map the caller owns (nnInteractive's "target buffer": the session never touches
the labels, the caller writes what the compositor says, e.g. with napari's
undoable ``Labels.data_setitem``).

The rules, per voxel of the changed box:

* inside the mask and writable -> the object's id. Writable means background or
  already this object, or any voxel when ``allow_overwrite`` is set: other labels
  are never overwritten unless allowed;
* outside the mask but holding the object's id -> what the voxel was when the
  object was started (its *base*): when the object shrinks (negative click, undo,
  reset), overwritten voxels get their label back;
* anything else keeps its current value (edits made meanwhile survive).

The base is snapshotted lazily, box by box, the first time a region is touched:
voxels outside every box seen so far cannot hold the object yet, so their current
value *is* their base, and memory stays proportional to the object's extent
rather than to the whole volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .._ndimage import union_box
from ..errors import InvalidInputError

__all__ = ["ObjectCompositor", "Write"]


@dataclass(frozen=True)
class Write:
    """Voxels to write into the label map: ``labels[index] = values``.

    ``index`` is a tuple of three integer arrays (full-grid voxel indices, the form
    ``Labels.data_setitem`` takes), ``values`` the new ids in the label map's dtype.
    """

    index: tuple
    values: np.ndarray

    @property
    def count(self) -> int:
        """Number of voxels that change."""
        return int(self.values.size)

    def apply(self, labels: np.ndarray) -> None:
        """Write into ``labels`` in place (for callers without an undo history)."""
        if self.count:
            labels[self.index] = self.values


def _clip_box(box: tuple, shape: tuple) -> Optional[tuple]:
    out = []
    for s, n in zip(box, shape):
        start = max(0, int(s.start or 0))
        stop = min(int(n), int(n if s.stop is None else s.stop))
        if stop <= start:
            return None
        out.append(slice(start, stop))
    return tuple(out)


def _inner(outer: tuple, inner: tuple) -> tuple:
    """``inner`` (full-grid slices) relative to ``outer``'s origin."""
    return tuple(slice(i.start - o.start, i.stop - o.start) for o, i in zip(outer, inner))


class ObjectCompositor:
    """Writes one object's successive masks into a label map, keeping other labels safe.

    Parameters
    ----------
    label_id : int
        The object's id (> 0).
    refine : bool
        The object starts from the existing voxels of ``label_id`` (refining a label):
        its base then has those voxels as background, so voxels a negative click
        removes become background instead of coming back.

    Examples
    --------
    >>> labels = np.zeros((4, 4, 4), np.uint8); labels[0] = 7
    >>> comp = ObjectCompositor(2)
    >>> mask = np.zeros(labels.shape, bool); mask[:2] = True
    >>> comp.compose(labels, mask).apply(labels)
    >>> int((labels == 2).sum()), int((labels == 7).sum())
    (16, 16)
    """

    def __init__(self, label_id: int, *, refine: bool = False) -> None:
        label_id = int(label_id)
        if label_id <= 0:
            raise InvalidInputError(f"an object needs a label id > 0 (0 is the background), got {label_id}")
        self.label_id = label_id
        self.refine = bool(refine)
        self._box: Optional[tuple] = None  # full-grid region whose base is known
        self._base: Optional[np.ndarray] = None  # labels in self._box when first seen
        self._shape: Optional[tuple] = None

    @property
    def started(self) -> bool:
        """True once a region of the label map has been snapshotted."""
        return self._box is not None

    @property
    def base_box(self) -> Optional[tuple]:
        """The region (tuple of slices) whose pre-object labels are kept, or None."""
        return self._box

    def base(self, box: tuple) -> np.ndarray:
        """Labels of ``box`` as they were before the object (only inside :attr:`base_box`)."""
        if self._box is None or any(b.start < o.start or b.stop > o.stop for b, o in zip(box, self._box)):
            raise InvalidInputError("that region was never touched by this object")
        return self._base[_inner(self._box, box)]

    def _check(self, labels: np.ndarray) -> None:
        if labels.ndim != 3 or labels.dtype.kind not in "ui":
            raise InvalidInputError(
                f"the label map must be a 3D integer array, got shape {labels.shape} dtype {labels.dtype}")
        if self._shape is None:
            self._shape = tuple(labels.shape)
        elif tuple(labels.shape) != self._shape:
            raise InvalidInputError(
                f"the label map changed shape ({self._shape} -> {tuple(labels.shape)}) while object "
                f"{self.label_id} was being drawn; start a new object")
        if self.label_id > np.iinfo(labels.dtype).max:
            raise InvalidInputError(
                f"label id {self.label_id} does not fit the label map's dtype {labels.dtype} "
                f"(max {np.iinfo(labels.dtype).max}); widen the label map to a larger "
                "integer dtype first or pick a smaller id")

    def _capture(self, labels: np.ndarray, box: tuple) -> None:
        """Make sure the base of ``box`` is known (snapshot the parts not seen yet)."""
        union = union_box(self._box, box)
        if self._box is not None and union == self._box:
            return
        fresh = np.array(labels[union], copy=True)
        if self.refine:
            # a refined label's own voxels are the object, not its background
            fresh[fresh == self.label_id] = 0
        if self._box is not None:
            fresh = fresh.astype(np.result_type(fresh.dtype, self._base.dtype), copy=False)
            fresh[_inner(union, self._box)] = self._base
        self._box, self._base = union, fresh

    def compose(self, labels: np.ndarray, mask: np.ndarray, changed: Optional[tuple] = None,
                *, allow_overwrite: bool = False) -> Write:
        """The voxels to write so that ``labels`` shows the object as ``mask``.

        Parameters
        ----------
        labels : numpy.ndarray
            The label map as it is now (z, y, x integers; not modified).
        mask : numpy.ndarray
            The object's full-grid boolean mask (e.g. ``Update.mask``).
        changed : tuple of slice, optional
            The box where ``mask`` may differ from the previous call (``Update.changed``);
            default the whole grid.
        allow_overwrite : bool
            Let the object take voxels of other labels (they come back when it shrinks).

        Returns
        -------
        Write
            Indices and values of the voxels that change (empty when none do).
        """
        self._check(labels)
        if tuple(mask.shape) != tuple(labels.shape):
            raise InvalidInputError(f"the object's mask {mask.shape} is not on the label map's grid {labels.shape}")
        box = _clip_box(changed if changed is not None else tuple(slice(0, n) for n in labels.shape), labels.shape)
        if box is None:
            return _empty(labels.dtype)
        self._capture(labels, box)
        base = self.base(box)
        current = np.asarray(labels[box])
        inside = np.asarray(mask[box], dtype=bool)
        label = self.label_id
        mine = current == label
        if allow_overwrite:
            take = inside
        else:
            take = inside & ((current == 0) | mine)
        # voxels the object gives up get their pre-object value back
        give_back = ~inside & mine & (base != label)
        desired = current.copy()
        desired[take] = label
        desired[give_back] = base[give_back]
        return _diff(current, desired, box)

    def remove(self, labels: np.ndarray) -> Write:
        """The voxels to write to take the object out again (reset): each gets its base value."""
        self._check(labels)
        if self._box is None:
            return _empty(labels.dtype)
        box = self._box
        current = np.asarray(labels[box])
        base = self._base
        give_back = (current == self.label_id) & (base != self.label_id)
        desired = current.copy()
        desired[give_back] = base[give_back]
        return _diff(current, desired, box)


def _empty(dtype) -> Write:
    empty = np.zeros(0, dtype=np.intp)
    return Write((empty, empty, empty), np.zeros(0, dtype=dtype))


def _diff(current: np.ndarray, desired: np.ndarray, box: tuple) -> Write:
    diff = desired != current
    if not diff.any():
        return _empty(current.dtype)
    index = tuple(i + s.start for i, s in zip(np.nonzero(diff), box))
    return Write(index, desired[diff].astype(current.dtype, copy=False))
