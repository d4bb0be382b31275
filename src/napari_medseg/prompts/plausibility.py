"""Is the object a click grew plausible? Echo what was clicked and warn when it is not.

A click on fat that floods into a 6.7 L "liver" is a wrong result that looks like a
result. :func:`click_report` says what the click hit (the voxel's value, in HU for CT,
with a tissue word, and its physical position) and warns when the grown object is
implausible for one click:

- it is empty, or does not contain the clicked voxel;
- its volume exceeds ``max_volume_ml`` (default 4000 mL: more than any single organ;
  a liver is 1-2.5 L, one lung up to about 3.5 L);
- it covers more than ``max_fraction`` (default 25 %) of the body (CT: voxels above
  -500 HU) or, for other images, of the image;
- it touches ``max_borders`` (default 4) or more of the image's 6 faces: it has
  probably leaked into the background or along the table.

``medseg prompt`` prints the report and adds it to ``--json``; the interactive widget
can show :meth:`ClickReport.text` after each interaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from ..errors import InvalidInputError

__all__ = ["ClickReport", "click_report", "tissue_of_hu"]

#: (upper bound in HU, tissue word) for a clicked CT voxel; the last bound is open.
_HU_TISSUES = (
    (-900.0, "air"),
    (-500.0, "lung"),
    (-190.0, "air/lung/fat boundary"),
    (-30.0, "fat"),
    (20.0, "water / fluid"),
    (150.0, "soft tissue"),  # organs, incl. contrast-enhanced liver and spleen
    (300.0, "contrast-enhanced blood"),
    (float("inf"), "bone / calcification / metal"),
)

#: Body threshold (HU) used for the "fraction of the body" on CT.
BODY_HU = -500.0


def tissue_of_hu(hu: float) -> str:
    """A tissue word for a Hounsfield value (``-100`` -> ``"fat"``)."""
    for bound, word in _HU_TISSUES:
        if hu < bound:
            return word
    return _HU_TISSUES[-1][1]


@dataclass
class ClickReport:
    """What a click hit and whether the object it grew is plausible.

    Attributes
    ----------
    point_zyx : tuple of int
        The clicked voxel (z, y, x).
    value : float
        The image value there.
    unit : str
        ``"HU"`` for CT, ``""`` otherwise.
    tissue : str
        A tissue word for CT (``"fat"``), ``""`` otherwise.
    position_mm : tuple of float
        Physical position of the voxel centre (x, y, z) in mm (LPS).
    voxels, volume_ml : int, float
        Size of the grown object.
    fraction : float
        Its share of the body (CT) or of the image (0..1).
    borders : int
        How many of the image's 6 faces it touches.
    warnings : list of str
        Why it looks implausible (empty: nothing to say).
    """

    point_zyx: tuple
    value: float
    unit: str
    tissue: str
    position_mm: tuple
    voxels: int
    volume_ml: float
    fraction: float
    borders: int
    warnings: list = field(default_factory=list)

    @property
    def plausible(self) -> bool:
        """True when there is no warning."""
        return not self.warnings

    def text(self) -> str:
        """One line about the click, then one ``warning:`` line per warning."""
        value = f"{self.value:g}{' ' + self.unit if self.unit else ''}"
        if self.tissue:
            value += f" ({self.tissue})"
        where = ", ".join(f"{v:.1f}" for v in self.position_mm)
        lines = [f"clicked voxel z,y,x = {','.join(str(int(v)) for v in self.point_zyx)}: {value} "
                 f"at x,y,z = ({where}) mm; object {self.voxels} voxels, {self.volume_ml:.1f} mL"]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready dictionary (plain Python numbers)."""
        return {
            "point_zyx": [int(v) for v in self.point_zyx],
            "value": float(self.value),
            "unit": self.unit,
            "tissue": self.tissue,
            "position_mm_xyz": [round(float(v), 3) for v in self.position_mm],
            "voxels": int(self.voxels),
            "volume_ml": round(float(self.volume_ml), 3),
            "fraction": round(float(self.fraction), 4),
            "borders_touched": int(self.borders),
            "plausible": self.plausible,
            "warnings": list(self.warnings),
        }


def _is_ct(volume, array: np.ndarray) -> bool:
    modality = (volume.modality or "").upper()
    if modality:
        return modality == "CT"
    return array.dtype.kind in "iuf" and array.size > 0 and float(array.min()) < -200.0


def click_report(volume, point_zyx: Sequence[float], mask: np.ndarray, *,
                 max_volume_ml: float = 4000.0, max_fraction: float = 0.25,
                 max_borders: int = 4) -> ClickReport:
    """Describe a click and judge the object it grew.

    Parameters
    ----------
    volume : Volume
        The image that was clicked.
    point_zyx : sequence of float
        The (first positive) click, voxel indices z, y, x; rounded to the nearest voxel.
    mask : numpy.ndarray of bool
        The object, on ``volume``'s grid.
    max_volume_ml : float
        Larger objects get a warning (default 4000 mL).
    max_fraction : float
        Objects covering more of the body (CT) or image get a warning (default 0.25).
    max_borders : int
        Objects touching this many image faces or more get a warning (default 4 of 6).

    Returns
    -------
    ClickReport
        ``text()`` for people, ``to_dict()`` for JSON.

    Raises
    ------
    InvalidInputError
        When ``mask`` is not on the volume's grid or the point lies outside it.
    """
    array = np.asarray(volume.array)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != array.shape:
        raise InvalidInputError(f"mask shape {mask.shape} differs from the image shape {array.shape}")
    idx = tuple(int(round(float(c))) for c in point_zyx)
    if len(idx) != 3 or not all(0 <= c < n for c, n in zip(idx, array.shape)):
        raise InvalidInputError(f"point {tuple(point_zyx)} lies outside the image of shape {array.shape}")
    value = float(array[idx])
    ct = _is_ct(volume, array)
    voxels = int(np.count_nonzero(mask))
    volume_ml = voxels * float(volume.voxel_volume_ml)
    if ct:
        reference = int(np.count_nonzero(array > BODY_HU))
        where = "of the body"
    else:
        reference = int(array.size)
        where = "of the image"
    fraction = voxels / reference if reference else 0.0
    faces = 0
    if voxels:
        for axis in range(3):
            for end in (0, -1):
                faces += bool(np.take(mask, end, axis=axis).any())
    warnings = []
    if not voxels:
        warnings.append("nothing was segmented: click inside the object, or try another backend")
    else:
        if not mask[idx]:
            warnings.append("the object does not contain the clicked voxel")
        if volume_ml > max_volume_ml:
            warnings.append(f"the object is {volume_ml / 1000:.1f} L, more than any single organ "
                            f"(bound {max_volume_ml / 1000:g} L): it has probably leaked")
        if fraction > max_fraction:
            warnings.append(f"the object covers {100 * fraction:.0f}% {where} (bound "
                            f"{100 * max_fraction:.0f}%): it has probably leaked")
        if faces >= max_borders:
            warnings.append(f"the object touches {faces} of the image's 6 borders: it has "
                            "probably leaked into the background")
    return ClickReport(
        point_zyx=idx, value=value, unit="HU" if ct else "", tissue=tissue_of_hu(value) if ct else "",
        position_mm=tuple(float(v) for v in volume.index_to_physical(idx)),
        voxels=voxels, volume_ml=volume_ml, fraction=fraction, borders=faces, warnings=warnings,
    )
