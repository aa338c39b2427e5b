"""Box format conversions.

Formats: ``xyxy`` (x1, y1, x2, y2), ``cxcywh`` (centre x, centre y, width, height), ``xywh``
(COCO: top-left x, top-left y, width, height). All in pixels, last dimension 4.
"""

from __future__ import annotations

import torch


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` cx, cy, w, h -> x1, y1, x2, y2."""
    cxcy, half = boxes[..., :2], boxes[..., 2:4] / 2
    return torch.cat((cxcy - half, cxcy + half), dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` x1, y1, x2, y2 -> cx, cy, w, h."""
    return torch.cat(((boxes[..., :2] + boxes[..., 2:4]) / 2, boxes[..., 2:4] - boxes[..., :2]), dim=-1)


def xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` x1, y1, x2, y2 -> COCO x, y, w, h."""
    return torch.cat((boxes[..., :2], boxes[..., 2:4] - boxes[..., :2]), dim=-1)


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` COCO x, y, w, h -> x1, y1, x2, y2."""
    return torch.cat((boxes[..., :2], boxes[..., :2] + boxes[..., 2:4]), dim=-1)
