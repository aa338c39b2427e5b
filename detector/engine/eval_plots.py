"""PNG pictures of a COCO evaluation: precision-recall curves, confusion matrix, per-class AP bars.

Boxes are ``xyxy`` in pixels and labels contiguous ``0..C-1`` unless a function says otherwise.
Every PNG is written atomically (temporary file beside it, then ``os.replace``): a reader never
sees a half-written picture.

Confusion-matrix convention (:func:`confusion_matrix`, :func:`plot_confusion_matrix`): ``[C+1, C+1]``,
**rows = predicted class, columns = true class**, index ``C`` = background. ``m[p, t]`` counts
detections of class ``p`` matched to a ground-truth box of class ``t``; ``m[C, t]`` counts
ground-truth boxes of class ``t`` that no detection matched (missed); ``m[p, C]`` counts detections
of class ``p`` that matched no ground-truth box (false positives); ``m[C, C]`` is always 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")  # files only: training machines have no display
import matplotlib.pyplot as plt  # noqa: E402

from detector.ops.boxes import box_iou  # noqa: E402
from detector.utils.fileio import atomic_write  # noqa: E402

__all__ = [
    "confusion_matrix",
    "plot_class_ap",
    "plot_confusion_matrix",
    "plot_pr_curves",
    "write_evaluation_plots",
]

#: With more classes than this, PR curves are drawn thin and grey without a legend.
MAX_LEGEND_CLASSES = 10
#: With at most this many classes, the confusion matrix and the AP bars carry their numbers.
MAX_ANNOTATED_CLASSES = 30
_DPI = 100


def _boxes(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1, 4)


def _vector(x: Any, dtype: Any) -> np.ndarray:
    return np.asarray(x, dtype=dtype).reshape(-1)


def _match_greedy(iou: np.ndarray, iou_threshold: float) -> list[tuple[int, int]]:
    """``(gt index, det index)`` pairs of ``iou [G, D]``: highest IoU first, each row and column
    used at most once, only pairs with IoU >= ``iou_threshold``. Ties keep row-major order."""
    gi, di = np.nonzero(iou >= iou_threshold)
    order = np.argsort(-iou[gi, di], kind="stable")
    used_g, used_d, pairs = set(), set(), []
    for g, d in zip(gi[order].tolist(), di[order].tolist(), strict=True):
        if g not in used_g and d not in used_d:
            used_g.add(g)
            used_d.add(d)
            pairs.append((g, d))
    return pairs


def confusion_matrix(
    gt_boxes: Sequence[np.ndarray],
    gt_labels: Sequence[np.ndarray],
    det_boxes: Sequence[np.ndarray],
    det_labels: Sequence[np.ndarray],
    det_scores: Sequence[np.ndarray],
    num_classes: int,
    iou_threshold: float = 0.45,
    conf_threshold: float = 0.25,
) -> np.ndarray:
    """Detection confusion matrix summed over images, ``int64 [C+1, C+1]``.

    Args:
        gt_boxes, gt_labels: per image, ground truth ``[G, 4]`` xyxy pixels and ``[G]`` labels 0..C-1.
        det_boxes, det_labels, det_scores: per image, detections ``[D, 4]`` xyxy pixels, ``[D]``
            labels 0..C-1 and ``[D]`` scores. Any of G, D may be 0.
        num_classes: C.
        iou_threshold: a pair matches when its IoU is >= this.
        conf_threshold: only detections with score >= this take part.

    Per image, the detections that pass ``conf_threshold`` are matched to the ground truth
    greedily by IoU (highest-IoU pair first, each box used once) whatever their classes, so a
    wrong class lands off the diagonal. Rows = predicted class, columns = true class, index C =
    background: see the module docstring.
    """
    n = len(gt_boxes)
    if not n == len(gt_labels) == len(det_boxes) == len(det_labels) == len(det_scores):
        raise ValueError("gt_boxes, gt_labels, det_boxes, det_labels and det_scores need one entry per image")
    c = int(num_classes)
    matrix = np.zeros((c + 1, c + 1), dtype=np.int64)
    for i in range(n):
        gb, gl = _boxes(gt_boxes[i]), _vector(gt_labels[i], np.int64)
        db, dl, ds = _boxes(det_boxes[i]), _vector(det_labels[i], np.int64), _vector(det_scores[i], np.float64)
        if len(gb) != len(gl) or not len(db) == len(dl) == len(ds):
            raise ValueError(
                f"image {i}: {len(gb)} gt boxes, {len(gl)} gt labels; "
                f"{len(db)} det boxes, {len(dl)} labels, {len(ds)} scores"
            )
        for name, labels in (("gt", gl), ("detection", dl)):
            if len(labels) and (labels.min() < 0 or labels.max() >= c):
                raise ValueError(f"image {i}: {name} label outside 0..{c - 1}")
        keep = ds >= conf_threshold
        db, dl = db[keep], dl[keep]
        iou = box_iou(torch.from_numpy(gb), torch.from_numpy(db)).numpy()
        pairs = _match_greedy(iou, iou_threshold)
        matched_g = np.zeros(len(gb), dtype=bool)
        matched_d = np.zeros(len(db), dtype=bool)
        for g, d in pairs:
            matrix[dl[d], gl[g]] += 1
            matched_g[g] = matched_d[d] = True
        np.add.at(matrix, (c, gl[~matched_g]), 1)  # missed ground truth: background row
        np.add.at(matrix, (dl[~matched_d], c), 1)  # false positives: background column
    return matrix


def _save(fig: Any, path: Path) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically and close it."""
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=_DPI, bbox_inches="tight"), binary=True)
    finally:
        plt.close(fig)
    return path


