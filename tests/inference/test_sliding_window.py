"""Sliding window: steps, Gaussian and padding against nnU-Net's, mirroring, out-of-memory resume, non-finite scores."""

from __future__ import annotations

import pytest

from napari_medseg.testing import assert_close_to_scale


torch = pytest.importorskip("torch")


def _net(n_in=1, n_classes=7, seed=0):
    from napari_medseg.testing.nnunet import small_network

    return small_network(n_in, n_classes, seed)


class _Plain(torch.nn.Module):
    """The same network without forward_features/head: the generic path."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("mirror_batch", [1, 3, 8])
def test_feature_mirroring_equals_score_mirroring(mirror_batch, monkeypatch):
    from napari_medseg.inference import sliding_window as sw

    net = _net(1, 9, seed=3)
    data = torch.randn(1, 12, 40, 36)
    kw = dict(patch_size=(8, 16, 16), num_classes=9, mirror_axes=(0, 1, 2), mirror_batch=mirror_batch,
              emulate_fp16=False)
    monkeypatch.setattr(sw, "_SCORE_BLOCK_BYTES", 4 * 8 * 16 * 16 * 2)  # 2 classes per block
    split = sw.sliding_window_logits(net, data, **kw)
    plain = sw.sliding_window_logits(_Plain(net), data, **kw)
    assert split.shape == plain.shape == (9, 12, 40, 36)
    assert_close_to_scale(split, plain)
    assert (split.argmax(0) == plain.argmax(0)).float().mean() > 0.9999


def test_out_of_memory_between_class_blocks_resumes_without_adding_twice(monkeypatch):
    """A (simulated) GPU out-of-memory error while the seg layer runs block by block
    retries the window from the block that failed: nothing is added twice."""
    from napari_medseg.inference import sliding_window as sw

    net = _net(1, 6, seed=5)
    data = torch.randn(1, 8, 16, 16)
    kw = dict(patch_size=(8, 16, 16), num_classes=6, mirror_axes=(1,), emulate_fp16=False)
    monkeypatch.setattr(sw, "_SCORE_BLOCK_BYTES", 4 * 8 * 16 * 16 * 2)
    expected = sw.sliding_window_logits(net, data, mirror_batch=1, **kw)

    head = net.head
    calls = []

    def flaky_head(features, classes=slice(None)):
        calls.append(classes.start)
        if len(calls) == 2:  # the second block fails once
            raise torch.cuda.OutOfMemoryError("simulated")
        return head(features, classes)

    monkeypatch.setattr(net, "head", flaky_head)
    got = sw.sliding_window_logits(net, data, mirror_batch=2, **kw)
    assert calls == [0, 2, 2, 4]
    assert_close_to_scale(got, expected)


def test_non_finite_scores_are_refused():
    from napari_medseg.errors import InvalidInputError
    from napari_medseg.inference.sliding_window import sliding_window_logits

    net = _net(1, 3)
    with torch.no_grad():
        net.decoder.seg_layers[-1].bias[1] = float("nan")
    with pytest.raises(InvalidInputError, match="non-finite scores"):
        sliding_window_logits(net, torch.randn(1, 8, 16, 16), patch_size=(8, 16, 16), num_classes=3)


def test_sliding_window_steps_and_gaussian_match_nnunet():
    sw = pytest.importorskip("nnunetv2.inference.sliding_window_prediction")
    from napari_medseg.inference.sliding_window import compute_steps, gaussian_importance_map

    for size, tile, step in [((40, 100, 77), (16, 32, 32), 0.5), ((16, 32, 33), (16, 32, 32), 0.7)]:
        assert compute_steps(size, tile, step) == sw.compute_steps_for_sliding_window(size, tile, step)
    ref = sw.compute_gaussian((16, 32, 24), sigma_scale=1.0 / 8, value_scaling_factor=10,
                              device=torch.device("cpu"))
    assert torch.equal(gaussian_importance_map((16, 32, 24)), ref.float())


def test_padding_matches_nnunet():
    padding = pytest.importorskip("acvl_utils.cropping_and_padding.padding")
    from napari_medseg.inference.sliding_window import pad_to_patch

    x = torch.randn(2, 5, 40, 9)
    ours, slicer = pad_to_patch(x, (16, 32, 32))
    ref, ref_slicer = padding.pad_nd_image(x, (16, 32, 32), "constant", {"value": 0}, True, None)
    assert torch.equal(ours, ref)
    assert torch.equal(ours[slicer], x)
