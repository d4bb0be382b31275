"""Class maps published by TotalSegmentator v2 (ids and names exactly as it writes them).

Sources: TotalSegmentator's ``totalsegmentator/map_to_binary.py`` (``class_map["total"]``,
``class_map_5_parts``, ``class_map["liver_vessels"]``) and its task registry
(``liver_lesions``). The ``total`` map is also what TotalSegmentator stores in the XML
NIfTI header extension of its multi-label output; a test checks the two agree.

The ``total`` task runs five part models (datasets 291-295); each predicts its own local
ids 1..n, mapped to the global ``total`` ids by name (:func:`part_to_global`). The fast
(3 mm, dataset 297) and fastest (6 mm, dataset 298) models predict the global ``total``
ids directly.

Anatomical codes: TotalSegmentator publishes the DICOM-SEG coding of its classes (SNOMED CT
property category, type and modifier, and an anatomic region for lesions) in
``totalsegmentator/resources/totalsegmentator_snomed_mapping.csv`` (Apache-2.0; copied
unchanged to ``napari_medseg/resources/``). :func:`anatomical_code` reads it, by class name;
:func:`automatic_table` builds the label table of an automatic model's output with those
codes and ``AUTOMATIC`` provenance. A class the file does not list (e.g. ``liver_lesions``)
gets no code and is written with the generic "Tissue" code: codes are never guessed.
"""

from __future__ import annotations

import functools
from typing import Mapping, Optional

#: TotalSegmentator v2 ``total`` task: 117 classes (also used by total-fast/-fastest).
TOTAL: dict[int, str] = {
    1: "spleen",
    2: "kidney_right",
    3: "kidney_left",
    4: "gallbladder",
    5: "liver",
    6: "stomach",
    7: "pancreas",
    8: "adrenal_gland_right",
    9: "adrenal_gland_left",
    10: "lung_upper_lobe_left",
    11: "lung_lower_lobe_left",
    12: "lung_upper_lobe_right",
    13: "lung_middle_lobe_right",
    14: "lung_lower_lobe_right",
    15: "esophagus",
    16: "trachea",
    17: "thyroid_gland",
    18: "small_bowel",
    19: "duodenum",
    20: "colon",
    21: "urinary_bladder",
    22: "prostate",
    23: "kidney_cyst_left",
    24: "kidney_cyst_right",
    25: "sacrum",
    26: "vertebrae_S1",
    27: "vertebrae_L5",
    28: "vertebrae_L4",
    29: "vertebrae_L3",
    30: "vertebrae_L2",
    31: "vertebrae_L1",
    32: "vertebrae_T12",
    33: "vertebrae_T11",
    34: "vertebrae_T10",
    35: "vertebrae_T9",
    36: "vertebrae_T8",
    37: "vertebrae_T7",
    38: "vertebrae_T6",
    39: "vertebrae_T5",
    40: "vertebrae_T4",
    41: "vertebrae_T3",
    42: "vertebrae_T2",
    43: "vertebrae_T1",
    44: "vertebrae_C7",
    45: "vertebrae_C6",
    46: "vertebrae_C5",
    47: "vertebrae_C4",
    48: "vertebrae_C3",
    49: "vertebrae_C2",
    50: "vertebrae_C1",
    51: "heart",
    52: "aorta",
    53: "pulmonary_vein",
    54: "brachiocephalic_trunk",
    55: "subclavian_artery_right",
    56: "subclavian_artery_left",
    57: "common_carotid_artery_right",
    58: "common_carotid_artery_left",
    59: "brachiocephalic_vein_left",
    60: "brachiocephalic_vein_right",
    61: "atrial_appendage_left",
    62: "superior_vena_cava",
    63: "inferior_vena_cava",
    64: "portal_vein_and_splenic_vein",
    65: "iliac_artery_left",
    66: "iliac_artery_right",
    67: "iliac_vena_left",
    68: "iliac_vena_right",
    69: "humerus_left",
    70: "humerus_right",
    71: "scapula_left",
    72: "scapula_right",
    73: "clavicula_left",
    74: "clavicula_right",
    75: "femur_left",
    76: "femur_right",
    77: "hip_left",
    78: "hip_right",
    79: "spinal_cord",
    80: "gluteus_maximus_left",
    81: "gluteus_maximus_right",
    82: "gluteus_medius_left",
    83: "gluteus_medius_right",
    84: "gluteus_minimus_left",
    85: "gluteus_minimus_right",
    86: "autochthon_left",
    87: "autochthon_right",
    88: "iliopsoas_left",
    89: "iliopsoas_right",
    90: "brain",
    91: "skull",
    92: "rib_left_1",
    93: "rib_left_2",
    94: "rib_left_3",
    95: "rib_left_4",
    96: "rib_left_5",
    97: "rib_left_6",
    98: "rib_left_7",
    99: "rib_left_8",
    100: "rib_left_9",
    101: "rib_left_10",
    102: "rib_left_11",
    103: "rib_left_12",
    104: "rib_right_1",
    105: "rib_right_2",
    106: "rib_right_3",
    107: "rib_right_4",
    108: "rib_right_5",
    109: "rib_right_6",
    110: "rib_right_7",
    111: "rib_right_8",
    112: "rib_right_9",
    113: "rib_right_10",
    114: "rib_right_11",
    115: "rib_right_12",
    116: "sternum",
    117: "costal_cartilages",
}

