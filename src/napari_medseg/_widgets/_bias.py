"""The "Bias-field correction (N4)" option shared by the Interactive segmentation and
Statistics docks: off by default, offered for MR images only.

The correction itself is :func:`napari_medseg.inference.bias_field.correct_bias_field`
(cached per image in the core); this checkbox only says whether the dock asks for it.
"""

from __future__ import annotations

from qtpy.QtWidgets import QCheckBox

from ._layers import layer_volume

TEXT = "Bias-field correction (N4, MR)"

ON_TIP = ("divide out the MR coil shading (SimpleITK N4, fitted on a coarse grid) before "
          "{use}; computed once per image and kept while the image is open")


class BiasCorrectionOption(QCheckBox):
    """Checkbox enabled for an MR image layer, disabled with the reason otherwise.

    Parameters
    ----------
    use : str
        What the corrected intensities are used for (shown in the tooltip).
    """

    def __init__(self, use: str) -> None:
        super().__init__(TEXT)
        self._use = use
        self.setChecked(False)
        self.follow(None)

    def follow(self, image_layer, unavailable: str = "") -> None:
        """Offer the option for ``image_layer`` if it is MR and nothing else rules it out.

        Parameters
        ----------
        image_layer : napari Image layer or None
        unavailable : str
            A reason the dock cannot use it now (e.g. a network backend), or "".
        """
        why = unavailable or _not_offered(image_layer)
        self.setEnabled(not why)
        if why:
            self.setChecked(False)
            self.setToolTip(why)
        else:
            self.setToolTip(ON_TIP.format(use=self._use))

    @property
    def wanted(self) -> bool:
        """True when the option is offered and ticked."""
        return self.isEnabled() and self.isChecked()


def _not_offered(image_layer) -> str:
    """Why N4 is not offered for ``image_layer`` ("" when it is: a 3D MR volume)."""
    from ..errors import MedsegError
    from ..io.windows import image_modality

    if image_layer is None:
        return "pick an MR image first"
    try:
        modality = image_modality(layer_volume(image_layer))
    except MedsegError as exc:  # e.g. a 2D or RGB layer: not a volume
        return f"N4 needs a 3D MR volume: {exc}"
    if modality == "CT":
        return ("the image is CT: Hounsfield units are calibrated and have no coil shading to "
                "correct; N4 is for MR")
    if modality != "MR":
        return (f"the image's modality is {modality or 'unknown'}; N4 is for MR (set it to MR in "
                "the Window presets dock, then pick the image again)")
    return ""
