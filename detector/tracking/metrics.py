"""MOT metrics of tracker results against ground truth: CLEAR-MOT and identity metrics with
motmetrics, HOTA with TrackEval (when it is installed).

Inputs are rows in the ``read_mot`` layout ``[N, >=6]``: frame, id, x, y, w, h (MOT top-left
xywh pixels), then the score / gt flag in column 7 when present.

Which rows count. Ground truth: rows whose flag (column 7) is at least 1, as motmetrics' own
MOTChallenge evaluation loads gt (``mm.io.loadtxt(fmt="mot15-2D", min_confidence=1)`` in
``motmetrics/apps/eval_motchallenge.py``; ``load_motchallenge`` documents that gt needs it).
MOT15 gt marks every box 1, MOT16+ gt marks boxes to ignore with 0, so this keeps what both
devkits keep. A gt array with rows but none flagged >= 1 (say a 6-column file, whose flag reads
-1) is refused rather than scored as empty. Tracker results: every row counts, as in
motmetrics. Not done: MOT16+ distractor classes (column 8 of gt); TrackEval's MOT17 devkit
also drops tracker boxes matched to those, so on MOT16/17 our FP count can be higher.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import numpy as np

from detector.tracking.geometry import box_iou_xywh
from detector.tracking.mot_io import group_by_frame

#: motmetrics names -> ours (snake_case; the counts are ints).
_MOTMETRICS_KEYS = {
    "mota": "mota",
    "motp": "motp",
    "idf1": "idf1",
    "idp": "idp",
    "idr": "idr",
    "precision": "precision",
    "recall": "recall",
    "num_switches": "num_switches",
    "num_fragmentations": "num_fragmentations",
    "mostly_tracked": "mostly_tracked",
    "partially_tracked": "partially_tracked",
    "mostly_lost": "mostly_lost",
    "num_false_positives": "num_false_positives",
    "num_misses": "num_misses",
    "num_matches": "num_matches",
    "num_objects": "num_gt",
    "num_predictions": "num_predictions",
    "num_unique_objects": "num_gt_tracks",
    "num_frames": "num_frames",
}
_INT_KEYS = {
    "num_switches",
    "num_fragmentations",
    "mostly_tracked",
    "partially_tracked",
    "mostly_lost",
    "num_false_positives",
    "num_misses",
    "num_matches",
    "num_gt",
    "num_predictions",
    "num_gt_tracks",
    "num_frames",
}


@functools.cache
def import_motmetrics() -> ModuleType:
    """motmetrics, imported on first use (it pulls in pandas), working under NumPy 2."""
    # motmetrics 1.4.0 (the newest release) calls np.asfarray in distances.iou_matrix, which
    # NumPy 2.0 removed. Put back the one-line equivalent, only when it is missing; it changes
    # nothing for other code (NumPy 1.x keeps its own). Remove once motmetrics stops calling it.
    if not hasattr(np, "asfarray"):
        np.asfarray = lambda a, dtype=np.float64: np.asarray(a, dtype=dtype)  # type: ignore[attr-defined]
    import motmetrics

    return motmetrics


@functools.cache
def import_trackeval() -> ModuleType | None:
    """TrackEval's metrics module, or None when TrackEval is not installed."""
    try:
        import trackeval.metrics
    except ImportError:
        return None
    return trackeval.metrics


