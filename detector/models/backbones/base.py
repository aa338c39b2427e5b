"""Shared shape of the Darknet-family backbones."""

from __future__ import annotations

import torch
from torch import nn


class DarknetStages(nn.Module):
    """A ``stem`` then stages ``dark2``..``dark5``; returns the dark3, dark4, dark5 maps
    (strides 8, 16, 32). Subclasses build the modules and set ``out_channels``."""

    strides = (8, 16, 32)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.dark2(self.stem(x))
        c3 = self.dark3(x)
        c4 = self.dark4(c3)
        return [c3, c4, self.dark5(c4)]
