"""Class bookkeeping: relabel, rename and delete with the label table."""

import numpy as np
import pytest

from napari_medseg.editing import delete_class, next_free_id, recolor_class, relabel, rename_class
from napari_medseg.errors import InvalidInputError
from napari_medseg.io.label_table import LabelTable


def test_relabel_rename_delete_with_table():
    a = np.zeros((1, 2, 2), np.uint8)
    a[0, 0] = 1
    a[0, 1, 0] = 2
    t = LabelTable.from_names({1: "liver", 2: "spleen"})
    out, t2 = relabel(a, 1, 7, t)
    assert (out == 7).sum() == 2 and t2.name_of(7) == "liver" and 1 not in t2
    assert t2.color_of(7) == t.color_of(1)
    with pytest.raises(InvalidInputError, match="label 2 is already in use .spleen"):
        relabel(a, 1, 2, t)
    merged, t3 = relabel(a, 1, 2, t, merge=True)
    assert (merged == 2).sum() == 3 and t3.name_of(2) == "spleen" and 1 not in t3
    assert rename_class(t, 2, " Spleen ").name_of(2) == "Spleen"
    assert recolor_class(t, 2, (1, 0, 0)).color_of(2) == (1.0, 0.0, 0.0, 1.0)
    d, t4 = delete_class(a, 2, t)
    assert (d == 2).sum() == 0 and 2 not in t4 and t4.name_of(1) == "liver"
    assert next_free_id(a, t.with_label(9, "x")) == 10
