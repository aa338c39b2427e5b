"""Multi-object tracking: Kalman filter, association, the ByteTrack-style tracker, frame sources,
the whole-sequence pipeline, MOTChallenge file I/O and MOT metrics.

Importing the package registers ``ByteTracker`` in ``TRACKERS``.
"""

from detector.errors import MotFormatError
from detector.tracking.kalman import KalmanFilter
from detector.tracking.metrics import evaluate_mot, format_mot_table
from detector.tracking.mot_io import (
    group_by_frame,
    mot_to_xyxy,
    read_mot,
    read_seqinfo,
    write_mot_results,
    xyxy_to_mot_xywh,
)
from detector.tracking.tracker import ByteTracker, Tracks

__all__ = [
    "ByteTracker",
    "KalmanFilter",
    "Tracks",
    "MotFormatError",
    "evaluate_mot",
    "format_mot_table",
    "group_by_frame",
    "mot_to_xyxy",
    "read_mot",
    "read_seqinfo",
    "write_mot_results",
    "xyxy_to_mot_xywh",
]
