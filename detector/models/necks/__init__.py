"""Necks; importing this package registers them."""

from detector.models.necks.fpn import FPN
from detector.models.necks.pafpn import PAFPN

__all__ = ["FPN", "PAFPN"]
