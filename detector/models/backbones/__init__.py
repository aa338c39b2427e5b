"""Backbones; importing this package registers them."""

from detector.models.backbones.csp_darknet import CSP_DARKNET_PRESETS, CSPDarknet
from detector.models.backbones.darknet import Darknet53

__all__ = ["CSP_DARKNET_PRESETS", "CSPDarknet", "Darknet53"]
