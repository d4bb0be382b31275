"""The weights-free default on an MR volume with its bias field corrected (N4) first.

:class:`BiasCorrectedRegionGrowing` is :class:`~napari_medseg.prompts.region_growing.RegionGrowingSession`
whose per-volume preparation runs on
:func:`~napari_medseg.inference.bias_field.correct_bias_field`'s output: the intensity
interval of a click then describes the tissue, not the tissue times the coil's shading
at that place. The session's :attr:`volume` stays the image as given (the mask is on its
grid; the click report reads its values); only the intensities the region grows on are
corrected. The correction is cached per volume, so a new session on the same image (a
new object, another backend switch) does not recompute it.

Build it with ``make_session("region-growing", bias_correct=True)``.
"""

from __future__ import annotations

from typing import Optional

from ..inference.bias_field import BiasFieldSettings, correct_bias_field
from ..io.volume import Volume
from ..progress import CancelLike, ProgressCallback, sub_progress
from .region_growing import RegionGrowingSession


class BiasCorrectedRegionGrowing(RegionGrowingSession):
    """Region growing on the N4 bias-corrected intensities of an MR volume.

    Parameters
    ----------
    bias_settings : BiasFieldSettings, optional
        How N4 runs (default :class:`~napari_medseg.inference.bias_field.BiasFieldSettings`).
    **kwargs
        Passed to :class:`~napari_medseg.prompts.region_growing.RegionGrowingSession`.

    Raises
    ------
    InvalidInputError
        From :meth:`set_volume`, for a CT volume (bias correction is for MR).
    """

    name = "region-growing (N4 bias-corrected)"

    def __init__(self, bias_settings: Optional[BiasFieldSettings] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.bias_settings = BiasFieldSettings() if bias_settings is None else bias_settings

    def _prepare(self, volume: Volume, progress: Optional[ProgressCallback],
                 cancel: Optional[CancelLike]) -> None:
        corrected = correct_bias_field(volume, self.bias_settings,
                                       progress=sub_progress(progress, 0.0, 0.8), cancel=cancel)
        super()._prepare(corrected, sub_progress(progress, 0.8, 1.0), cancel)
