"""Backbones; importing this package registers them."""

from detector.models.backbones.csp_darknet import CSPDarknet
from detector.models.backbones.darknet import Darknet53

__all__ = ["CSPDarknet", "Darknet53"]
