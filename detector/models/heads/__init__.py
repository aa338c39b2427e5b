"""Detection heads; importing this package registers them."""

from detector.models.heads.yolox_head import YOLOXHead

__all__ = ["YOLOXHead"]
