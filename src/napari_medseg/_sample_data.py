"""npe2 sample data: the synthetic abdominal CT phantom with its ground-truth labels.

File > Open Sample > napari-medseg > "Abdominal CT phantom (synthetic, with labels)".
The image and labels are placed in physical millimetres like any scan opened by the
reader, so every widget treats the sample exactly like real data.
"""

from __future__ import annotations

from typing import Any

from .phantom import SAMPLE_SEED

__all__ = ["SAMPLE_SEED", "make_sample_ct", "phantom_layer_tuples"]


def phantom_layer_tuples(phantom: Any, name: str = "CT phantom") -> list:
    """``[image tuple, labels tuple]`` for a :class:`~napari_medseg.phantom.Phantom`."""
    from .io.layer_data import image_layer_tuple, labels_layer_tuple

    image = image_layer_tuple(phantom.ct, name=name)
    data, kwargs, kind = labels_layer_tuple(phantom.labels, phantom.ct, phantom.label_table,
                                            name=f"{name} labels")
    kwargs["opacity"] = 0.5
    # Ground truth of the lesions (analytic ellipsoids), for validation against it.
    kwargs["metadata"]["medseg_phantom"] = {
        "seed": phantom.seed,
        "lesions": [lesion.to_dict() for lesion in phantom.lesions],
    }
    return [image, (data, kwargs, kind)]


def make_sample_ct() -> list:
    """napari sample data: the default phantom (256 x 256 x 100, 0.8 x 0.8 x 2.5 mm).

    Returns
    -------
    list of tuple
        ``[(ct, kwargs, "image"), (labels, kwargs, "labels")]``.
    """
    from .phantom import make_phantom

    return phantom_layer_tuples(make_phantom(seed=SAMPLE_SEED))
