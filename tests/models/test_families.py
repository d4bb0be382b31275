"""Model families: one object per kind of model, and what each says about a weights folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from napari_medseg.errors import InvalidInputError
from napari_medseg.models import families as fam
from napari_medseg.models.registry import automatic_cards, get_card, list_cards


def test_every_card_has_its_family_and_each_family_is_registered_once():
    kinds = {card.kind for card in list_cards()}
    assert kinds <= set(fam.FAMILIES)
    for kind, family in fam.FAMILIES.items():
        assert family.kind == kind and fam.family_of(kind) is family
    for card in list_cards():
        assert card.family is fam.FAMILIES[card.kind]
    with pytest.raises(InvalidInputError, match="unknown model family 'nope'"):
        fam.family_of("nope")


def test_what_the_engine_may_do_comes_from_the_family():
    assert [c.name for c in automatic_cards()] == [
        c.name for c in list_cards() if c.kind in ("hu-tissue", "totalseg", "nnunet", "deepbet")]
    hu = get_card("hu-tissue").family
    assert not hu.needs_weights and hu.cpu_only and hu.hu_input
    for name in ("total-fast", "sam-med3d", "nninteractive", "hybrid-liver"):
        family = get_card(name).family
        assert family.needs_weights and not family.cpu_only and not family.hu_input
    assert not get_card("hybrid-liver").family.automatic
    assert not get_card("sam-med3d").family.automatic
    deepbet = get_card("deepbet").family
    # networks inside the installed package: nothing to download, no HU input, any device
    assert not deepbet.needs_weights and deepbet.automatic and not deepbet.hu_input
    assert not deepbet.cpu_only


def _dataset(root: Path, card) -> Path:
    d = root / card.remote_files[0].target / card.model_folder_name
    (d / "fold_0").mkdir(parents=True)
    (d / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "a": 1}}))
    (d / "plans.json").write_text("{}")
    (d / "fold_0" / "checkpoint_final.pth").write_bytes(b"x")
    return d


def test_totalseg_folder_layout(tmp_path):
    card = get_card("total-fast")
    family = card.family
    assert family.missing_in_root(card, tmp_path) and "Dataset297" in family.missing_in_root(card, tmp_path)[0]
    trained = _dataset(tmp_path, card)
    assert family.missing_in_root(card, tmp_path) == []
    # the dataset folder and the trained-model folder both lead back to the root
    assert family.explicit_root(card, trained) == (tmp_path, [])
    assert family.explicit_root(card, trained.parent) == (tmp_path, [])
    assert family.content_paths(card, tmp_path) == [trained.parent]
    assert family.import_items(card, tmp_path, Path("/x")) == [(trained.parent, Path("/x") / trained.parent.name)]
    assert "Dataset297" in family.expected_layout(card)
    # a multi-part card needs every part
    total = get_card("total")
    assert len(family.missing_in_root(total, tmp_path)) == len(total.parts)


def test_checkpoint_and_folder_families(tmp_path):
    sam = get_card("sam-med3d")
    family = sam.family
    assert family.explicit_root(sam, tmp_path / "nothing") == (tmp_path / "nothing", [f"{tmp_path / 'nothing'} does not exist"])
    assert family.missing_in_root(sam, tmp_path) == [f"{tmp_path / sam.checkpoint} is missing"]
    ckpt = tmp_path / "elsewhere" / Path(sam.checkpoint).name
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"x")
    assert family.explicit_root(sam, ckpt) == (ckpt, [])
    assert family.explicit_root(sam, ckpt.parent) == (ckpt, [])  # a folder holding it
    assert family.result_path(sam, tmp_path) == tmp_path / sam.checkpoint

    liver = get_card("hybrid-liver")
    assert liver.family.missing_in_root(liver, tmp_path / "empty") == [f"{tmp_path / 'empty'} is missing or empty"]
    (tmp_path / "trained").mkdir()
    (tmp_path / "trained" / "best.pt").write_bytes(b"x")
    assert liver.family.missing_in_root(liver, tmp_path / "trained") == []
    assert liver.family.no_download_source == "trained locally"
    assert "Checkpoint" in liver.family.gui_hint(liver, tmp_path)

    nni = get_card("nninteractive")
    missing = nni.family.missing_in_root(nni, tmp_path)
    assert len(missing) == len(nni.files) and all("is missing" in m for m in missing)
    for f in nni.files:
        (tmp_path / f.target).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f.target).write_bytes(b"x")
    assert nni.family.missing_in_root(nni, tmp_path) == []


def test_class_tables_have_one_source():
    from napari_medseg.models import hu_tissue
    from napari_medseg.models.hybrid_liver import CLASSES

    assert get_card("hu-tissue").classes == hu_tissue.CLASSES
    assert get_card("hybrid-liver").classes == CLASSES
