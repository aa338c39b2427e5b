"""Multi-object tracking: Kalman filters, association, the trackers (ByteTrack-style, with
OC-SORT's and BoT-SORT's ideas), camera-motion compensation, the ReID hook, frame sources, the
whole-sequence pipeline with its offline clean-up (joining split tracks, extending tracks over
weak detections, gap interpolation in tracks that are not sparse), MOTChallenge file I/O and MOT
metrics.

Importing the package registers ``ByteTracker``, ``OCSortTracker`` and ``BotSortTracker`` in
``TRACKERS``.
"""

from detector.errors import MotFormatError
from detector.tracking.appearance import ReID, TorchReID
from detector.tracking.camera_motion import CameraMotion
from detector.tracking.kalman import KalmanFilter, KalmanFilterXYWH
from detector.tracking.metrics import evaluate_mot, format_mot_table
from detector.tracking.mot_io import (
    group_by_frame,
    mot_to_xyxy,
    read_mot,
    read_seqinfo,
    write_mot_results,
    xyxy_to_mot_xywh,
)
from detector.tracking.postprocess import extend_tracks, interpolate_gaps, link_tracklets
from detector.tracking.tracker import BotSortTracker, ByteTracker, OCSortTracker, Tracks

__all__ = [
    "BotSortTracker",
    "ByteTracker",
    "CameraMotion",
    "KalmanFilter",
    "KalmanFilterXYWH",
    "OCSortTracker",
    "ReID",
    "TorchReID",
    "Tracks",
    "MotFormatError",
    "evaluate_mot",
    "extend_tracks",
    "format_mot_table",
    "group_by_frame",
    "interpolate_gaps",
    "link_tracklets",
    "mot_to_xyxy",
    "read_mot",
    "read_seqinfo",
    "write_mot_results",
    "xyxy_to_mot_xywh",
]
