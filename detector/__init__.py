"""A YOLO-style object detection and pedestrian-tracking framework on PyTorch."""

from detector import assigners, losses  # noqa: F401  (registers the losses and assigners)
from detector.config import dump_config, load_config
from detector.models import build_model, load_yolox_weights

__version__ = "0.1.0"
__all__ = ["build_model", "dump_config", "load_config", "load_yolox_weights"]
