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


# ------------------------------------------------------------------ MR cards
#: ``class_map["total_mr"]`` of TotalSegmentator 2.18.0's map_to_binary.py, as it names the
#: 50 output files of ``TotalSegmentator --task total_mr`` (ids in file order).
_TOTAL_MR_OUTPUT_NAMES = (
    "spleen kidney_right kidney_left gallbladder liver stomach pancreas adrenal_gland_right "
    "adrenal_gland_left lung_left lung_right esophagus small_bowel duodenum colon "
    "urinary_bladder prostate sacrum vertebrae intervertebral_discs spinal_cord heart aorta "
    "inferior_vena_cava portal_vein_and_splenic_vein iliac_artery_left iliac_artery_right "
    "iliac_vena_left iliac_vena_right humerus_left humerus_right scapula_left scapula_right "
    "clavicula_left clavicula_right femur_left femur_right hip_left hip_right "
    "gluteus_maximus_left gluteus_maximus_right gluteus_medius_left gluteus_medius_right "
    "gluteus_minimus_left gluteus_minimus_right autochthon_left autochthon_right "
    "iliopsoas_left iliopsoas_right brain").split()


def test_total_mr_has_the_50_totalsegmentator_output_names_in_order():
    assert len(tsc.TOTAL_MR) == 50
    assert [tsc.TOTAL_MR[i] for i in range(1, 51)] == _TOTAL_MR_OUTPUT_NAMES
    # anchors a reader can check against TotalSegmentator's README table
    assert tsc.TOTAL_MR[5] == "liver" and tsc.TOTAL_MR[19] == "vertebrae" and tsc.TOTAL_MR[50] == "brain"


def test_total_mr_parts_cover_the_task_exactly_once_and_map_by_name():
    names = [n for _, c in tsc.TOTAL_MR_PARTS.values() for n in c.values()]
    assert sorted(names) == sorted(tsc.TOTAL_MR.values()) and len(names) == len(set(names))
    organs, muscles = tsc.part_to_global(850), tsc.part_to_global(851)
    assert organs[5] == 5 and organs[29] == 29  # liver; iliac_vena_right
    assert muscles[1] == 30 and muscles[21] == 50  # humerus_left; brain
    # the CT parts still map to the 117-class ids
    assert tsc.part_to_global(291)[10] == tsc.global_id("lung_upper_lobe_left") == 10


@pytest.mark.parametrize("name,datasets,trainer,spacing", [
    ("total-mr", [850, 851], "nnUNetTrainer_2000epochs_NoMirroring", 1.5),
    ("total-mr-fast", [852], "nnUNetTrainer_2000epochs_NoMirroring", 3.0),
    ("total-mr-fastest", [853], "nnUNetTrainer_2000epochs_NoMirroring", 6.0),
    ("body-mr", [597], "nnUNetTrainer_DASegOrd0", 1.5),
    ("vertebrae-mr", [756], "nnUNetTrainer_DASegOrd0_NoMirroring", 1.5),
])
def test_mr_cards_datasets_trainers_and_urls(name, datasets, trainer, spacing):
    card = get_card(name)
    assert card.kind == "totalseg" and card.trainer == trainer
    assert card.spacing[-1] == spacing
    assert [int(u.rsplit("/Dataset", 1)[1][:3]) for u in card.urls] == datasets
    assert all(u.startswith(
        "https://github.com/wasserth/TotalSegmentator/releases/download/v2.5.0-weights/")
        for u in card.urls)
    assert not card.family.hu_input and "MRI" in card.citation


def test_mr_cropped_cards_find_the_liver_with_the_3mm_mr_model():
    for name, n in (("liver-segments-mr", 8), ("liver-lesions-mr", 1)):
        card = get_card(name)
        assert card.crop == ("liver",) and card.crop_model == "total-mr-fast"
        assert len(card.classes) == n
        assert "liver" in get_card(card.crop_model).classes.values()
    assert get_card("total-mr").crop_model == "total-mr-fast"


def test_licensed_mr_tasks_have_no_card():
    names = {c.name for c in list_cards()}
    for licensed in ("appendicular-bones-mr", "tissue-types-mr", "face-mr",
                     "thigh-shoulder-muscles-mr"):
        assert licensed not in names


def test_roi_subset_names_are_checked_against_the_mr_map():
    from napari_medseg.inference.segment import check_segment_options

    _, _, roi = check_segment_options("total-mr", roi_subset=["Liver", "iliopsoas-left"])
    assert roi == ["liver", "iliopsoas_left"]
    with pytest.raises(InvalidInputError, match="lung_upper_lobe_left"):
        check_segment_options("total-mr", roi_subset=["lung_upper_lobe_left"])  # CT-only name