def evaluate_mot(gt: np.ndarray, results: np.ndarray, iou_threshold: float = 0.5) -> dict[str, float | int]:
    """MOT metrics of ``results`` against ``gt`` (both ``[N, >=6]`` read_mot rows, one sequence).

    A gt box and a result box can match when their IoU is at least ``iou_threshold``. Returns
    fractions (``mota``, ``idf1``, ``idp``, ``idr``, ``precision``, ``recall``; ``motp`` is
    motmetrics' mean 1 - IoU of the matches, so lower is better) and counts (``num_switches``,
    ``num_fragmentations``, ``mostly_tracked``, ``partially_tracked``, ``mostly_lost``,
    ``num_false_positives``, ``num_misses``, ``num_matches``, ``num_gt``, ``num_predictions``,
    ``num_gt_tracks``, ``num_frames``), plus ``hota``, ``deta``, ``assa`` and ``loca`` (means over
    TrackEval's IoU thresholds 0.05..0.95; ``iou_threshold`` does not apply) when TrackEval is
    installed. ``num_frames`` counts the frames with a gt or a result box. A ratio with nothing
    to divide is NaN (or infinite: MOTA without gt). Raises ValueError for bad input.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold: got {iou_threshold}; expected a value in (0, 1]")
    gt = _counted_gt(_as_rows(gt, "gt"))
    results = _as_rows(results, "results")
    gt_frames, result_frames = group_by_frame(gt), group_by_frame(results)
    frames = sorted(set(gt_frames) | set(result_frames))  # as motmetrics: a frame of either side
    no_gt, no_results = np.zeros((0, gt.shape[1])), np.zeros((0, results.shape[1]))
    pairs = [(gt_frames.get(f, no_gt), result_frames.get(f, no_results)) for f in frames]

    mm = import_motmetrics()
    acc = mm.MOTAccumulator(auto_id=False)
    for frame, (g, r) in zip(frames, pairs, strict=True):
        # iou_matrix takes MOT xywh and gives 1 - IoU, NaN (no match) where IoU < iou_threshold.
        dist = mm.distances.iou_matrix(g[:, 2:6], r[:, 2:6], max_iou=1.0 - iou_threshold)
        acc.update(g[:, 1].astype(np.int64), r[:, 1].astype(np.int64), dist, frameid=frame)
    names = list(_MOTMETRICS_KEYS)
    summary = mm.metrics.create().compute(acc, metrics=names, return_dataframe=False)
    metrics: dict[str, float | int] = {}
    for theirs, ours in _MOTMETRICS_KEYS.items():
        value = float(summary[theirs])
        metrics[ours] = int(value) if ours in _INT_KEYS else value
    metrics.update(hota_metrics(pairs))
    return metrics


def hota_metrics(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """HOTA, DetA, AssA and LocA with TrackEval, from per-frame ``(gt rows, result rows)``;
    {} when TrackEval is not installed."""
    te_metrics = import_trackeval()
    if te_metrics is None:
        return {}
    # The data dict of TrackEval's HOTA.eval_sequence: per frame, ids numbered 0..K-1 over the
    # sequence and a [gt, result] IoU matrix; plus the totals. TrackEval's own MOT dataset
    # class builds the same from files (and also re-checks ids, which _as_rows has done).
    gt_ids, num_gt_ids = _dense_ids([g[:, 1] for g, _ in pairs])
    result_ids, num_result_ids = _dense_ids([r[:, 1] for _, r in pairs])
    data: dict[str, Any] = {
        "gt_ids": gt_ids,
        "tracker_ids": result_ids,
        "similarity_scores": [box_iou_xywh(g[:, 2:6], r[:, 2:6]) for g, r in pairs],
        "num_gt_dets": sum(len(g) for g, _ in pairs),
        "num_tracker_dets": sum(len(r) for _, r in pairs),
        "num_gt_ids": num_gt_ids,
        "num_tracker_ids": num_result_ids,
        "num_timesteps": len(pairs),
    }
    res = te_metrics.HOTA().eval_sequence(data)
    return {name.lower(): float(np.mean(res[name])) for name in ("HOTA", "DetA", "AssA", "LocA")}


def _dense_ids(per_frame: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Per-frame track ids renumbered 0..K-1 over the whole sequence, and K."""
    if not per_frame:
        return [], 0
    ids = np.unique(np.concatenate(per_frame))
    return [np.searchsorted(ids, f).astype(np.int64) for f in per_frame], len(ids)


