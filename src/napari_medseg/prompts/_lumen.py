"""Hollow viscera on CT (weights-free backend): a click in bowel or stomach content.

A bowel loop, the colon or the stomach holds mixed content: gas (-1000 HU), fluid or
contrast below it, stool (soft tissue mottled with gas specks), all inside a soft-tissue
wall a few mm thick that lies in fat. Intensity growing from one click gives one
compartment only: a click in a stool ball floating in gas gives the ball, a click in the
fluid gives the fluid without the gas above it, a click in the gas gives the gas without
the wall. The organ is the union of the compartments inside the wall, and the wall.

:func:`lumen_object` adds to the click's grown region every gas compartment that

1. is **pure gas**: its darkest tenth reaches ``PURE_GAS_HU`` on the smoothed image.
   Bowel gas is air (-1000 HU); lung parenchyma is gas mixed with tissue and blood
   (-900..-700 HU on the smoothed image), so a click in a lung, or a lung beside the
   click, never takes the lung;
2. is **enclosed**: it touches no face of the volume across the slices (the air around
   the body does; a loop cut by the first or last slice still counts) and holds at most
   ``MAX_LUMEN_ML``;
3. **belongs to the click's compartment**, which is not fat (a region of fat's value
   without gas specks: the mesentery touches every loop it surrounds; stool has fat's
   mean value but is mottled with gas): at least ``CONTACT`` of the region's surface lies
   against the gas (a stool ball in gas, the fluid under a gas level), or the click lies
   in the gas. An organ beside a loop (the liver under the colon's gas, the aorta beside
   a loop) touches it along a small part of its own surface, however much of the gas's
   surface faces it, and a region that leaked along a wall grazes the gas.

Enclosed holes of the union (gas specks in stool, fluid pockets) are filled. When the
click lies in content (not in the gas), the **wall** is added: the voxels within
``WALL_MM`` (at least one voxel) of the content that are not fat (fat lies between
``FAT_HU``; a partial-volume voxel of gas and wall is darker, the wall's soft tissue
brighter). A click in the gas gives the gas compartment: a positive correction there
then adds a region of the click's own value (the corrections read a region of mixed
value as the rim of another tissue and keep only the click).

CT only (Hounsfield units). On MR gas is a signal void like cortical bone, air outside the
body and flowing blood, with no absolute scale to tell them apart, so MR is unchanged.
Nothing here knows anatomy by name: the session sees the image, the spacing, the
modality and the clicks.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage as ndi

from .._ndimage import bbox, components_at, dilate, stepped_ball

#: gas: at or below this (HU, unsmoothed); fat (-120..-80) and stool are above it
GAS_HU = -400.0
#: a gas compartment is pure gas (not lung parenchyma) when its darkest tenth on the
#: smoothed image is at or below this (HU)
PURE_GAS_HU = -900.0
#: a lumen holds at most this much gas (ml); a larger compartment is outside air or
#: airways merged with the lungs
MAX_LUMEN_ML = 2000.0
#: a gas compartment joins the click's region when at least this fraction of the
#: region's surface lies against it (an organ beside a loop: < 0.06 measured)
CONTACT = 0.1
#: a compartment and the click's region are in contact across gaps of up to this many
#: voxels (growth stops short of a sharp border)
GAP_VOXELS = 1
#: the wall's thickness (mm, at least one voxel)
WALL_MM = 3.0
#: fat (HU): a shell voxel in this interval lies outside the wall
FAT_HU = (-150.0, -50.0)
#: a region whose darkest twentieth lies below this (HU) holds gas specks (stool)
SPECK_HU = -200.0


def lumen_object(raw: np.ndarray, smoothed: np.ndarray, spacing: Sequence[float], pos: list, neg: list,
                 grown: np.ndarray, volume_faces: Optional[Sequence[Sequence[bool]]] = None,
                 barrier: Optional[np.ndarray] = None) -> np.ndarray:
    """The hollow viscus holding the clicks' region; ``grown`` itself when no lumen joins it.

    Parameters
    ----------
    raw : numpy.ndarray
        CT intensities (HU) of the working grid.
    smoothed : numpy.ndarray
        The same, smoothed (the session's crop): the pure-gas test reads it so that
        noise in the lungs does not read as air.
    spacing : sequence of float
        Spacing of the working grid (mm, z, y, x).
    pos, neg : list of tuple
        Positive and negative clicks (indices into ``raw``).
    grown : numpy.ndarray
        The clicks' grown region (bool, same shape as ``raw``).
    volume_faces : sequence of (bool, bool), optional
        Per axis, whether the grid's low and high faces are faces of the volume (a crop's
        inner faces are not: gas reaching one is not known to be open). ``None``: every
        face is a volume face.
    barrier : numpy.ndarray, optional
        Voxels that are never part of the object (outside a box).

    Returns
    -------
    numpy.ndarray
        ``grown`` (the same object) when no gas compartment qualifies, else a new mask:
        the region, the qualifying gas, the holes between them filled, and the wall
        (when a click lies in content, not in the gas).
    """
    spacing = np.asarray(spacing, dtype=float)
    if not pos or not grown.any() or raw.shape != grown.shape:
        return grown
    # Everything about the region is computed in its bounding box (a liver's region is
    # most of the crop's cost otherwise).
    gbox = bbox(grown, pad=GAP_VOXELS + 1)
    g = grown[gbox]
    if _fat(raw[gbox][g]):
        return grown
    reach = stepped_ball((GAP_VOXELS + 0.01) * float(spacing.max()), spacing)
    gas_box = raw[gbox] <= np.float32(GAS_HU)
    if barrier is not None:
        gas_box &= ~barrier[gbox]
    near = dilate(g, reach) & gas_box
    in_gas = [p for p in pos if raw[p] <= GAS_HU and (barrier is None or not barrier[p])]
    if not near.any() and not in_gas:
        return grown
    gas = raw <= np.float32(GAS_HU)
    if barrier is not None:
        gas &= ~barrier
    labels, _ = ndi.label(gas)
    ids = set(int(i) for i in np.unique(labels[gbox][near]) if i)
    ids |= {int(labels[p]) for p in in_gas if labels[p]}
    blocked = {int(labels[n]) for n in neg if labels[n]}
    faces = volume_faces if volume_faces is not None else [(True, True)] * 3
    voxel_ml = float(np.prod(spacing)) / 1000.0
    boxes = ndi.find_objects(labels)
    shell = g & ~ndi.binary_erosion(g, border_value=1)
    n_shell = max(1, int(np.count_nonzero(shell)))
    added = np.zeros(grown.shape, dtype=bool)
    for i in sorted(ids - blocked):
        box = boxes[i - 1]
        comp = labels[box] == i
        n = int(np.count_nonzero(comp))
        if n * voxel_ml > MAX_LUMEN_ML or _open(box, grown.shape, faces):
            continue
        clicked = any(labels[p] == i for p in in_gas)
        if not clicked and _touch(comp, box, shell, gbox, reach) < CONTACT * n_shell:
            continue
        values = smoothed[box][comp]
        values = values[:: max(1, values.size // 100_000)]
        if float(np.percentile(values, 10)) > PURE_GAS_HU:
            continue  # lung parenchyma, or a partial-volume speck: not air
        added[box] |= comp
    if not added.any():
        return grown
    content = grown | added
    box = bbox(content, pad=[int(np.ceil(WALL_MM / s)) + 1 for s in spacing])
    sub = ndi.binary_fill_holes(content[box])
    if not all(gas[p] for p in pos):
        # The wall goes with the content the user clicked in. A click in the gas asks for
        # the gas compartment: a positive correction there adds the gas, whose value is
        # the click's (with a wall it would be a region of mixed value, which the
        # corrections read as the rim of another tissue).
        shell = dilate(sub, stepped_ball(max(WALL_MM, 1.01 * float(spacing.max())), spacing)) & ~sub
        r = raw[box]
        sub |= shell & ~((r > np.float32(FAT_HU[0])) & (r < np.float32(FAT_HU[1])))
    if barrier is not None:
        sub &= ~barrier[box]
    anchors = [tuple(c - b.start for c, b in zip(p, box)) for p in pos]
    sub = components_at(sub, [a for a in anchors if sub[a]])
    out = grown.copy()
    out[box] |= sub
    return out


def _fat(values: np.ndarray) -> bool:
    """Whether a region's values are fat's: its median in ``FAT_HU`` and no gas specks.

    Stool has fat's mean value too, but it is mottled with gas (its darkest twentieth
    lies below ``SPECK_HU``); fat is homogeneous. A region of fat touches every loop
    it surrounds (mesentery) and holds no lumen.
    """
    if values.size == 0:
        return False
    p5, med = np.percentile(values[:: max(1, values.size // 100_000)], [5, 50])
    return FAT_HU[0] < med < FAT_HU[1] and p5 > SPECK_HU


def _open(box: tuple, shape: tuple, faces: Sequence[Sequence[bool]]) -> bool:
    """Whether a compartment reaches a volume face across the slices (axes 1 and 2).

    The air around the body reaches the in-plane faces; a bowel loop cut by the first or
    last slice (axis 0) is still a loop.
    """
    for a in (1, 2):
        if (box[a].start == 0 and faces[a][0]) or (box[a].stop == shape[a] and faces[a][1]):
            return True
    return False


def _touch(comp: np.ndarray, box: tuple, shell: np.ndarray, gbox: tuple, reach) -> int:
    """How many of the region's surface voxels (``shell``, in ``gbox``) lie within ``reach`` of ``comp``.

    Content lies against its gas over a good part of its surface (a stool ball in gas:
    all of it; the fluid under a gas level: its top). An organ beside a loop (the liver
    under the colon's gas, the aorta beside a loop) touches it along a small part of its
    own surface, however much of the gas's surface faces it. Surface voxels within
    ``GAP_VOXELS`` of the gas count: intensity growth stops short of a sharp border (the
    smoothing spreads it).
    """
    pad = GAP_VOXELS + 1
    # only the overlap of the compartment's reach with the region's box matters
    lo = [max(b.start - pad, gb.start) for b, gb in zip(box, gbox)]
    hi = [min(b.stop + pad, gb.stop) for b, gb in zip(box, gbox)]
    if any(a >= b for a, b in zip(lo, hi)):
        return 0
    big = tuple(slice(max(0, b.start - pad), b.stop + pad) for b in box)
    c = np.zeros(tuple(s.stop - s.start for s in big), dtype=bool)
    c[tuple(slice(b.start - s.start, b.stop - s.start) for b, s in zip(box, big))] = comp
    near = dilate(c, reach)
    cut_near = near[tuple(slice(a - s.start, b - s.start) for a, b, s in zip(lo, hi, big))]
    cut_shell = shell[tuple(slice(a - gb.start, b - gb.start) for a, b, gb in zip(lo, hi, gbox))]
    return int(np.count_nonzero(cut_near & cut_shell))
