"""Path-aggregation FPN of YOLOX: a top-down pass then a bottom-up pass with CSP blocks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from detector.models.layers import ConvBNAct, CSPLayer, check_multiplier, conv_block
from detector.registry import NECKS


@NECKS.register()
class PAFPN(nn.Module):
    """PAFPN over three maps with channels ``in_channels`` = (c3, c4, c5), strides 8/16/32.

    Outputs three maps with the same channels as its inputs. Module names are YOLOX's
    (``lateral_conv0``, ``C3_p4``, ``reduce_conv1``, ``C3_p3``, ``bu_conv2``, ``C3_n3``,
    ``bu_conv1``, ``C3_n4``). ``block`` is the 3x3 block of the CSP bottlenecks (``conv``,
    ``repvgg``, ``qarepvgg``; see ``CSPDarknet``).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        depth: float = 1.0,
        depthwise: bool = False,
        act: str = "silu",
        block: str = "conv",
    ) -> None:
        super().__init__()
        if len(in_channels) != 3:
            raise ValueError(f"PAFPN expects 3 input levels, got in_channels={list(in_channels)}")
        c3, c4, c5 = in_channels
        n = round(3 * check_multiplier(depth, "depth"))

        def csp(c_in: int, c_out: int) -> CSPLayer:
            return CSPLayer(c_in, c_out, n, shortcut=False, depthwise=depthwise, act=act, block=block)

        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.lateral_conv0 = ConvBNAct(c5, c4, 1, act=act)
        self.C3_p4 = csp(2 * c4, c4)
        self.reduce_conv1 = ConvBNAct(c4, c3, 1, act=act)
        self.C3_p3 = csp(2 * c3, c3)
        self.bu_conv2 = conv_block(c3, c3, 3, 2, depthwise, act)
        self.C3_n3 = csp(2 * c3, c4)
        self.bu_conv1 = conv_block(c4, c4, 3, 2, depthwise, act)
        self.C3_n4 = csp(2 * c4, c5)
        self.out_channels = [c3, c4, c5]

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        x3, x4, x5 = features
        top5 = self.lateral_conv0(x5)
        p4 = self.C3_p4(torch.cat((self.upsample(top5), x4), dim=1))
        top4 = self.reduce_conv1(p4)
        out3 = self.C3_p3(torch.cat((self.upsample(top4), x3), dim=1))
        out4 = self.C3_n3(torch.cat((self.bu_conv2(out3), top4), dim=1))
        out5 = self.C3_n4(torch.cat((self.bu_conv1(out4), top5), dim=1))
        return [out3, out4, out5]