def _as_rows(rows: np.ndarray, what: str) -> np.ndarray:
    """``rows`` as float64 ``[N, >=6]`` with unique integer ids per frame (ValueError otherwise)."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.size == 0:
        return np.zeros((0, max(rows.shape[-1] if rows.ndim == 2 else 0, 7)))
    if rows.ndim != 2 or rows.shape[1] < 6:
        raise ValueError(f"{what}: got an array of shape {rows.shape}; expected [N, >=6] MOT rows")
    if not np.isfinite(rows[:, :6]).all():
        raise ValueError(f"{what}: non-finite frame, id or box; expected finite MOT rows")
    if (rows[:, :2] != np.round(rows[:, :2])).any():
        raise ValueError(f"{what}: a frame or id is not an integer; expected integer frames and ids")
    keys = rows[:, :2]
    unique, counts = np.unique(keys, axis=0, return_counts=True)
    if (counts > 1).any():
        frame, ident = unique[np.argmax(counts > 1)]
        hint = " (a detection file, whose ids are all -1?)" if ident == -1 else ""
        raise ValueError(
            f"{what}: frame {int(frame)} has id {int(ident)} more than once{hint}; expected one box per id and frame"
        )
    return rows


def _counted_gt(gt: np.ndarray) -> np.ndarray:
    """The gt rows that count: flag (column 7) >= 1; all rows of a 6-column array."""
    if gt.shape[1] < 7 or len(gt) == 0:
        return gt
    kept = gt[gt[:, 6] >= 1]
    if len(kept) == 0:
        raise ValueError(
            f"gt: none of its {len(gt)} rows has flag (column 7) >= 1; expected 1 for boxes to evaluate, 0 to ignore"
        )
    return kept


#: Table rows: (key, label, format) in the order MOTChallenge tables use.
_TABLE = [
    ("hota", "HOTA", "{:.3f}"),
    ("deta", "DetA", "{:.3f}"),
    ("assa", "AssA", "{:.3f}"),
    ("mota", "MOTA", "{:.3f}"),
    ("idf1", "IDF1", "{:.3f}"),
    ("idp", "IDP", "{:.3f}"),
    ("idr", "IDR", "{:.3f}"),
    ("motp", "MOTP (1 - IoU)", "{:.3f}"),
    ("loca", "LocA", "{:.3f}"),
    ("precision", "Precision", "{:.3f}"),
    ("recall", "Recall", "{:.3f}"),
    ("mostly_tracked", "MT", "{}"),
    ("partially_tracked", "PT", "{}"),
    ("mostly_lost", "ML", "{}"),
    ("num_false_positives", "FP", "{}"),
    ("num_misses", "FN", "{}"),
    ("num_switches", "IDSW", "{}"),
    ("num_fragmentations", "Frag", "{}"),
    ("num_matches", "matches", "{}"),
    ("num_gt", "GT boxes", "{}"),
    ("num_predictions", "result boxes", "{}"),
    ("num_gt_tracks", "GT tracks", "{}"),
    ("num_frames", "frames", "{}"),
]


def format_mot_table(metrics: dict[str, float | int]) -> str:
    """A two-column markdown table (metric, value) of ``evaluate_mot``'s result; NaN shows as
    n/a and keys it does not know come last as they are."""
    known = {key for key, _, _ in _TABLE}
    rows = [(label, fmt, metrics[key]) for key, label, fmt in _TABLE if key in metrics]
    rows += [
        (key, "{:.3f}" if isinstance(value, float) else "{}", value)
        for key, value in metrics.items()
        if key not in known
    ]
    lines = ["| metric | value |", "|---|---|"]
    for label, fmt, value in rows:
        shown = "n/a" if isinstance(value, float) and not np.isfinite(value) else fmt.format(value)
        lines.append(f"| {label} | {shown} |")
    return "\n".join(lines)
