"""Small building blocks shared by the SAM-Med3D encoder, prompt encoder and decoder."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def derived(module: nn.Module, name: str, make: Callable[..., torch.Tensor], *sources: torch.Tensor):
    """``make(*sources)``, kept on ``module`` until one of ``sources`` changes.

    For per-click constants computed from weights (reordered matrices, positional terms
    projected once): a source counts as changed when it is another tensor, has been
    modified in place (its version counter) or moved (its storage). The cache holds the
    sources themselves, so an identity cannot be reused by a new tensor while it lives.
    Inference-mode tensors have no version counter: their in-place changes (only possible
    inside ``torch.inference_mode``) are not seen.
    """
    cache = module.__dict__.setdefault("_derived_cache", {})
    key = tuple((None if t.is_inference() else t._version, t.data_ptr(), t.device, t.dtype) for t in sources)
    hit = cache.get(name)
    if hit is not None and len(hit[0]) == len(sources) and all(a is b for a, b in zip(hit[0], sources)) \
            and hit[1] == key:
        return hit[2]
    with torch.no_grad():
        value = make(*sources)
    cache[name] = (sources, key, value)
    return value


class LayerNorm3d(nn.Module):
    """Layer normalisation over the channel axis of a ``B x C x D x H x W`` tensor.

    Written out (rather than ``nn.LayerNorm`` on a permuted tensor) because the
    published checkpoints were trained with exactly this formula and eps=1e-6.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None, None] * x + self.bias[:, None, None, None]


class MLPBlock(nn.Module):
    """Two linear layers with an activation between them (``lin1``/``lin2`` keys)."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (``layers.N`` keys)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims_in, dims_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = torch.relu(x)
        return x


def patch_conv3d(x: torch.Tensor, conv: nn.Conv3d) -> torch.Tensor:
    """``conv(x)`` for a non-overlapping Conv3d (kernel == stride), as one matrix product.

    Same result as ``conv(x)`` up to float rounding, but several times faster on CPU
    than PyTorch's generic 3D convolution (no im2col copies): the image encoder's patch
    embedding.
    """
    kd, kh, kw = conv.kernel_size
    b, c, d, h, w = x.shape
    od, oh, ow = d // kd, h // kh, w // kw
    x = x[:, :, : od * kd, : oh * kh, : ow * kw]
    cols = x.reshape(b, c, od, kd, oh, kh, ow, kw).permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, od * oh * ow, -1)
    out = cols @ conv.weight.reshape(conv.out_channels, -1).t()
    if conv.bias is not None:
        out = out + conv.bias
    return out.reshape(b, od, oh, ow, -1).permute(0, 4, 1, 2, 3)
