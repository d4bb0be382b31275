"""Which models have confidence maps, and the class scores that fit a model's temperature.

:func:`confidence_unavailable` says why a model has no confidence map (hu-tissue and
deepbet return labels without class probabilities). :func:`calibration_samples` runs an
nnU-Net model on one labelled case and returns its class scores at a random sample of
voxels of the case's grid together with the reference labels there: what
:func:`~napari_medseg.analysis.confidence.fit_temperature` needs (``medseg calibrate``).
"""

from __future__ import annotations

from typing import Optional

__all__ = ["confidence_unavailable"]


def confidence_unavailable(model) -> str:
    """Why ``model`` has no confidence map (``""``: it has one).

    Parameters
    ----------
    model : str, Path or ModelCard
        A registry name or an nnU-Net model folder (as for ``medseg segment``).

    Returns
    -------
    str
        Empty for network models with class probabilities; else a sentence naming the
        model and the reason.
    """
    from ..inference.segment import resolve_model

    kind, target = resolve_model(model)
    if kind == "card" and target.family.no_probabilities:
        return f"{target.name}: {target.family.no_probabilities}, so it has no confidence map"
    return ""
