"""``segment_and_measure``: the one liver/lesion sequence behind ``medseg lesions`` and the widget."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.analysis.liver import segment_and_measure
from napari_medseg.errors import Cancelled, GeometryMismatchError, InvalidInputError
from napari_medseg.progress import CancelToken


@pytest.fixture(scope="module")
def phantom():
    from napari_medseg.phantom import make_phantom

    return make_phantom(seed=7, shape=(32, 80, 80), spacing_zyx=(4.0, 2.6, 2.6), n_lesions=2)


def _renumbered(ph, liver: int, lesion: int):
    arr = np.zeros(ph.labels.shape, np.uint8)
    arr[ph.labels == 1] = liver
    arr[ph.labels == 2] = lesion
    return ph.ct.with_array(arr)


def test_measure_given_labels_ids_by_name_then_explicit(phantom):
    labels = _renumbered(phantom, 5, 9)
    seen = []
    res = segment_and_measure(phantom.ct, labels=labels, table={5: "liver", 9: "liver_tumor"},
                              progress=lambda f, t: seen.append(f))
    assert not res.segmented and res.labels is labels
    assert res.report.metadata["liver_id"] == 5 and res.report.metadata["lesion_id"] == 9
    assert res.report.metadata["model"] is None
    assert len(res.report.lesions) == len(phantom.lesions)
    assert seen[-1] == 1.0
    liver_ml = float(np.isin(phantom.labels, (1, 2)).sum()) * phantom.ct.voxel_volume_ml
    assert res.report.liver_volume_ml == pytest.approx(liver_ml)

    # unnamed table: the default ids 1/2 find nothing in a 5/9 map ...
    none = segment_and_measure(phantom.ct, labels=labels)
    assert len(none.report.lesions) == 0 and none.report.liver_volume_ml == 0.0
    # ... and explicit ids win over names
    explicit = segment_and_measure(phantom.ct, labels=labels, liver_id=5, lesion_id=9)
    assert len(explicit.report.lesions) == len(phantom.lesions)
    # unpacking gives labels, table, report
    lab, table, report = explicit
    assert lab is labels and report is explicit.report and table.names == {}


def test_refusals(phantom):
    labels = _renumbered(phantom, 1, 2)
    with pytest.raises(InvalidInputError, match="model, device would not be used"):
        segment_and_measure(phantom.ct, model="hybrid-liver", device="cpu", labels=labels)
    with pytest.raises(InvalidInputError, match="must differ"):
        segment_and_measure(phantom.ct, labels=labels, liver_id=2, lesion_id=2)
    wrong = labels.with_array(labels.array)  # same array, other grid
    from dataclasses import replace

    wrong = replace(wrong, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(GeometryMismatchError):
        segment_and_measure(phantom.ct, labels=wrong)


def test_segment_then_measure_with_a_checkpoint(phantom, tmp_path):
    from napari_medseg.models.hybrid_liver import (DEFAULT_PREPROCESSING, build_model,
                                                   make_checkpoint, save_checkpoint)

    cfg = {"features": 4, "levels": 3, "transformer_layers": 1, "heads": 2}
    pre = dict(DEFAULT_PREPROCESSING, stage1_spacing_xyz=[4.0, 4.0, 4.0],
               stage2_spacing_xyz=[2.6, 2.6, 4.0])
    import torch

    torch.manual_seed(0)
    ckpt = save_checkpoint(make_checkpoint(build_model(cfg), build_model(cfg), preprocessing=pre),
                           tmp_path / "tiny.pt")
    before = phantom.ct.array.copy()
    seen = []
    res = segment_and_measure(phantom.ct, weights=ckpt, device="cpu",
                              progress=lambda f, t: seen.append((f, t)))
    assert res.segmented and res.labels.shape == phantom.ct.shape
    assert res.labels.same_grid(phantom.ct) and res.labels.array.dtype == np.uint8
    assert set(np.unique(res.labels.array)) <= {0, 1, 2}
    assert res.table.names == {1: "liver", 2: "liver_lesion"}
    assert res.report.metadata["model"] == "hybrid-liver"
    n_liver = int(np.isin(res.labels.array, (1, 2)).sum())
    assert res.report.liver_volume_ml == pytest.approx(n_liver * phantom.ct.voxel_volume_ml)
    fractions = [f for f, _ in seen]
    assert fractions[-1] == 1.0 and all(b >= a - 1e-9 for a, b in zip(fractions, fractions[1:]))
    assert any(t == "measuring lesions" for _, t in seen)
    assert np.array_equal(before, phantom.ct.array)

    token = CancelToken()

    def cancel_soon(f, t):
        if f > 0.3:
            token.cancel()

    with pytest.raises(Cancelled):
        segment_and_measure(phantom.ct, weights=ckpt, device="cpu", progress=cancel_soon,
                            cancel=token)
    assert np.array_equal(before, phantom.ct.array)


def test_nnunet_folder_model(phantom, tmp_path):
    from napari_medseg.testing.nnunet import make_random_model_folder

    folder = make_random_model_folder(tmp_path / "m", n_classes=3, patch_size=(16, 16, 16),
                                      spacing=(4.0, 4.0, 4.0),
                                      label_names={"background": 0, "liver": 1, "liver_tumor": 2})
    res = segment_and_measure(phantom.ct, model=str(folder), device="cpu")
    assert res.segmented and res.report.metadata["model"] == str(folder)
    assert set(np.unique(res.labels.array)) <= {0, 1, 2}
    n_lesion_vox = sum(lesion.n_voxels for lesion in res.report.lesions)
    assert n_lesion_vox == int((res.labels.array == 2).sum())
