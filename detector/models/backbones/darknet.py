"""Darknet-53 backbone of YOLOv3 (LeakyReLU, residual stages, SPP block on the last stage)."""

from __future__ import annotations

import torch
from torch import nn

from detector.models.backbones.base import DarknetStages
from detector.models.layers import SPP, ConvBNAct
from detector.registry import BACKBONES


class ResidualBlock(nn.Module):
    """x + conv3x3(conv1x1(x)) with the channels halved in between."""

    def __init__(self, channels: int, act: str = "lrelu") -> None:
        super().__init__()
        self.layer1 = ConvBNAct(channels, channels // 2, 1, act=act)
        self.layer2 = ConvBNAct(channels // 2, channels, 3, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layer2(self.layer1(x))


def _stage(in_channels: int, blocks: int, act: str) -> list[nn.Module]:
    """A stride-2 conv doubling the channels, then ``blocks`` residual blocks."""
    out = in_channels * 2
    return [ConvBNAct(in_channels, out, 3, 2, act=act), *(ResidualBlock(out, act) for _ in range(blocks))]


@BACKBONES.register()
class Darknet53(DarknetStages):
    """Darknet-53 (the YOLOX ``Darknet(53)`` layout). Returns maps at strides 8, 16, 32 with
    ``out_channels = [256, 512, 512]``: the last stage ends in YOLOX's SPP block, which
    halves its 1024 channels.
    """

    def __init__(self, act: str = "lrelu", in_channels: int = 3, stem_channels: int = 32) -> None:
        super().__init__()
        c = stem_channels
        self.stem = nn.Sequential(ConvBNAct(in_channels, c, 3, act=act), *_stage(c, 1, act))
        self.dark2 = nn.Sequential(*_stage(c * 2, 2, act))
        self.dark3 = nn.Sequential(*_stage(c * 4, 8, act))
        self.dark4 = nn.Sequential(*_stage(c * 8, 8, act))
        c5 = c * 32
        self.dark5 = nn.Sequential(
            *_stage(c * 16, 4, act),
            ConvBNAct(c5, c5 // 2, 1, act=act),
            ConvBNAct(c5 // 2, c5, 3, act=act),
            SPP(c5, c5 // 2, act=act),
            ConvBNAct(c5 // 2, c5, 3, act=act),
            ConvBNAct(c5, c5 // 2, 1, act=act),
        )
        self.out_channels = [c * 8, c * 16, c5 // 2]
