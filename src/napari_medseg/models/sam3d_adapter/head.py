"""3DSAM-adapter multi-level segmentation head (four feature levels + the image)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1, bias=False),
        nn.InstanceNorm3d(cout),
        nn.ReLU(),
        nn.Conv3d(cout, cout, 3, padding=1, bias=False),
        nn.InstanceNorm3d(cout),
        nn.ReLU(),
    )


class MLAHead(nn.Module):
    def __init__(self, mla_channels: int = 256, head_channels: int = 128) -> None:
        super().__init__()
        self.head2 = _conv_block(mla_channels, head_channels)
        self.head3 = _conv_block(mla_channels, head_channels)
        self.head4 = _conv_block(mla_channels, head_channels)
        self.head5 = _conv_block(mla_channels, head_channels)

    def forward(self, feats: Sequence[torch.Tensor], scale: float) -> torch.Tensor:
        heads = (self.head2, self.head3, self.head4, self.head5)
        return torch.cat(
            [F.interpolate(h(f), scale_factor=scale, mode="trilinear", align_corners=True) for h, f in zip(heads, feats)],
            dim=1,
        )


class MultiLevelHead(nn.Module):
    """Logits (1, classes, ...) from four feature maps and the resized image."""

    def __init__(self, mla_channels: int = 256, head_channels: int = 128, num_classes: int = 2) -> None:
        super().__init__()
        self.mlahead = MLAHead(mla_channels, head_channels)
        self.cls = nn.Sequential(
            nn.Conv3d(4 * head_channels + 1, head_channels, 3, padding=1, bias=False),
            nn.InstanceNorm3d(head_channels),
            nn.ReLU(),
            nn.Conv3d(head_channels, num_classes, 3, padding=1, bias=False),
        )

    def forward(self, feats: Sequence[torch.Tensor], image: torch.Tensor, scale1: float, scale2: float) -> torch.Tensor:
        x = torch.cat([self.mlahead(feats, scale1), image], dim=1)
        x = self.cls(x)
        return F.interpolate(x, scale_factor=scale2, mode="trilinear", align_corners=True)