#: The five part models of ``total`` at 1.5 mm: dataset id -> (part name, local classes).
#: Local ids are 1..n in the order listed (TotalSegmentator's ``class_map_5_parts``).
_PART_ORGANS = [
    "spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "pancreas",
    "adrenal_gland_right", "adrenal_gland_left", "lung_upper_lobe_left", "lung_lower_lobe_left",
    "lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right", "esophagus",
    "trachea", "thyroid_gland", "small_bowel", "duodenum", "colon", "urinary_bladder",
    "prostate", "kidney_cyst_left", "kidney_cyst_right",
]
_PART_VERTEBRAE = ["sacrum", "vertebrae_S1"] + [f"vertebrae_L{i}" for i in range(5, 0, -1)] + [
    f"vertebrae_T{i}" for i in range(12, 0, -1)] + [f"vertebrae_C{i}" for i in range(7, 0, -1)]
_PART_CARDIAC = [
    "heart", "aorta", "pulmonary_vein", "brachiocephalic_trunk", "subclavian_artery_right",
    "subclavian_artery_left", "common_carotid_artery_right", "common_carotid_artery_left",
    "brachiocephalic_vein_left", "brachiocephalic_vein_right", "atrial_appendage_left",
    "superior_vena_cava", "inferior_vena_cava", "portal_vein_and_splenic_vein",
    "iliac_artery_left", "iliac_artery_right", "iliac_vena_left", "iliac_vena_right",
]
_PART_MUSCLES = [
    "humerus_left", "humerus_right", "scapula_left", "scapula_right", "clavicula_left",
    "clavicula_right", "femur_left", "femur_right", "hip_left", "hip_right", "spinal_cord",
    "gluteus_maximus_left", "gluteus_maximus_right", "gluteus_medius_left",
    "gluteus_medius_right", "gluteus_minimus_left", "gluteus_minimus_right", "autochthon_left",
    "autochthon_right", "iliopsoas_left", "iliopsoas_right", "brain", "skull",
]
_PART_RIBS = [f"rib_left_{i}" for i in range(1, 13)] + [f"rib_right_{i}" for i in range(1, 13)] + [
    "sternum", "costal_cartilages"]

TOTAL_PARTS: dict[int, tuple[str, dict[int, str]]] = {
    291: ("organs", {i + 1: n for i, n in enumerate(_PART_ORGANS)}),
    292: ("vertebrae", {i + 1: n for i, n in enumerate(_PART_VERTEBRAE)}),
    293: ("cardiac", {i + 1: n for i, n in enumerate(_PART_CARDIAC)}),
    294: ("muscles", {i + 1: n for i, n in enumerate(_PART_MUSCLES)}),
    295: ("ribs", {i + 1: n for i, n in enumerate(_PART_RIBS)}),
}

#: ``liver_vessels`` (dataset 8, MSD Task08 hepatic vessels): note id 2 is the tumour class.
LIVER_VESSELS: dict[int, str] = {1: "liver_vessels", 2: "liver_tumor"}

