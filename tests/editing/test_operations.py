"""Bad input to editing, statistics and export: a specific error, a clear message, nothing changed.

Each row: a call on fresh inputs, the exception type, a regex the message must match.
After the call the inputs must be bit-identical to before and no file may exist.
"""

import numpy as np
import pytest

from napari_medseg import editing
from napari_medseg.analysis.statistics import label_statistics
from napari_medseg.editing.autosave import Autosaver
from napari_medseg.errors import GeometryMismatchError, InvalidInputError, UnsupportedFormatError
from napari_medseg.io.export import export_labels
from napari_medseg.io.label_table import LabelTable
from napari_medseg.io.volume import Volume


# --- bad input and faults


SP = (2.0, 0.8, 0.8)


def _inputs():
    lab = np.zeros((4, 6, 6), np.uint8)
    lab[1:3, 1:4, 1:4] = 1
    lab[3, 5, 5] = 2
    img = np.arange(lab.size, dtype=np.int16).reshape(lab.shape)
    return {"lab": lab, "img": img, "table": LabelTable.from_names({1: "liver", 2: "spleen"})}


CASES = [
    # (id, call(inputs, tmp_path), error type, message regex)
    ("label not present", lambda d, p: editing.remove_small_islands(d["lab"], SP, 0.1, label=9),
     InvalidInputError, r"label 9 is not present in the label map \(present: \[1, 2\]\)"),
    ("label not present (grow)", lambda d, p: editing.grow(d["lab"], SP, 1.0, label=[1, 7]),
     InvalidInputError, r"label 7 is not present"),
    ("label zero", lambda d, p: editing.fill_holes(d["lab"], SP, label=0),
     InvalidInputError, r"label must be a positive id \(0 is the background\)"),
    ("label not integer", lambda d, p: editing.shrink(d["lab"], SP, 1.0, label=1.5),
     InvalidInputError, r"label must be an integer id, got 1.5"),
    ("negative island volume", lambda d, p: editing.remove_small_islands(d["lab"], SP, -1),
     InvalidInputError, r"minimum island volume \(mL\) must be a finite number >= 0, got -1"),
    ("negative margin", lambda d, p: editing.grow(d["lab"], SP, -2.0),
     InvalidInputError, r"margin \(mm\) must be a finite number >= 0"),
    ("NaN margin", lambda d, p: editing.shrink(d["lab"], SP, float("nan")),
     InvalidInputError, r"margin \(mm\) must be a finite number"),
    ("text margin", lambda d, p: editing.margin(d["lab"], SP, "5mm"),
     InvalidInputError, r"margin \(mm\) must be a number, got '5mm'"),
    ("zero smoothing radius", lambda d, p: editing.smooth(d["lab"], SP, 0.0),
     InvalidInputError, r"smoothing radius \(mm\) must be a finite number > 0"),
    ("unknown smoothing method", lambda d, p: editing.smooth(d["lab"], SP, 1.0, "gaussian"),
     InvalidInputError, r"smoothing method must be one of \('median', 'opening', 'closing'\)"),
    ("float labels", lambda d, p: editing.grow(d["lab"].astype(np.float32), SP, 1.0),
     InvalidInputError, r"must hold integer label ids, got dtype float32"),
    ("bool labels", lambda d, p: editing.fill_holes(d["lab"] > 0, SP),
     InvalidInputError, r"must hold integer label ids, got dtype bool"),
    ("2D labels", lambda d, p: editing.fill_holes(d["lab"][0], SP),
     InvalidInputError, r"must be 3D \(z, y, x\); got an array of shape \(6, 6\)"),
    ("negative ids", lambda d, p: editing.fill_holes(d["lab"].astype(np.int16) - 1, SP),
     InvalidInputError, r"holds negative ids \(min -1\)"),
    ("zero spacing", lambda d, p: editing.grow(d["lab"], (0, 1, 1), 1.0),
     InvalidInputError, r"spacing must be three positive finite numbers"),
    ("2-value spacing", lambda d, p: editing.grow(d["lab"], (1, 1), 1.0),
     InvalidInputError, r"spacing must be three positive finite numbers"),
    ("axis out of range", lambda d, p: editing.grow(d["lab"], SP, 1.0, axis=3, index=0),
     InvalidInputError, r"axis must be 0, 1 or 2"),
    ("slice index out of range", lambda d, p: editing.grow(d["lab"], SP, 1.0, axis=0, index=4),
     InvalidInputError, r"slice index 4 is outside 0..3 along axis 0"),
    ("axis without index", lambda d, p: editing.smooth(d["lab"], SP, 1.0, axis=0),
     InvalidInputError, r"needs both axis and index"),
    ("bad connectivity", lambda d, p: editing.keep_largest_component(d["lab"], SP, connectivity=4),
     InvalidInputError, r"connectivity must be 1..3"),
    ("split needs one label", lambda d, p: editing.split_components(d["lab"], SP, None),
     InvalidInputError, r"label must be an integer id"),
    ("interpolation axis", lambda d, p: editing.fill_between_slices(d["lab"], SP, axis=True),
     InvalidInputError, r"axis must be 0, 1 or 2"),
    ("operand mask shape", lambda d, p: editing.subtract_mask(d["lab"], 1, np.ones((4, 6, 5), bool)),
     GeometryMismatchError, r"operand mask has shape \(4, 6, 5\) but the label map has \(4, 6, 6\)"),
    ("operand mask not bool", lambda d, p: editing.intersect_mask(d["lab"], 1, d["lab"]),
     InvalidInputError, r"operand mask must be boolean, got dtype uint8; use mask_of"),
    ("merge absent source", lambda d, p: editing.merge_labels(d["lab"], [2, 5], 1),
     InvalidInputError, r"label 5 is not present"),
    ("copy to other shape", lambda d, p: editing.copy_label(d["lab"], 1, np.zeros((4, 6, 7), np.uint8)),
     GeometryMismatchError, r"destination has shape \(4, 6, 7\) but the source has \(4, 6, 6\)"),
    ("threshold image shape", lambda d, p: editing.threshold_fill(d["lab"], d["img"][:2], 0, 10, 3),
     GeometryMismatchError, r"the image has shape \(2, 6, 6\) but the label map has \(4, 6, 6\)"),
    ("threshold range reversed", lambda d, p: editing.threshold_fill(d["lab"], d["img"], 10, 0, 3),
     InvalidInputError, r"low 10 must be <= high 0"),
    ("restrict edit shapes", lambda d, p: editing.restrict_edit(d["lab"], d["lab"][:3], d["img"], 0, 1),
     GeometryMismatchError, r"edited map has shape \(3, 6, 6\), the original \(4, 6, 6\)"),
    ("relabel onto existing", lambda d, p: editing.relabel(d["lab"], 1, 2, d["table"]),
     InvalidInputError, r"label 2 is already in use \(spleen\); pick a free id or merge"),
    ("relabel to background", lambda d, p: editing.relabel(d["lab"], 1, 0),
     InvalidInputError, r"new label id must be a positive id"),
    ("delete absent class", lambda d, p: editing.delete_class(d["lab"], 8, d["table"]),
     InvalidInputError, r"label 8 is not present in the label map or the table"),
    ("rename to empty", lambda d, p: editing.rename_class(d["table"], 1, "  "),
     InvalidInputError, r"a class name must be a non-empty string"),
    ("bad colour", lambda d, p: editing.recolor_class(d["table"], 1, (2, 0, 0)),
     InvalidInputError, r"a colour is 3 or 4 numbers in 0..1"),
    ("stats: labels not a Volume", lambda d, p: label_statistics(None, d["lab"]),
     InvalidInputError, r"labels must be a Volume \(array \+ geometry\), got ndarray"),
    ("stats: image grid differs", lambda d, p: label_statistics(Volume(d["img"][:2]), Volume(d["lab"])),
     GeometryMismatchError, r"labels have shape \(4, 6, 6\) but the image has \(2, 6, 6\)"),
    ("stats: image origin differs", lambda d, p: label_statistics(Volume(d["img"], origin=(0, 0, 9)), Volume(d["lab"])),
     GeometryMismatchError, r"do not lie on the image's voxel grid: origin"),
    ("stats: float labels", lambda d, p: label_statistics(None, Volume(d["lab"].astype(float))),
     InvalidInputError, r"labels must hold integer ids, got dtype float64"),
    ("export: unknown extension", lambda d, p: export_labels(Volume(d["lab"]), d["table"], p / "x.tiff"),
     UnsupportedFormatError, r"cannot export labels to .*x.tiff: unknown extension"),
    ("export: DICOM-SEG without DICOM", lambda d, p: export_labels(Volume(d["lab"]), d["table"], p / "x.dcm",
                                                                    reference=Volume(d["img"])),
     InvalidInputError, r"cannot write DICOM-SEG .* must reference the DICOM series"),
    ("export: grid mismatch", lambda d, p: export_labels(Volume(d["lab"]), d["table"], p / "x.nrrd",
                                                          reference=Volume(d["img"], spacing=(1, 1, 3))),
     GeometryMismatchError, r"spacing"),
    ("export: float labels", lambda d, p: export_labels(Volume(d["lab"].astype(np.float32)), None, p / "x.nii.gz"),
     InvalidInputError, r"labels must hold integer ids, got dtype float32"),
    ("autosave: float labels", lambda d, p: Autosaver(p / "rec").save("x", d["lab"].astype(float)),
     InvalidInputError, r"autosave expects an integer label array, got dtype float64"),
    ("unknown operation", lambda d, p: __import__("napari_medseg.editing.operations", fromlist=["x"]).apply_edit(
        "Explode", d["lab"], SP, __import__("napari_medseg.editing.operations", fromlist=["x"]).EditRequest()),
     InvalidInputError, r"unknown editing operation 'Explode'"),
]


@pytest.mark.parametrize("call,error,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, call, error, message):
    d = _inputs()
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v.to_dict()) for k, v in d.items()}
    with pytest.raises(error, match=message):
        call(d, tmp_path)
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(v, before[k], err_msg=f"{k} was modified")
            assert v.dtype == before[k].dtype
        else:
            assert v.to_dict() == before[k], f"{k} was modified"
    assert not list(tmp_path.rglob("*.*")), "a file was written"


def test_every_operation_leaves_its_input_alone():
    """Good input too: every operation returns a new array and never writes the input."""
    from napari_medseg.editing.operations import OPERATIONS, EditRequest, apply_edit

    d = _inputs()
    lab = d["lab"]
    lab.setflags(write=False)  # any in-place write raises
    other = np.zeros_like(lab)
    other[1:3, 2:5, 2:5] = 4
    for name in OPERATIONS:
        req = EditRequest(label=1, size=1.0, target=5, low=0, high=100, other_label=4)
        out = apply_edit(name, lab, SP, req, image=d["img"], other=other)
        assert out is not lab and out.shape == lab.shape, name
