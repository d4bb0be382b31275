"""Winograd 3D convolution (models/nnunet/winograd.py): parity with conv3d, layer selection,
a U-Net window."""

from __future__ import annotations

import pytest

from napari_medseg.errors import InvalidInputError
from napari_medseg.testing import assert_close_to_scale

torch = pytest.importorskip("torch")
F = torch.nn.functional

from napari_medseg.models.nnunet.winograd import (  # noqa: E402
    WinogradConv3d, qualifies, transform_weight, winograd_conv3d, winograd_convolutions)

# F(2): coefficients 0/+-1/0.5, float32 rounding only; F(4): coefficients up to 8 and 1/24
TOLERANCE = {2: 1e-5, 4: 1e-4}


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("shape, cout, padding, bias, channels_last", [
    ((1, 3, 5, 7, 9), 4, 1, True, True),      # odd sizes: partial last tiles on every axis
    ((2, 8, 6, 6, 6), 5, 0, False, True),     # batch of 2, no padding (4^3 output)
    ((1, 4, 3, 11, 4), 6, 2, True, False),    # padding 2, channels-first input
    ((1, 16, 12, 10, 8), 16, 1, True, True),  # sizes that divide the tiles exactly
    ((1, 2, 3, 3, 3), 3, 0, True, True),      # one output voxel
])
def test_equals_conv3d(m, shape, cout, padding, bias, channels_last):
    gen = torch.Generator().manual_seed(sum(shape) + m)
    x = torch.randn(shape, generator=gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    w = torch.randn(cout, shape[1], 3, 3, 3, generator=gen)
    b = torch.randn(cout, generator=gen) if bias else None
    ref = F.conv3d(x, w, b, padding=padding)
    out = winograd_conv3d(x, w, b, padding, m)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    assert_close_to_scale(out, ref, rel=TOLERANCE[m], name=f"Winograd F({m})")
    # a precomputed weight transform gives the same result
    assert torch.equal(winograd_conv3d(x, w, b, padding, m, transform_weight(w, m)), out)


def test_the_transform_is_not_a_no_op():
    # guards the comparison above: a wrong kernel orientation must show as a large error
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 6, 6, 6, generator=gen)
    w = torch.randn(2, 2, 3, 3, 3, generator=gen)
    flipped = F.conv3d(x, w.flip(2), padding=1)
    out = winograd_conv3d(x, w, None, 1, 2)
    assert float((out - flipped).abs().max()) > 1e-2 * float(flipped.abs().max())


def test_bad_input_is_refused_with_the_reason():
    x = torch.randn(1, 2, 4, 4, 4)
    with pytest.raises(InvalidInputError, match="m=3"):
        winograd_conv3d(x, torch.randn(2, 2, 3, 3, 3), m=3)
    with pytest.raises(InvalidInputError, match=r"\(C_out, C_in, 3, 3, 3\)"):
        transform_weight(torch.randn(2, 2, 5, 5, 5))
    with pytest.raises(InvalidInputError, match="do not fit"):
        winograd_conv3d(x, torch.randn(2, 3, 3, 3, 3))
    with pytest.raises(InvalidInputError, match="padding"):
        winograd_conv3d(x, torch.randn(2, 2, 3, 3, 3), padding=3)
    with pytest.raises(InvalidInputError, match="smaller than the kernel"):
        winograd_conv3d(torch.randn(1, 2, 2, 4, 4), torch.randn(2, 2, 3, 3, 3), padding=0)


def test_only_stride_one_3x3x3_layers_with_enough_channels_qualify():
    conv = torch.nn.Conv3d
    assert qualifies(conv(64, 64, 3, padding=1), 64)
    assert not qualifies(conv(32, 64, 3, padding=1), 64)          # too few input channels
    assert not qualifies(conv(64, 64, 3, stride=2, padding=1), 64)
    assert not qualifies(conv(64, 64, 1), 64)
    assert not qualifies(conv(64, 64, 3, padding=1, dilation=2), 64)
    assert not qualifies(conv(64, 64, 3, padding=1, groups=2), 64)
    assert not qualifies(conv(64, 64, 3, padding=(1, 0, 1)), 64)
    assert not qualifies(conv(64, 64, 3, padding=1, padding_mode="reflect"), 64)
    assert not qualifies(torch.nn.ConvTranspose3d(64, 64, 3), 64)


@pytest.mark.parametrize("m", [2, 4])
def test_unet_window_equals_torch_and_layers_are_restored(model_factory, m):
    from napari_medseg.inference.nnunet_predictor import NnUNetPredictor

    net = NnUNetPredictor.from_folder(model_factory(n_classes=3, seed=4), device="cpu").network
    net = net.eval().to(memory_format=torch.channels_last_3d)
    x = torch.randn(1, 1, 16, 32, 32, generator=torch.Generator().manual_seed(2))
    x = x.contiguous(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        ref = net.forward_features(x)
        with winograd_convolutions(net, min_channels=4, m=m) as wnet:
            swapped = [c for c in wnet.modules() if isinstance(c, WinogradConv3d)]
            # every 3x3x3 stride-1 conv of the tiny U-Net except the 1-channel input conv
            assert len(swapped) == sum(qualifies(c, 4) for c in net.modules()) > 0
            out = wnet.forward_features(x)
        assert not any(isinstance(c, WinogradConv3d) for c in net.modules())
        assert torch.equal(net.forward_features(x), ref)
    assert_close_to_scale(out, ref, rel=TOLERANCE[m], name=f"U-Net window, Winograd F({m})")
    assert float((out - ref).abs().max()) > 0  # the Winograd path really ran


def test_gradients_and_other_dtypes_use_torchs_convolution():
    conv = torch.nn.Conv3d(4, 4, 3, padding=1)
    x = torch.randn(1, 4, 6, 6, 6)
    with winograd_convolutions(conv, min_channels=4) as wconv:
        assert isinstance(wconv, WinogradConv3d) and wconv.weight is conv.weight
        y = wconv(x)  # gradient enabled: the reference path, bit for bit
        assert y.requires_grad
        assert torch.equal(y, F.conv3d(x, conv.weight, conv.bias, padding=1))
    conv64 = torch.nn.Conv3d(4, 4, 3, padding=1).double()
    with torch.no_grad(), winograd_convolutions(conv64, min_channels=4) as wconv64:
        x64 = x.double()
        assert torch.equal(wconv64(x64), F.conv3d(x64, conv64.weight, conv64.bias, padding=1))


def test_changed_weights_are_transformed_again():
    conv = torch.nn.Conv3d(4, 4, 3, padding=1)
    x = torch.randn(1, 4, 6, 6, 6)
    with torch.no_grad(), winograd_convolutions(conv, min_channels=4) as wconv:
        wconv(x)
        conv.weight.mul_(-2.0)  # the same tensor, changed in place (e.g. load_state_dict)
        assert_close_to_scale(wconv(x), F.conv3d(x, conv.weight, conv.bias, padding=1),
                              rel=TOLERANCE[2])
