"""Network layers, backbones, necks, heads and the assembled detector."""

from detector.models import backbones, heads, necks, rep  # noqa: F401  (registers the parts)
from detector.models.detector import Detector, build_model
from detector.models.yolox_weights import convert_yolox_state_dict, load_yolox_weights

__all__ = ["Detector", "build_model", "convert_yolox_state_dict", "load_yolox_weights"]
