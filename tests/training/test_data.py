"""Training data: missing, mismatched or empty cases give clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.errors import InvalidInputError
from napari_medseg.io.volume import Volume


# --- bad input and faults


def _ct(shape=(6, 12, 12)):
    return np.full(shape, 100, np.int16)


# ----------------------------------------------------------------------------- training data
def _msd(tmp_path, label_values=(0, 1, 2), with_labels=True, image_names=("a.nii.gz",)):
    from napari_medseg.io import write_volume

    root = tmp_path / "data"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir(parents=True)
    for name in image_names:
        vol = Volume(_ct((4, 16, 16)))
        write_volume(vol, root / "imagesTr" / name)
        if with_labels:
            lab = np.zeros((4, 16, 16), np.uint8)
            for i, v in enumerate(label_values):
                lab[i] = v
            write_volume(vol.with_array(lab), root / "labelsTr" / name)
    return root


DATA_CASES = [
    ("no folders", lambda p: p, "imagesTr/ and labelsTr/"),
    ("no label", lambda p: _msd(p, with_labels=False), "has no label file"),
    ("bad label values", lambda p: _msd(p, label_values=(0, 1, 5)), "values \\[5\\]"),
    ("no images", lambda p: _msd(p, image_names=()), "no images"),
]


@pytest.mark.parametrize("name, make, message", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_training_data_errors(name, make, message, tmp_path):
    from napari_medseg.training.data import find_cases, read_case

    root = make(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(InvalidInputError, match=message):
        for image, label in find_cases(root):
            read_case(image, label)
    assert not out.exists()
