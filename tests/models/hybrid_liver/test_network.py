"""The hybrid liver network: any input size, positional embedding."""

from __future__ import annotations

import pytest
import torch

from napari_medseg.errors import CheckpointMismatchError
from napari_medseg.models import hybrid_liver as hl


def test_network_any_size_and_pos_embedding():
    torch.manual_seed(0)
    net = hl.build_model({"features": 4, "heads": 2, "transformer_layers": 1}).eval()
    for shape in ((1, 3, 37, 53), (2, 3, 64, 64), (1, 3, 8, 120)):
        out = net(torch.randn(shape))
        assert out.shape == (shape[0], 2, *shape[2:])
    emb = hl.sincos_2d(3, 5, 16)
    assert emb.shape == (15, 16) and torch.allclose(hl.sincos_2d(3, 5, 16), emb)
    assert not torch.allclose(emb[0], emb[1])  # positions differ
    with pytest.raises(CheckpointMismatchError, match="unknown hybrid-liver architecture option 'widht'"):
        hl.build_model({"widht": 3})