#: ``liver_lesions`` (dataset 591, TotalSegmentator >= 2.5 weights release).
LIVER_LESIONS: dict[int, str] = {1: "liver_lesions"}

# ------------------------------------------------------------------------- MR tasks
# TotalSegmentator's MR tasks (``class_map["total_mr"]``, ``class_map_parts_mr``,
# ``class_map["body_mr" | "vertebrae_mr" | "liver_segments_mr" | "liver_lesions_mr" |
# "brain_aneurysm"]`` of map_to_binary.py in TotalSegmentator 2.18.0). The licensed MR tasks
# (appendicular_bones_mr, tissue_types_mr, face_mr, thigh_shoulder_muscles_mr) are left out:
# their weights come only from TotalSegmentator's licence server.

#: The two part models of ``total_mr`` at 1.5 mm (``class_map_parts_mr``), local ids 1..n.
_MR_PART_ORGANS = [
    "spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "pancreas",
    "adrenal_gland_right", "adrenal_gland_left", "lung_left", "lung_right", "esophagus",
    "small_bowel", "duodenum", "colon", "urinary_bladder", "prostate", "sacrum", "vertebrae",
    "intervertebral_discs", "spinal_cord", "heart", "aorta", "inferior_vena_cava",
    "portal_vein_and_splenic_vein", "iliac_artery_left", "iliac_artery_right",
    "iliac_vena_left", "iliac_vena_right",
]
_MR_PART_MUSCLES = [
    "humerus_left", "humerus_right", "scapula_left", "scapula_right", "clavicula_left",
    "clavicula_right", "femur_left", "femur_right", "hip_left", "hip_right",
    "gluteus_maximus_left", "gluteus_maximus_right", "gluteus_medius_left",
    "gluteus_medius_right", "gluteus_minimus_left", "gluteus_minimus_right", "autochthon_left",
    "autochthon_right", "iliopsoas_left", "iliopsoas_right", "brain",
]

#: TotalSegmentator ``total_mr``: 50 classes, the organ part's 29 then the muscle part's 21
#: (the fast 3 mm and fastest 6 mm models, datasets 852/853, predict these ids directly).
TOTAL_MR: dict[int, str] = {i + 1: n for i, n in enumerate(_MR_PART_ORGANS + _MR_PART_MUSCLES)}

#: The part models of ``total_mr`` (datasets 850, 851): dataset id -> (part, local classes).
TOTAL_MR_PARTS: dict[int, tuple[str, dict[int, str]]] = {
    850: ("organs", {i + 1: n for i, n in enumerate(_MR_PART_ORGANS)}),
    851: ("muscles", {i + 1: n for i, n in enumerate(_MR_PART_MUSCLES)}),
}

#: ``body_mr`` (dataset 597).
BODY_MR: dict[int, str] = {1: "body_trunc", 2: "body_extremities"}

#: ``vertebrae_mr`` (dataset 756): sacrum, then L5 up to C1.
VERTEBRAE_MR: dict[int, str] = {
    i + 1: n for i, n in enumerate(
        ["sacrum"] + [f"vertebrae_L{i}" for i in range(5, 0, -1)]
        + [f"vertebrae_T{i}" for i in range(12, 0, -1)] + [f"vertebrae_C{i}" for i in range(7, 0, -1)])
}

#: ``liver_segments_mr`` (dataset 576): Couinaud segments 1-8.
LIVER_SEGMENTS_MR: dict[int, str] = {i: f"liver_segment_{i}" for i in range(1, 9)}

#: ``liver_lesions_mr`` (dataset 589, trained on CT and MR).
LIVER_LESIONS_MR: dict[int, str] = {1: "liver_lesions"}

#: ``brain_aneurysm`` (dataset 615, MAXIMUS; time-of-flight MR angiography only).
BRAIN_ANEURYSM: dict[int, str] = {1: "brain_aneurysm"}

_TOTAL_BY_NAME = {name: idx for idx, name in TOTAL.items()}
_TOTAL_MR_BY_NAME = {name: idx for idx, name in TOTAL_MR.items()}


def global_id(name: str) -> int:
    """The ``total`` id of a class name (KeyError if it is not a ``total`` class)."""
    return _TOTAL_BY_NAME[name]