def _mean_valid(p: np.ndarray) -> float:
    """Mean over entries ``> -1`` (pycocotools' "no data" marker); NaN if none."""
    valid = p[p > -1]
    return float(valid.mean()) if valid.size else math.nan


def _pr_figure(curves: np.ndarray, names: Sequence[str], title: str, ap_label: str, path: Path) -> Path:
    """``curves [R, K]`` precision at R evenly spaced recall points (-1 = no data) -> PNG."""
    recall = np.linspace(0.0, 1.0, curves.shape[0])
    valid_classes = [k for k in range(curves.shape[1]) if (curves[:, k] > -1).any()]
    many = len(valid_classes) > MAX_LEGEND_CLASSES
    fig, ax = plt.subplots(figsize=(8, 6) if not many else (7, 6))
    for k in valid_classes:
        y = np.where(curves[:, k] > -1, curves[:, k], np.nan)
        if many:
            ax.plot(recall, y, color="grey", linewidth=0.6, alpha=0.6)
        else:
            ax.plot(recall, y, linewidth=1.2, label=f"{names[k]} {_mean_valid(curves[:, k]):.3f}")
    if valid_classes:
        masked = np.where(curves > -1, curves, np.nan)[:, valid_classes]
        mean = np.nanmean(masked, axis=1)
        ax.plot(recall, mean, color="navy", linewidth=3, label=f"all classes {ap_label} {_mean_valid(curves):.3f}")
        loc = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0)} if not many else {"loc": "lower left"}
        ax.legend(fontsize="small", **loc)
    else:
        ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_pr_curves(precision: np.ndarray, class_names: Sequence[str], out_dir: str | Path) -> list[Path]:
    """``pr_curve_50.png`` (IoU 0.5) and ``pr_curve_50_95.png`` (precision averaged over the IoU
    thresholds) in ``out_dir``: one line per class (its AP in the legend; thin grey lines and no
    per-class legend above ``MAX_LEGEND_CLASSES`` classes) and a thick mean line labelled with the mAP.

    Args:
        precision: COCOeval's accumulated ``eval["precision"]``, ``[T, R, K, A, M]`` (T IoU thresholds
            0.5:0.95 with index 0 = 0.5, R recall points over 0..1, K classes, A areas with index 0 =
            "all", M maxDets with index -1 = 100). Entries -1 mean "no data" and are not drawn; a
            class whose entries are all -1 (no ground truth) gets no line.
        class_names: K names, in the order of the K axis (ascending category id).
    """
    precision = np.asarray(precision, dtype=np.float64)
    if precision.ndim != 5:
        raise ValueError(f"precision must be [T, R, K, A, M], got shape {precision.shape}")
    if precision.shape[2] != len(class_names):
        raise ValueError(f"{len(class_names)} class names for {precision.shape[2]} classes in precision")
    out_dir = Path(out_dir)
    p = precision[:, :, :, 0, -1]  # [T, R, K]
    valid = p > -1
    # Mean over IoU thresholds of the valid entries; -1 where no threshold has data.
    count = valid.sum(axis=0)
    p_mean = np.where(count > 0, np.where(valid, p, 0.0).sum(axis=0) / np.maximum(count, 1), -1.0)
    return [
        _pr_figure(p[0], class_names, "precision-recall, IoU 0.5", "mAP50", out_dir / "pr_curve_50.png"),
        _pr_figure(
            p_mean, class_names, "precision-recall, mean over IoU 0.5:0.95", "mAP50-95", out_dir / "pr_curve_50_95.png"
        ),
    ]


