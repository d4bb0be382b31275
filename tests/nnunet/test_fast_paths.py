"""The engine's CPU fast paths compute what the plain torch operations compute."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.testing import assert_close_to_scale

torch = pytest.importorskip("torch")


def _net(n_in=1, n_classes=7, seed=0):
    from napari_medseg.models.nnunet.network import build_network
    from napari_medseg.models.nnunet.synthetic import _architecture

    torch.manual_seed(seed)
    arch = _architecture("PlainConvUNet", 3, [4, 8, 16], [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
                         [[1, 3, 3], [3, 3, 3], [3, 3, 3]], 2)
    net = build_network(arch, n_in, n_classes).eval()
    with torch.no_grad():  # non-trivial norm affines and seg bias
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


def test_single_channel_conv_and_matrix_head_equal_the_reference_network():
    """One input channel (the oneDNN path) and the 1x1 seg layer as a matrix product
    give the dynamic_network_architectures output to float32 rounding."""
    dna = pytest.importorskip("dynamic_network_architectures.architectures.unet")
    from torch import nn

    from napari_medseg.models.nnunet.synthetic import _architecture

    ours = _net(1, 11)
    arch = _architecture("PlainConvUNet", 3, [4, 8, 16], [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
                         [[1, 3, 3], [3, 3, 3], [3, 3, 3]], 2)
    kw = dict(arch["arch_kwargs"])
    kw.update(conv_op=nn.Conv3d, norm_op=nn.InstanceNorm3d, nonlin=nn.LeakyReLU)
    ref = dna.PlainConvUNet(input_channels=1, num_classes=11, deep_supervision=False, **kw).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 1, 8, 16, 16)
    with torch.inference_mode():
        a, b = ours(x), ref(x)
        feats = ours.forward_features(x)
        blocks = torch.cat([ours.head(feats, slice(c, c + 4)) for c in range(0, 11, 4)], 1)
    assert a.shape == b.shape == (2, 11, 8, 16, 16)
    assert_close_to_scale(a, b)
    assert_close_to_scale(blocks, a)
    # channels-last (how the engine runs it on the CPU): the instance norms stay
    # channels-last (_channels_last_instance_norm), same values
    from napari_medseg.models.nnunet import network as network_module

    calls = []
    real = network_module._channels_last_instance_norm
    ours_cl = ours.to(memory_format=torch.channels_last_3d)
    x_cl = x.contiguous(memory_format=torch.channels_last_3d)
    try:
        network_module._channels_last_instance_norm = lambda n, t: calls.append(1) or real(n, t)
        with torch.inference_mode():
            c = ours_cl(x_cl)
    finally:
        network_module._channels_last_instance_norm = real
    assert len(calls) >= 4
    assert_close_to_scale(c, b)
    # with gradients on (training) the plain convolution runs
    with torch.enable_grad():
        assert_close_to_scale(ours(x), b)


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


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("n_classes", [2, 118, 300])
def test_class_argmax_equals_argmax_with_ties(dtype, n_classes):
    from napari_medseg.inference.resample import class_argmax

    rng = np.random.default_rng(n_classes)
    scores = torch.from_numpy(rng.normal(size=(n_classes, 3, 5, 7)).astype(dtype))
    scores[:, 0, 0, 0] = 1.0  # all tied: class 0
    scores[n_classes - 1, 1, 1, 1] = 50.0
    scores[1, 1, 1, 1] = 50.0  # tie between 1 and the last: 1
    got = class_argmax(scores)
    assert got.dtype == (torch.uint8 if n_classes <= 256 else torch.int32)
    assert torch.equal(got.long(), scores.float().argmax(0))
    assert int(got[0, 0, 0]) == 0 and int(got[1, 1, 1]) == 1
