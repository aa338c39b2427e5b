"""Label assigners: which priors are positives for which ground-truth box (registered in
ASSIGNERS). All share ``Assigner`` and return an ``AssignResult``, so any head trains with any."""

from detector.assigners.atss import ATSSAssigner
from detector.assigners.base import BACKGROUND, IGNORE, Assigner, AssignResult, pad_targets
from detector.assigners.simota import SimOTAAssigner, SimOTAResult, assign_simota
from detector.assigners.yolov5 import YOLOV5_ANCHORS, YOLOv5Assigner, match_yolov5

__all__ = [
    "BACKGROUND",
    "IGNORE",
    "YOLOV5_ANCHORS",
    "ATSSAssigner",
    "AssignResult",
    "Assigner",
    "SimOTAAssigner",
    "SimOTAResult",
    "YOLOv5Assigner",
    "assign_simota",
    "match_yolov5",
    "pad_targets",
]
