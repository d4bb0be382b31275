"""nnU-Net networks: built like dynamic_network_architectures, CPU fast paths, unsupported entries refused."""

from __future__ import annotations

import json

import pytest

from napari_medseg.errors import InvalidInputError
from napari_medseg.testing import assert_close_to_scale


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("network", ["PlainConvUNet", "ResidualEncoderUNet"])
def test_network_matches_dynamic_network_architectures(network):
    """Same state-dict keys, shapes and outputs as the package nnU-Net builds from."""
    dna = pytest.importorskip("dynamic_network_architectures.architectures.unet")
    from torch import nn

    from napari_medseg.models.nnunet.network import build_network
    from napari_medseg.testing.nnunet import _architecture

    strides = [[1, 1, 1], [1, 2, 2], [2, 2, 2]]
    kernels = [[1, 3, 3], [3, 3, 3], [3, 3, 3]]
    arch = _architecture(network, 3, [4, 8, 16], strides, kernels, 2)
    ours = build_network(arch, 2, 5).eval()
    kw = dict(arch["arch_kwargs"])
    kw.update(conv_op=nn.Conv3d, norm_op=nn.InstanceNorm3d, nonlin=nn.LeakyReLU)
    ref = getattr(dna, network)(input_channels=2, num_classes=5, deep_supervision=False, **kw).eval()
    a, b = ours.state_dict(), ref.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape for k in a)
    ours.load_state_dict(b, strict=True)
    x = torch.randn(1, 2, 8, 16, 16)
    with torch.inference_mode():
        # oneDNN runs every convolution (cpu_conv.py): the same sums in another order
        assert_close_to_scale(ours(x), ref(x), rel=1e-5, name=network)


def test_unsupported_architecture_entries_refused():
    from napari_medseg.models.nnunet.network import build_network
    from napari_medseg.testing.nnunet import _architecture

    arch = _architecture("PlainConvUNet", 2, [4, 8], [[1, 1, 1], [2, 2, 2]], [[3, 3, 3]] * 2, 1)
    bad = json.loads(json.dumps(arch))
    bad["network_class_name"] = "my_package.evil.Net"
    with pytest.raises(InvalidInputError, match="not supported"):
        build_network(bad, 1, 2)
    bad = json.loads(json.dumps(arch))
    bad["arch_kwargs"]["nonlin"] = "os.system"
    with pytest.raises(InvalidInputError, match="nonlin 'os.system' is not supported"):
        build_network(bad, 1, 2)


def _net(n_in=1, n_classes=7, seed=0):
    from napari_medseg.testing.nnunet import small_network

    return small_network(n_in, n_classes, seed)


def test_single_channel_conv_and_matrix_head_equal_the_reference_network():
    """One input channel (the oneDNN path) and the 1x1 seg layer as a matrix product
    give the dynamic_network_architectures output to float32 rounding."""
    dna = pytest.importorskip("dynamic_network_architectures.architectures.unet")
    from torch import nn

    from napari_medseg.testing.nnunet import _architecture

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
