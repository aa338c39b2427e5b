"""CSP-Darknet backbone of YOLOv5 / YOLOX, scaled by depth and width multipliers."""

from __future__ import annotations

from torch import nn

from detector.models.backbones.base import DarknetStages
from detector.models.layers import SPP, CSPLayer, Focus, check_multiplier, conv_block
from detector.registry import BACKBONES


@BACKBONES.register()
class CSPDarknet(DarknetStages):
    """Focus stem + four CSP stages (``dark2``..``dark5``, the last with SPP).

    Returns the ``dark3``, ``dark4``, ``dark5`` maps (strides 8, 16, 32) with
    ``out_channels = [256, 512, 1024] * width``. ``block`` is the 3x3 block of the CSP
    bottlenecks: ``conv`` (YOLOX's), or the re-parameterisable ``repvgg`` / ``qarepvgg``
    (``detector.models.rep``), folded into plain convs by ``Detector.fuse()``.
    """

    def __init__(
        self,
        depth: float = 1.0,
        width: float = 1.0,
        depthwise: bool = False,
        act: str = "silu",
        in_channels: int = 3,
        block: str = "conv",
    ) -> None:
        super().__init__()
        base = int(check_multiplier(width, "width") * 64)
        n = max(round(check_multiplier(depth, "depth") * 3), 1)

        def stage(c_in: int, c_out: int, blocks: int, with_spp: bool = False) -> nn.Sequential:
            layers: list[nn.Module] = [conv_block(c_in, c_out, 3, 2, depthwise, act)]
            if with_spp:
                layers.append(SPP(c_out, c_out, act=act))
            layers.append(
                CSPLayer(c_out, c_out, blocks, shortcut=not with_spp, depthwise=depthwise, act=act, block=block)
            )
            return nn.Sequential(*layers)

        self.stem = Focus(in_channels, base, kernel_size=3, act=act)
        self.dark2 = stage(base, base * 2, n)
        self.dark3 = stage(base * 2, base * 4, n * 3)
        self.dark4 = stage(base * 4, base * 8, n * 3)
        self.dark5 = stage(base * 8, base * 16, n, with_spp=True)
        self.out_channels = [base * 4, base * 8, base * 16]
