"""Top-down FPN of YOLOv3 (the YOLOX ``YOLOFPN`` layout)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from detector.models.layers import ConvBNAct
from detector.registry import NECKS


def _embedding(in_channels: int, channels: int, act: str) -> nn.Sequential:
    """Five alternating 1x1 / 3x3 convs ending at ``channels`` (YOLOv3's detection block)."""
    wide = channels * 2
    return nn.Sequential(
        ConvBNAct(in_channels, channels, 1, act=act),
        ConvBNAct(channels, wide, 3, act=act),
        ConvBNAct(wide, channels, 1, act=act),
        ConvBNAct(channels, wide, 3, act=act),
        ConvBNAct(wide, channels, 1, act=act),
    )


@NECKS.register()
class FPN(nn.Module):
    """Top-down feature pyramid over three maps (c3, c4, c5) at strides 8/16/32.

    Each step halves the coarser map's channels with a 1x1 conv, upsamples it 2x,
    concatenates it with the finer map and mixes them with a 5-conv block. Outputs
    ``out_channels = [c5 // 4, c5 // 2, c5]`` for (c3, c4, c5): ``[128, 256, 512]`` on
    Darknet-53.
    """

    def __init__(self, in_channels: Sequence[int], act: str = "lrelu") -> None:
        super().__init__()
        if len(in_channels) != 3:
            raise ValueError(f"FPN expects 3 input levels, got in_channels={list(in_channels)}")
        c3, c4, c5 = in_channels
        mid4, mid3 = c5 // 2, c5 // 4
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.out1_cbl = ConvBNAct(c5, mid4, 1, act=act)
        self.out1 = _embedding(c4 + mid4, mid4, act)
        self.out2_cbl = ConvBNAct(mid4, mid3, 1, act=act)
        self.out2 = _embedding(c3 + mid3, mid3, act)
        self.out_channels = [mid3, mid4, c5]

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        x3, x4, x5 = features
        out4 = self.out1(torch.cat((self.upsample(self.out1_cbl(x5)), x4), dim=1))
        out3 = self.out2(torch.cat((self.upsample(self.out2_cbl(out4)), x3), dim=1))
        return [out3, out4, x5]
