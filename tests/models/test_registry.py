"""Model cards: TotalSegmentator class maps and ids, part mappings, card contents."""

from __future__ import annotations

import gzip
import re
import struct

import pytest

from napari_medseg.errors import InvalidInputError
from napari_medseg.models import totalseg_classes as tsc
from napari_medseg.models.registry import get_card, list_cards


def test_total_has_117_classes_with_published_anchor_ids():
    assert len(tsc.TOTAL) == 117
    assert sorted(tsc.TOTAL) == list(range(1, 118))
    anchors = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver", 6: "stomach",
               52: "aorta", 79: "spinal_cord", 90: "brain", 116: "sternum",
               117: "costal_cartilages"}
    for idx, name in anchors.items():
        assert tsc.TOTAL[idx] == name


def _xml_label_names(path) -> dict:
    """Read the label names from a NIfTI-1 header extension (TotalSegmentator's XML)."""
    raw = gzip.open(path).read(1 << 20)
    vox_offset = int(struct.unpack("<f", raw[108:112])[0])
    assert raw[348] == 1, "no header extension"
    text = raw[352:vox_offset].decode("utf-8", "replace")
    return {int(k): v for k, v in re.findall(r'Key="(\d+)".*?CDATA\[(.*?)\]', text)}


@pytest.mark.shared_data
def test_total_names_match_the_xml_in_totalsegmentator_output(shared_data):
    names = _xml_label_names(shared_data / "totalseg_example" / "example_seg.nii.gz")
    assert names == tsc.TOTAL


def test_five_parts_cover_total_exactly_once():
    seen = []
    for dataset_id, (_, classes) in tsc.TOTAL_PARTS.items():
        assert sorted(classes) == list(range(1, len(classes) + 1))
        seen.extend(classes.values())
    assert sorted(seen) == sorted(tsc.TOTAL.values())
    assert len(seen) == len(set(seen))
    assert [len(c) for _, c in tsc.TOTAL_PARTS.values()] == [24, 26, 18, 23, 26]


def test_part_to_global_maps_by_name():
    organs = tsc.part_to_global(291)
    assert organs[5] == 5  # liver keeps its id
    cardiac = tsc.part_to_global(293)
    assert cardiac[2] == 52  # cardiac part's aorta is global 52
    ribs = tsc.part_to_global(295)
    assert ribs[25] == 116 and ribs[26] == 117
    vert = tsc.part_to_global(292)
    assert vert[1] == 25 and vert[26] == 50
    assert tsc.part_of("vertebrae_L1") == 292


def test_total_card_parts_and_dataset_ids():
    card = get_card("total")
    assert [p.dataset_id for p in card.parts] == [291, 292, 293, 294, 295]
    assert [p.name for p in card.parts] == ["organs", "vertebrae", "cardiac", "muscles", "ribs"]
    assert card.trainer == "nnUNetTrainerNoMirroring"
    assert card.model_folder_name == "nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres"
    assert all(u.startswith("https://github.com/wasserth/TotalSegmentator/releases/download/")
               for u in card.urls)
    assert "Dataset292_TotalSegmentator_part2_vertebrae_1532subj.zip" in card.urls[1]
    assert card.spacing == (1.5, 1.5, 1.5)


@pytest.mark.parametrize("name, dataset, spacing", [
    ("total-fast", "Dataset297_TotalSegmentator_total_3mm_1559subj", (3.0, 3.0, 3.0)),
    ("total-fastest", "Dataset298_TotalSegmentator_total_6mm_1559subj", (6.0, 6.0, 6.0)),
])
def test_fast_cards(name, dataset, spacing):
    card = get_card(name)
    assert card.classes == tsc.TOTAL
    assert card.trainer == "nnUNetTrainer_4000epochs_NoMirroring"
    assert card.files[0].target == dataset and card.files[0].archive
    assert card.spacing == spacing


def test_liver_cards():
    vessels = get_card("liver-vessels")
    assert vessels.classes == {1: "liver_vessels", 2: "liver_tumor"}
    assert vessels.crop == ("liver",) and vessels.crop_model == "total-fastest"
    assert "Dataset008_HepaticVessel" in vessels.urls[0]
    lesions = get_card("liver_lesions")  # underscore alias
    assert lesions.configuration == "3d_fullres_high"
    assert "Dataset591_ct_liver_lesions_842subj" in lesions.urls[0]


def test_sam_and_other_cards():
    turbo = get_card("sam-med3d-turbo")
    assert turbo.urls[0].endswith("/sam_med3d_turbo.pth") and turbo.urls[0].startswith("https://huggingface.co/")
    assert get_card("sam-med3d").checkpoint == "sam_med3d.pth"
    for ds in ("kits", "pancreas", "lits", "colon"):
        card = get_card(f"3dsam-adapter-{ds}")
        assert card.kind == "3dsam-adapter" and not card.downloadable
    assert get_card("nninteractive").checkpoint == "fold_0/checkpoint_final.pth"
    hybrid = get_card("hybrid-liver")
    assert not hybrid.downloadable and "medseg train liver-lesion" in hybrid.notes
    assert get_card("hu-tissue").needs_weights is False


def test_every_card_is_https_and_named_uniquely():
    cards = list_cards()
    assert len({c.name for c in cards}) == len(cards)
    for card in cards:
        for url in card.urls:
            assert url.startswith("https://"), (card.name, url)
        assert card.licence, card.name


def test_unknown_model_suggests_close_names():
    with pytest.raises(InvalidInputError, match=r"did you mean 'total-fast'"):
        get_card("total-fats")