def part_to_global(dataset_id: int) -> dict[int, int]:
    """Map one part model's local ids to the global ids of its task (by name).

    CT parts (291-295) map to ``total``, MR parts (850, 851) to ``total_mr``.
    """
    if dataset_id in TOTAL_MR_PARTS:
        _, classes = TOTAL_MR_PARTS[dataset_id]
        return {local: _TOTAL_MR_BY_NAME[name] for local, name in classes.items()}
    _, classes = TOTAL_PARTS[dataset_id]
    return {local: _TOTAL_BY_NAME[name] for local, name in classes.items()}


def part_of(name: str) -> int:
    """The dataset id of the part model that predicts ``name``."""
    for dataset_id, (_, classes) in TOTAL_PARTS.items():
        if name in classes.values():
            return dataset_id
    raise KeyError(name)


# -------------------------------------------------------------------- anatomical codes
_SNOMED_CSV = "totalsegmentator_snomed_mapping.csv"
_CSV_GROUPS = {
    "category": "SegmentedPropertyCategoryCodeSequence",
    "type": "SegmentedPropertyTypeCodeSequence",
    "modifier": "SegmentedPropertyTypeModifierCodeSequence",
    "region": "AnatomicRegionSequence",
    "region_modifier": "AnatomicRegionModifierSequence",
}


@functools.lru_cache(maxsize=1)
def snomed_codes() -> dict:
    """``{class name: SegmentCode}`` from TotalSegmentator's published SNOMED CT mapping."""
    import csv
    from importlib import resources

    from ..io.label_table import Code, SegmentCode

    text = resources.files("napari_medseg").joinpath("resources", _SNOMED_CSV).read_text(encoding="utf-8")
    out = {}
    for row in csv.DictReader(text.splitlines()):
        parts = {}
        for field, prefix in _CSV_GROUPS.items():
            value = (row.get(f"{prefix}.CodeValue") or "").strip()
            if value:
                parts[field] = Code(row[f"{prefix}.CodingSchemeDesignator"].strip(), value,
                                    row[f"{prefix}.CodeMeaning"].strip())
        if "category" in parts and "type" in parts:
            out[row["Structure"].strip()] = SegmentCode(**parts)
    return out


def anatomical_code(name: str):
    """The published SNOMED CT coding of a TotalSegmentator class name, or ``None``.

    Parameters
    ----------
    name : str
        A class name as TotalSegmentator writes it (e.g. ``"kidney_left"``); matched
        exactly, then case-insensitively.

    Returns
    -------
    SegmentCode or None
        ``None`` for names TotalSegmentator does not code (they are written with the
        generic "Tissue" code).
    """
    codes = snomed_codes()
    code = codes.get(name)
    if code is None:
        lowered = {k.lower(): v for k, v in codes.items()}
        code = lowered.get(str(name).strip().lower())
    return code


def with_anatomical_codes(table):
    """A copy of ``table`` with the published code of every label whose name is a known
    class and that has no code yet (codes already set, e.g. read from a DICOM-SEG, are kept)."""
    missing = {i: anatomical_code(table.name_of(i)) for i in table.ids if table.info_of(i).code is None}
    return table.with_codes(missing)


def automatic_table(names: Mapping[int, str], model: str, colors: Optional[Mapping[int, tuple]] = None):
    """The label table of an automatic model's output.

    Parameters
    ----------
    names : mapping
        ``{id: class name}`` of the model.
    model : str
        The model's name, recorded as each segment's algorithm (``AUTOMATIC``).
    colors : mapping, optional
        ``{id: rgba}``; default: the model's own colours where it has them (hu-tissue),
        else the deterministic default colours.

    Returns
    -------
    LabelTable
        Names, colours, anatomical codes (where published) and ``AUTOMATIC`` provenance.
    """
    from ..io.label_table import LabelTable

    if colors is None and model == "hu-tissue":
        from .hu_tissue import COLORS

        colors = COLORS
    table = LabelTable.from_names(names, colors)
    if model == "hu-tissue":
        from .hu_tissue import CODES

        table = table.with_codes({i: CODES.get(n) for i, n in table.names.items()})
    return with_anatomical_codes(table).with_provenance("AUTOMATIC", model)