def plot_confusion_matrix(
    matrix: np.ndarray,
    class_names: Sequence[str],
    out_dir: str | Path,
    normalize: bool = True,
    title: str | None = None,
) -> Path:
    """``confusion_matrix.png`` in ``out_dir`` from ``matrix [C+1, C+1]`` of :func:`confusion_matrix`
    (rows predicted, columns true, last row/column "background").

    With ``normalize`` each column is divided by its sum (the share of a true class's boxes that
    went to each predicted class; the background column: the share of false positives per class);
    an empty column stays blank. Non-zero cells carry their value when C <= ``MAX_ANNOTATED_CLASSES``.
    ``title`` is added under the default title (e.g. the thresholds).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    c = len(class_names)
    if matrix.shape != (c + 1, c + 1):
        raise ValueError(f"matrix must be [{c + 1}, {c + 1}] for {c} classes, got {matrix.shape}")
    labels = [*map(str, class_names), "background"]
    if normalize:
        sums = matrix.sum(axis=0, keepdims=True)
        shown = np.divide(matrix, sums, out=np.full_like(matrix, np.nan), where=sums > 0)
    else:
        shown = matrix
    side = min(max(6.0, 0.32 * (c + 1) + 3.0), 30.0)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    image = ax.imshow(np.ma.masked_invalid(shown), cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of column" if normalize else "count")
    fontsize = 10 if c <= 10 else 8 if c <= 30 else 6 if c <= 80 else 4
    ax.set_xticks(range(c + 1), labels, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(c + 1), labels, fontsize=fontsize)
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    heading = "confusion matrix" + (" (normalised per true class)" if normalize else " (counts)")
    ax.set_title(heading if not title else f"{heading}\n{title}")
    if c <= MAX_ANNOTATED_CLASSES:
        top = np.nanmax(shown) if np.isfinite(shown).any() else 0.0
        for (row, col), value in np.ndenumerate(shown):
            if not np.isfinite(value) or matrix[row, col] == 0:
                continue
            text = f"{value:.2f}" if normalize else f"{int(value)}"
            color = "white" if top > 0 and value > 0.5 * top else "black"
            ax.text(col, row, text, ha="center", va="center", color=color, fontsize=fontsize - 1)
    fig.tight_layout()
    return _save(fig, Path(out_dir) / "confusion_matrix.png")


def plot_class_ap(per_class_ap: Mapping[str, float], per_class_ap50: Mapping[str, float], out_dir: str | Path) -> Path:
    """``class_ap.png`` in ``out_dir``: horizontal bars of AP@[.5:.95] and AP@.5 per class (classes
    named by the dicts' keys, e.g. ``metrics["per_class"]`` and ``metrics["per_class_ap50"]``),
    highest AP@[.5:.95] on top; a NaN or missing AP has no bar and reads "n/a"."""
    names = list(dict.fromkeys([*per_class_ap, *per_class_ap50]))

    def value(d: Mapping[str, float], name: str) -> float:
        v = d.get(name)
        return math.nan if v is None else float(v)

    ap = np.array([value(per_class_ap, n) for n in names], dtype=np.float64)
    ap50 = np.array([value(per_class_ap50, n) for n in names], dtype=np.float64)
    order = sorted(range(len(names)), key=lambda i: (math.isnan(ap[i]), -ap[i] if not math.isnan(ap[i]) else 0.0))
    names = [names[i] for i in order]
    ap, ap50 = ap[order], ap50[order]
    k = len(names)
    fig, ax = plt.subplots(figsize=(8, min(max(3.0, 0.32 * k + 1.5), 40.0)))
    if k:
        y = np.arange(k)
        height = 0.4
        annotate = k <= MAX_ANNOTATED_CLASSES
        fontsize = 9 if k <= MAX_ANNOTATED_CLASSES else 7 if k <= 80 else 5
        for offset, values, label, color in (
            (-height / 2, ap, "AP@[.5:.95]", "tab:blue"),
            (height / 2, ap50, "AP@.5", "tab:orange"),
        ):
            finite = np.isfinite(values)
            ax.barh(y[finite] + offset, values[finite], height=height, label=label, color=color)
            for yi, v in zip(y + offset, values, strict=True):
                if not np.isfinite(v):
                    ax.text(0.005, yi, "n/a", va="center", fontsize=fontsize - 1, color="dimgrey")
                elif annotate:
                    ax.text(v + 0.005, yi, f"{v:.3f}", va="center", fontsize=fontsize - 1)
        ax.set_yticks(y, names, fontsize=fontsize)
        ax.invert_yaxis()  # highest AP on top
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")  # beside: never over a bar
    else:
        ax.text(0.5, 0.5, "no class with ground truth", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    mean = np.nanmean(ap) if np.isfinite(ap).any() else math.nan
    title = "AP per class" + (f" (mean AP@[.5:.95] {mean:.3f})" if not math.isnan(mean) else "")
    ax.set(xlabel="AP", title=title, xlim=(0, 1.1))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, Path(out_dir) / "class_ap.png")


def write_evaluation_plots(
    precision: np.ndarray,
    per_class_ap: Mapping[str, float],
    per_class_ap50: Mapping[str, float],
    class_names: Sequence[str],
    ground_truth: Sequence[tuple[np.ndarray, np.ndarray]],
    detections: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    out_dir: str | Path,
    iou_threshold: float = 0.45,
    conf_threshold: float = 0.25,
) -> list[Path]:
    """Write ``pr_curve_50.png``, ``pr_curve_50_95.png``, ``confusion_matrix.png`` and ``class_ap.png``
    into ``out_dir`` (created), each atomically; returns their paths in that order.

    Args:
        precision: COCOeval's ``eval["precision"]`` ``[T, R, K, A, M]`` (see :func:`plot_pr_curves`).
        per_class_ap, per_class_ap50: ``{class name: AP}`` (the evaluator's ``per_class`` and
            ``per_class_ap50``).
        class_names: the K = C class names, label order.
        ground_truth: per image ``(boxes [G, 4] xyxy pixels, labels [G] 0..C-1)``.
        detections: per image ``(boxes [D, 4] xyxy pixels, scores [D], labels [D] 0..C-1)``, the
            order of the framework's detection tuples; same images, same order as ``ground_truth``.
        iou_threshold, conf_threshold: of the confusion matrix (see :func:`confusion_matrix`).
    """
    if len(ground_truth) != len(detections):
        raise ValueError(f"{len(ground_truth)} ground-truth entries but {len(detections)} detection entries")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = plot_pr_curves(precision, class_names, out_dir)
    matrix = confusion_matrix(
        [g[0] for g in ground_truth],
        [g[1] for g in ground_truth],
        [d[0] for d in detections],
        [d[2] for d in detections],
        [d[1] for d in detections],
        num_classes=len(class_names),
        iou_threshold=iou_threshold,
        conf_threshold=conf_threshold,
    )
    subtitle = f"IoU >= {iou_threshold:g}, score >= {conf_threshold:g}"
    written.append(plot_confusion_matrix(matrix, class_names, out_dir, normalize=True, title=subtitle))
    written.append(plot_class_ap(per_class_ap, per_class_ap50, out_dir))
    return written
