"""LabelTable API, default colours and sidecar paths."""

import json

import pytest

from napari_medseg.errors import InvalidInputError
from napari_medseg.io import LabelTable, default_color, read_sidecar, sidecar_path


def test_from_names_and_queries():
    t = LabelTable.from_names({2: "liver_lesion", 0: "background", 1: "liver"})
    assert t.names == {1: "liver", 2: "liver_lesion"}  # background dropped, sorted
    assert t.ids == [1, 2] and len(t) == 2 and 1 in t and 0 not in t
    assert t.name_of(1) == "liver" and t.name_of(0) == "background" and t.name_of(9) == "label 9"
    assert t.id_of("Liver") == 1
    with pytest.raises(KeyError, match="no label called 'spleen'; known: liver, liver_lesion"):
        t.id_of("spleen")


def test_color_dict_is_napari_ready():
    t = LabelTable.from_names({1: "liver", 3: "spleen"})
    cd = t.color_dict()
    assert None in cd and cd[0] == (0.0, 0.0, 0.0, 0.0)
    assert cd[None][3] == 1.0  # unlisted ids stay visible
    assert set(cd) == {None, 0, 1, 3}
    assert all(len(c) == 4 and all(0 <= v <= 1 for v in c) for c in cd.values())
    from napari.utils.colormaps import DirectLabelColormap

    DirectLabelColormap(color_dict=cd)  # accepted as is


def test_features_have_index_and_name():
    t = LabelTable.from_names({1: "liver", 3: "spleen"})
    assert t.features() == {"index": [0, 1, 3], "name": ["background", "liver", "spleen"]}


def test_default_colours_are_deterministic_and_distinct():
    colours = [default_color(i) for i in range(1, 120)]
    assert colours == [default_color(i) for i in range(1, 120)]
    assert len(set(colours)) == len(colours)
    # neighbouring ids differ clearly
    for a, b in zip(colours, colours[1:]):
        assert max(abs(x - y) for x, y in zip(a[:3], b[:3])) > 0.2


def test_dict_round_trip_and_derivations():
    t = LabelTable.from_names({1: "liver"}, colors={1: "#ff0000"})
    assert t.color_of(1) == (1.0, 0.0, 0.0, 1.0)
    t2 = t.with_label(4, "kidney", (0, 0, 255))
    assert t2.color_of(4) == (0.0, 0.0, 1.0, 1.0) and 4 not in t  # t unchanged
    assert LabelTable.from_dict(json.loads(json.dumps(t2.to_dict()))) == t2
    assert t2.without(1).names == {4: "kidney"}
    assert t2.with_label(1, "Liver").color_of(1) == (1.0, 0.0, 0.0, 1.0)  # colour kept on rename
    assert LabelTable.from_dict({"1": "liver", "2": "lesion"}).names == {1: "liver", 2: "lesion"}


@pytest.mark.parametrize("bad,match", [
    ({-1: "x"}, "label ids must be >= 0"),
    ({1.5: "x"}, "label ids must be integers"),
    ({"one": "x"}, "label ids must be integers"),
])
def test_bad_ids(bad, match):
    with pytest.raises(InvalidInputError, match=match):
        LabelTable.from_names(bad)


def test_bad_colour():
    with pytest.raises(InvalidInputError, match="colour of label 1 must be 3 or 4 numbers"):
        LabelTable.from_names({1: "a"}, colors={1: (1, 2)})
    with pytest.raises(InvalidInputError, match="id 0 is background"):
        LabelTable().with_label(0, "x")


@pytest.mark.parametrize("name,expected", [
    ("labels.nii.gz", "labels.json"), ("labels.nii", "labels.json"), ("a.seg.nrrd", "a.json"),
    ("a.nrrd", "a.json"), ("a.mhd", "a.json"), ("a.mha", "a.json"), ("a.b.nhdr", "a.b.json"),
    ("noext", "noext.json"), ("x.tif", "x.json"),
])
def test_sidecar_path(tmp_path, name, expected):
    assert sidecar_path(tmp_path / name) == tmp_path / expected


def test_read_sidecar_ignores_foreign_json_and_rejects_broken_ours(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "Dataset001"}))
    assert read_sidecar(tmp_path / "dataset.json") is None
    assert read_sidecar(tmp_path / "absent.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InvalidInputError, match=r"bad.json is not valid JSON"):
        read_sidecar(tmp_path / "bad.json")
    (tmp_path / "bad2.json").write_text(json.dumps({"labels": [{"name": "no id"}]}))
    with pytest.raises(InvalidInputError, match=r"bad2.json: label table entry without an 'id'"):
        read_sidecar(tmp_path / "bad2.json")


def test_from_features_round_trip():
    import pandas as pd

    t = LabelTable.from_names({1: "liver", 2: "lesion"})
    df = pd.DataFrame(t.features())
    assert LabelTable.from_features(df).names == t.names
    assert LabelTable.from_features(pd.DataFrame()) is None
    assert LabelTable.from_features(None) is None


def test_xml_parser_edge_cases():
    from napari_medseg.io.label_names import parse_label_table_xml

    xml = b'<?xml version="1.0"?><LabelTable><Label Key="0">bg</Label><Label Key="3" Red="1" Green="0" Blue="0" Alpha="1"><![CDATA[liver]]></Label><Label Key="x">bad</Label></LabelTable>\x00\x00'
    t = parse_label_table_xml(xml)
    assert t.names == {3: "liver"} and t.color_of(3) == (1.0, 0.0, 0.0, 1.0)
    assert parse_label_table_xml(b"<a/>") is None
    with pytest.warns(UserWarning, match="unreadable XML label table"):
        assert parse_label_table_xml(b"<LabelTable><Label") is None
