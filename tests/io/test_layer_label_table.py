"""io.layer_data.layer_label_table: the one reader of a layer's class table (no napari)."""

import numpy as np

from napari_medseg.io.label_table import LabelTable
from napari_medseg.io.layer_data import layer_label_table


def _state(table, hidden_alpha=None, features=None):
    colors = table.color_dict()
    if hidden_alpha is not None:
        r, g, b, _ = colors[hidden_alpha]
        colors[hidden_alpha] = (r, g, b, 0.0)

    class Colormap:
        color_dict = colors

    return {"metadata": {"medseg_label_table": table.to_dict()},
            "features": features if features is not None else table.features(), "colormap": Colormap()}


def test_recorded_table_wins_and_keeps_provenance_and_hidden_colours():
    table = LabelTable.from_names({1: "liver", 2: "spleen"}).with_provenance("AUTOMATIC", "total")
    got = layer_label_table(_state(table, hidden_alpha=2))
    assert got.to_dict() == table.to_dict()
    assert got.color_of(2)[3] == 1.0  # hidden in the colormap only


def test_names_edited_in_napari_features_are_read_and_new_rows_added():
    table = LabelTable.from_names({1: "liver", 2: "spleen"}).with_provenance("AUTOMATIC", "total")
    features = {"index": [0, 1, 2, 7], "name": ["background", "hepar", "spleen", "marker"]}
    got = layer_label_table(_state(table, features=features))
    assert got.names == {1: "hepar", 2: "spleen", 7: "marker"}
    assert got.color_of(1) == table.color_of(1) and got.algorithm_of(2) == ("AUTOMATIC", "total")


def test_without_a_table_ids_present_are_named_or_none():
    data = np.zeros((2, 3, 3), np.uint8)
    data[0, 0, 0], data[1, 1, 1] = 3, 4
    assert layer_label_table({}, data).names == {3: "label 3", 4: "label 4"}
    assert layer_label_table({}) is None
    broken = {"metadata": {"medseg_label_table": {"labels": "not a list"}}}
    assert layer_label_table(broken, data).names == {3: "label 3", 4: "label 4"}
