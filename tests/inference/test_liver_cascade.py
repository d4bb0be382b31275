"""The liver cascade's plumbing (resampling, largest component, lesions inside the liver, flips), the nnU-Net route and label mapping; bad volumes and short memory refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.errors import InvalidInputError
from napari_medseg.errors import InsufficientMemoryError, InvalidInputError
from napari_medseg.inference import liver_cascade as lc
from napari_medseg.io.volume import Volume
from napari_medseg.models.hybrid_liver import preprocessing as pp
from napari_medseg.testing.liver import small_phantom


class ThresholdNet(torch.nn.Module):
    """A stand-in 'network': foreground where the centre slice is inside an intensity band."""

    def __init__(self, lo01, hi01):
        super().__init__()
        self.config = {"context": 1}
        self.lo, self.hi = lo01, hi01
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        c = x[:, 1]
        fg = ((c >= self.lo) & (c <= self.hi)).float() * 20 - 10
        return torch.stack([torch.zeros_like(fg), fg], dim=1)


def hu01(hu):  # position of an HU value in the default window [-200, 300]
    return (hu + 200) / 500


@pytest.fixture(scope="module")
def phantom():
    from napari_medseg.phantom import make_phantom

    return make_phantom(seed=5, shape=(40, 96, 96), spacing_zyx=(2.5, 2.0, 2.0), n_lesions=2)


def test_cascade_logic_with_threshold_nets(phantom, one_thread):
    from napari_medseg.models.hybrid_liver import DEFAULT_PREPROCESSING

    pre = dict(DEFAULT_PREPROCESSING, stage2_spacing_xyz=[1.5, 1.5, 2.5])
    stage1 = ThresholdNet(hu01(0), hu01(140))  # liver + lesions + other soft tissue
    stage2 = ThresholdNet(hu01(-5), hu01(70))  # lesions (and fat-free soft tissue outside the liver)
    image = phantom.ct.array.copy()
    seen = []
    labels = lc.run_hybrid(phantom.ct, stage1, stage2, pre, device="cpu",
                           progress=lambda f, t: seen.append(f))
    assert np.array_equal(phantom.ct.array, image)  # input untouched
    assert labels.shape == phantom.ct.shape and labels.dtype == np.uint8
    assert seen[-1] == 1.0 and all(b >= a - 1e-9 for a, b in zip(seen, seen[1:]))
    # lesions only inside the liver mask; liver is one connected component
    from scipy import ndimage

    assert ndimage.label(labels > 0, structure=np.ones((3, 3, 3)))[1] == 1
    truth = np.isin(phantom.labels, (1, 2))
    assert (labels == 2).sum() > 0 and ((labels == 2) & ~(labels > 0)).sum() == 0

    # flipped storage: the same anatomy stored with x and y reversed gives the flipped result
    flipped = Volume(phantom.ct.array[:, ::-1, ::-1].copy(), spacing=phantom.ct.spacing,
                     origin=phantom.ct.origin, direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))
    assert pp.canonical_flips(flipped) == (1, 2)
    labels_f = lc.run_hybrid(flipped, stage1, stage2, pre, device="cpu")
    assert np.array_equal(labels_f[:, ::-1, ::-1], labels)
    del truth


def test_cancel_raises_and_changes_nothing(phantom):
    from napari_medseg.errors import Cancelled
    from napari_medseg.models.hybrid_liver import DEFAULT_PREPROCESSING
    from napari_medseg.progress import CancelToken

    token = CancelToken()
    calls = []

    def progress(f, t):
        calls.append(f)
        if len(calls) == 3:
            token.cancel()

    before = phantom.ct.array.copy()
    with pytest.raises(Cancelled):
        lc.run_hybrid(phantom.ct, ThresholdNet(0, 1), ThresholdNet(0, 1), DEFAULT_PREPROCESSING,
                      device="cpu", progress=progress, cancel=token)
    assert np.array_equal(before, phantom.ct.array)


def test_map_nnunet_labels():
    raw = np.array([[[0, 1, 2, 3, 4]]])
    mapped, mapping = lc.map_nnunet_labels(raw, {0: "background", 1: "liver", 2: "liver_tumor",
                                                 3: "liver_vessel", 4: "spleen"})
    assert mapped.tolist() == [[[0, 1, 2, 0, 0]]] and mapping == {1: 1, 2: 2}
    mapped, _ = lc.map_nnunet_labels(raw, {0: "background", 3: "Lesion", 4: "Liver"})
    assert mapped.tolist() == [[[0, 0, 0, 2, 1]]]
    with pytest.raises(InvalidInputError, match="no class named 'liver'"):
        lc.map_nnunet_labels(raw, {1: "spleen", 2: "kidney"})


def test_nnunet_folder_route(tmp_path, one_thread):
    from napari_medseg.testing.nnunet import make_random_model_folder

    folder = make_random_model_folder(tmp_path / "m", n_classes=3, patch_size=(16, 16, 16),
                                      spacing=(4.0, 4.0, 4.0),
                                      label_names={"background": 0, "liver": 1, "liver_tumor": 2})
    ph = small_phantom(3)
    labels, table = lc.segment_liver(ph.ct, str(folder), device="cpu")
    assert labels.shape == ph.ct.shape and set(np.unique(labels)) <= {0, 1, 2}
    assert table.names == {1: "liver", 2: "liver_lesion"}


def test_drop_small_components_and_stage2_box():
    mask = np.zeros((6, 10, 10), bool)
    mask[1:4, 1:4, 1:4] = True  # 27 voxels of 2 mm^3 = 54 mm^3
    mask[5, 8, 8] = True  # 1 voxel = 2 mm^3
    kept = lc.drop_small_components(mask, (2.0, 1.0, 1.0), 20.0)
    assert kept.sum() == 27 and not kept[5, 8, 8]
    assert lc.drop_small_components(mask, (2.0, 1.0, 1.0), 0.0).sum() == 28
    pre = {"stage2_margin_mm": 2.0}
    assert pp.stage2_box(kept, (2.0, 1.0, 1.0), pre) == (slice(0, 5), slice(0, 6), slice(0, 6))
    assert pp.stage2_box(np.zeros((2, 2, 2), bool), (1, 1, 1), pre) is None


# --- bad input and faults


def _nan_ct():
    arr = np.zeros((6, 32, 32), np.float32)
    arr[2, 3, 4] = np.nan
    return Volume(arr)


CASCADE_CASES = [
    ("NaN voxels", _nan_ct, {}, InvalidInputError, "NaN/Inf"),
    ("tiny slices", lambda: Volume(np.zeros((6, 4, 4), np.int16)), {}, InvalidInputError, "in-plane"),
    ("bool image", lambda: Volume(np.zeros((6, 32, 32), bool)), {}, InvalidInputError, "voxel type"),
]


@pytest.mark.parametrize("name, make, kwargs, error, message", CASCADE_CASES, ids=[c[0] for c in CASCADE_CASES])
def test_cascade_refuses_bad_volumes(name, make, kwargs, error, message, tmp_path):
    from napari_medseg.inference.liver_cascade import segment_liver

    volume = make()
    before = volume.array.copy()
    with pytest.raises(error, match=message):
        segment_liver(volume, "hybrid-liver", weights=tmp_path / "never-read.pt", device="cpu")
    assert np.array_equal(before, volume.array, equal_nan=before.dtype.kind == "f")


def test_cascade_refuses_when_memory_is_short():
    from napari_medseg.inference.liver_cascade import check_volume_for_model

    with pytest.raises(InsufficientMemoryError, match="GiB"):
        check_volume_for_model(Volume(np.zeros((4, 64, 64), np.int16)), available_bytes=1000)
