"""DICOM-SEG test helpers: the raw segment attributes read with pydicom alone (an independent
reader of what the writer recorded) and a label map with one object of each provenance."""

from __future__ import annotations

import numpy as np


def raw_segments(path) -> dict:
    """Segment label -> the raw coded attributes, read with pydicom alone (independent reader)."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    out = {}
    for item in ds.SegmentSequence:
        ptype = item.SegmentedPropertyTypeCodeSequence[0]
        cat = item.SegmentedPropertyCategoryCodeSequence[0]
        mod = getattr(ptype, "SegmentedPropertyTypeModifierCodeSequence", None)
        region = getattr(item, "AnatomicRegionSequence", None)
        out[str(item.SegmentLabel)] = {
            "category": (cat.CodingSchemeDesignator, cat.CodeValue, cat.CodeMeaning),
            "type": (ptype.CodingSchemeDesignator, ptype.CodeValue, ptype.CodeMeaning),
            "modifier": (mod[0].CodingSchemeDesignator, mod[0].CodeValue, mod[0].CodeMeaning) if mod else None,
            "region": (region[0].CodeValue, region[0].CodeMeaning) if region else None,
            "algorithm_type": str(item.SegmentAlgorithmType),
            "algorithm_name": str(getattr(item, "SegmentAlgorithmName", "")) or None,
            "algorithm_ident": (str(item.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName)
                                if "SegmentationAlgorithmIdentificationSequence" in item else None),
        }
    return out


def three_objects(ct) -> np.ndarray:
    """Objects on the dcmqi 3-slice CT grid: liver and right kidney (automatic), a kidney cyst,
    an interactive object (id 40) and a hand-painted one (id 41)."""
    arr = np.zeros(ct.shape, np.uint8)
    arr[0, 100:200, 100:200] = 5     # liver (automatic, total)
    arr[1, 300:340, 300:360] = 2     # kidney_right (automatic, total: coded with a "Right" modifier)
    arr[2, 50:90, 50:90] = 23        # kidney_cyst_left (lesion: anatomic region Kidney)
    arr[2, 400:420, 400:420] = 40    # an interactive object
    arr[1, 10:20, 10:20] = 41        # painted by hand, free-text name
    return arr
