"""CPU convolution paths (models/nnunet/cpu_conv.py): oneDNN for every Conv3d, transposed
convolutions as one matrix product, the layer classes that take them and the layer swap;
parity with torch, a U-Net window."""

from __future__ import annotations

import pytest

from napari_medseg.testing import assert_close_to_scale

torch = pytest.importorskip("torch")
F = torch.nn.functional

from napari_medseg.models.nnunet.cpu_conv import (  # noqa: E402
    GemmConvTranspose3d, OneDNNConv3d, conv_like, gemm_transposed_applies, onednn_applies,
    onednn_conv3d, onednn_convolutions, swapped_layers, transposed_conv3d_as_gemm)

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(),
                                reason="this torch build has no oneDNN")


def _channels_last(t):
    return t.contiguous(memory_format=torch.channels_last_3d)


@pytest.mark.parametrize("cin, cout, size, kernel, stride, padding", [
    (8, 16, (5, 7, 9), 3, 1, 1),     # odd sizes, below PyTorch's oneDNN size threshold
    (16, 8, (6, 6, 6), 3, 2, 1),     # nnU-Net's strided downsampling conv
    (3, 4, (4, 5, 6), 3, 1, 0),      # no padding
    (6, 5, (3, 4, 5), (1, 3, 3), 1, (0, 1, 1)),  # anisotropic kernel (1 x 3 x 3 stages)
    (64, 64, (6, 6, 6), 3, 1, 1),    # a deep stage's map
])
def test_onednn_conv3d_equals_torch(cin, cout, size, kernel, stride, padding):
    torch.manual_seed(cin + cout)
    conv = torch.nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding)
    x = _channels_last(torch.randn(1, cin, *size))
    with torch.no_grad():
        assert onednn_applies(conv, x)
        ref = conv(x)
        out = onednn_conv3d(conv, x)
    assert out.shape == ref.shape
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    assert_close_to_scale(out, ref, rel=1e-5, name="oneDNN conv3d")


def test_onednn_path_avoids_slow_conv3d():
    # the reason for the path: a small map must not reach ATen's im2col convolution
    from torch.profiler import profile

    conv = OneDNNConv3d(16, 16, 3, padding=1)
    x = _channels_last(torch.randn(1, 16, 8, 8, 8))
    with torch.no_grad(), profile() as prof:
        conv(x)
    names = {e.key for e in prof.key_averages()}
    assert "aten::mkldnn_convolution" in names
    assert not any("slow_conv3d" in n for n in names)


@pytest.mark.parametrize("cin, cout, size, kernel, batch", [
    (16, 8, (3, 5, 7), 2, 1),
    (4, 6, (2, 3, 4), (1, 2, 2), 2),   # anisotropic upsampling, batch of 2
    (32, 16, (4, 4, 4), 2, 1),
])
def test_transposed_conv_as_gemm_equals_torch(cin, cout, size, kernel, batch):
    torch.manual_seed(cin * cout)
    tconv = torch.nn.ConvTranspose3d(cin, cout, kernel, kernel)
    x = _channels_last(torch.randn(batch, cin, *size))
    with torch.no_grad():
        assert gemm_transposed_applies(tconv, x)
        ref = tconv(x)
        out = transposed_conv3d_as_gemm(tconv, x)
    assert out.shape == ref.shape
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    assert_close_to_scale(out, ref, rel=1e-5, name="transposed conv as GEMM")


def test_what_the_paths_refuse():
    x = torch.randn(1, 4, 4, 4, 4)
    with torch.no_grad():
        assert not onednn_applies(torch.nn.Conv3d(4, 4, 3, padding=1, padding_mode="reflect"), x)
        assert not onednn_applies(torch.nn.Conv3d(4, 4, 3, padding="same"), x)
        assert not onednn_applies(torch.nn.Conv3d(4, 4, 3), x.double())
        assert not gemm_transposed_applies(torch.nn.ConvTranspose3d(4, 4, 3, 2), x)  # overlapping
        assert not gemm_transposed_applies(torch.nn.ConvTranspose3d(4, 4, 2, 2, padding=1), x)
    # with gradients the reference path runs
    assert not onednn_applies(torch.nn.Conv3d(4, 4, 3), x)


def test_unet_window_equals_torch(model_factory):
    """The network is built from the fast layer classes; with them off (plain torch
    layers sharing the weights) the window is the same to float32 rounding."""
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor

    net = NnUNetPredictor.from_folder(model_factory(n_classes=3, seed=4), device="cpu").network
    net = net.eval().to(memory_format=torch.channels_last_3d)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv3d)]
    assert sum(type(m) is OneDNNConv3d for m in convs) == len(convs) - len(net.decoder.seg_layers)
    assert any(type(m) is GemmConvTranspose3d for m in net.modules())
    assert not any("forward" in vars(m) for m in net.modules())  # classes, not patched methods

    def plain(layer):
        if type(layer) is OneDNNConv3d:
            return conv_like(torch.nn.Conv3d, layer)
        if type(layer) is GemmConvTranspose3d:
            return conv_like(torch.nn.ConvTranspose3d, layer)
        return None

    x = _channels_last(torch.randn(1, 1, 16, 32, 32, generator=torch.Generator().manual_seed(2)))
    with torch.inference_mode():
        out = net.forward_features(x)
        with swapped_layers(net, plain) as ref_net:
            assert not any(type(m) in (OneDNNConv3d, GemmConvTranspose3d) for m in ref_net.modules())
            ref = ref_net.forward_features(x)
        assert torch.equal(net.forward_features(x), out)
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    assert_close_to_scale(out, ref, rel=1e-5, name="U-Net window, oneDNN paths")


def test_traced_and_gradient_calls_take_torchs_convolution():
    # the compiled runtimes trace the reference graph; training needs torch's autograd
    conv = OneDNNConv3d(4, 4, 3, padding=1)
    x = torch.randn(1, 4, 6, 6, 6)
    with torch.no_grad():
        traced = torch.jit.trace(conv, x)
    assert "mkldnn_convolution" not in str(traced.graph)
    y = conv(x)
    assert y.requires_grad and torch.equal(y, F.conv3d(x, conv.weight, conv.bias, padding=1))
    tconv = GemmConvTranspose3d(4, 2, 2, 2)
    assert torch.equal(tconv(x), F.conv_transpose3d(x, tconv.weight, tconv.bias, 2))


def test_onednn_convolutions_swaps_plain_layers_everywhere_and_restores_them():
    conv = torch.nn.Conv3d(4, 8, 3, padding=1)
    up = torch.nn.ConvTranspose3d(8, 4, 2, 2)
    net = torch.nn.Sequential(conv, torch.nn.InstanceNorm3d(8, affine=True), up)
    net.alias = conv  # registered twice, as nnU-Net's conv / all_modules.0
    x = _channels_last(torch.randn(1, 4, 6, 6, 6))
    with torch.no_grad():
        ref = net(x)
        with onednn_convolutions(net) as fast:
            assert fast is net
            assert type(net[0]) is OneDNNConv3d and net.alias is net[0]
            assert type(net[2]) is GemmConvTranspose3d
            assert net[0].weight is conv.weight and net[2].bias is up.bias  # shared, not copied
            out = fast(x)
        assert net[0] is conv and net.alias is conv and net[2] is up
        assert torch.equal(net(x), ref)
        with onednn_convolutions(conv) as lone:  # a layer alone: `with` gives its replacement
            assert type(lone) is OneDNNConv3d and conv is net[0]
    assert_close_to_scale(out, ref, rel=1e-5, name="swapped layers")
