"""COCO bbox evaluation with pycocotools: the framework's edge towards COCO results.

Detections come in as ``xyxy`` boxes in original-image pixels with contiguous labels ``0..C-1``;
:func:`detections_to_coco_results` turns them into COCO results (``xywh`` boxes, original category
ids), and :func:`evaluate_coco` scores those with ``COCOeval`` exactly as a direct pycocotools run
does (evaluate, accumulate, summarize), then adds per-class AP read from ``eval["precision"]``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detector.ops.boxes import xywh_to_xyxy, xyxy_to_xywh
from detector.utils.fileio import atomic_write_text

__all__ = [
    "STAT_NAMES",
    "detections_to_coco_results",
    "evaluate_coco",
    "format_metrics_table",
    "format_per_class_table",
    "write_metrics_json",
]

#: Names of the 12 ``COCOeval.stats`` entries for bbox, in pycocotools' order.
STAT_NAMES: tuple[str, ...] = (
    "mAP50_95",
    "mAP50",
    "mAP75",
    "mAP_small",
    "mAP_medium",
    "mAP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)

_BOX_DECIMALS = 3  # pixels: 1/1000 px changes no IoU that matters and keeps the JSON small
_SCORE_DECIMALS = 5

ArrayLike = torch.Tensor | np.ndarray


def _as_tensor(x: ArrayLike | Sequence[float]) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    return torch.as_tensor(np.asarray(x))


def detections_to_coco_results(
    image_ids: Sequence[int],
    detections: Sequence[tuple[ArrayLike, ArrayLike, ArrayLike]],
    cat_ids: Sequence[int],
) -> list[dict[str, Any]]:
    """Convert per-image detections into a COCO results list.

    Args:
        image_ids: COCO image id of each entry of ``detections``.
        detections: per image ``(boxes [K, 4] xyxy in original-image pixels, scores [K],
            labels [K] contiguous 0..C-1)``, tensors (any device) or arrays; ``K`` may be 0.
        cat_ids: original COCO category id of each contiguous label (``cat_ids[label]``).

    Returns:
        One dict per detection: ``{"image_id": int, "category_id": int, "bbox": [x, y, w, h]
        (floats, pixels, rounded to 3 decimals), "score": float (rounded to 5 decimals)}``.
    """
    if len(image_ids) != len(detections):
        raise ValueError(f"{len(image_ids)} image ids but {len(detections)} detection entries")
    cat_ids = [int(c) for c in cat_ids]
    results: list[dict[str, Any]] = []
    for image_id, det in zip(image_ids, detections, strict=True):
        boxes, scores, labels = (_as_tensor(x) for x in det)
        boxes = boxes.to(torch.float64).reshape(-1, 4)
        scores = scores.to(torch.float64).reshape(-1)
        labels = labels.reshape(-1).to(torch.int64)
        if not len(boxes) == len(scores) == len(labels):
            raise ValueError(f"image {int(image_id)}: {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(cat_ids)):
            bad = int(labels[(labels < 0) | (labels >= len(cat_ids))][0])
            raise ValueError(f"image {int(image_id)}: label {bad} outside 0..{len(cat_ids) - 1}")
        xywh = xyxy_to_xywh(boxes).tolist()
        for box, score, label in zip(xywh, scores.tolist(), labels.tolist(), strict=True):
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": cat_ids[label],
                    "bbox": [round(v, _BOX_DECIMALS) for v in box],
                    "score": round(score, _SCORE_DECIMALS),
                }
            )
    return results


@contextlib.contextmanager
def _stdout_unless(verbose: bool) -> Iterator[None]:
    """Swallow pycocotools' prints unless ``verbose``."""
    if verbose:
        yield
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            yield


def _check_results(results: list[Any], coco_gt: COCO) -> None:
    """Raise ``ValueError`` naming the first result pycocotools would reject or misread."""
    img_ids = set(coco_gt.getImgIds())
    cat_ids = set(coco_gt.getCatIds())
    for i, r in enumerate(results):
        if not isinstance(r, Mapping) or not {"image_id", "category_id", "bbox", "score"} <= r.keys():
            raise ValueError(f"result #{i} {r!r}: expected a dict with image_id, category_id, bbox, score")
        if r["image_id"] not in img_ids:
            raise ValueError(f"result #{i} {r!r}: image_id {r['image_id']!r} is not an image of the ground truth")
        if r["category_id"] not in cat_ids:
            raise ValueError(
                f"result #{i} {r!r}: category_id {r['category_id']!r} is not a category of the ground truth "
                "(results need the original COCO category ids, not contiguous labels)"
            )
        if len(r["bbox"]) != 4:
            raise ValueError(f"result #{i} {r!r}: bbox must be [x, y, w, h]")


def _empty_results(coco_gt: COCO) -> COCO:
    """A results object with no detections (``COCO.loadRes`` refuses an empty list)."""
    res = COCO()
    res.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": list(coco_gt.dataset.get("categories", [])),
        "annotations": [],
    }
    res.createIndex()
    return res


def _mean_valid(p: np.ndarray) -> float:
    """Mean over entries ``> -1`` (pycocotools' "not computed" marker); NaN if none."""
    valid = p[p > -1]
    return float(np.mean(valid)) if valid.size else math.nan


def evaluate_coco(
    coco_gt: COCO | str | os.PathLike,
    results: list[dict[str, Any]] | str | os.PathLike,
    class_names: Sequence[str] | None = None,
    image_ids: Sequence[int] | None = None,
    verbose: bool = True,
    plots_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Score bbox results with pycocotools' ``COCOeval`` (evaluate, accumulate, summarize).

    Args:
        coco_gt: ground truth, a ``COCO`` object or the path of an instances JSON.
        results: COCO results (see :func:`detections_to_coco_results`) or the path of a results JSON.
            The list is not modified (pycocotools' ``loadRes`` gets copies).
        class_names: names for the per-class tables; ``class_names[k]`` names the k-th gt category in
            ascending id order (contiguous label k when labels follow sorted category ids). Defaults to
            the gt's category names.
        image_ids: evaluate only these images (a subset of the gt); default all gt images.
        verbose: print what pycocotools prints (loading, timing, the 12 summary lines); when False,
            nothing of pycocotools' reaches stdout.
        plots_dir: when given, also write the evaluation pictures there (PR curves at IoU 0.5 and
            0.5:0.95, confusion matrix, per-class AP bars; see
            :func:`detector.engine.eval_plots.write_evaluation_plots`) and list their paths in
            ``metrics["plots"]``. The metric numbers are the same with or without it.

    Returns:
        ``{name: float for name in STAT_NAMES}`` (pycocotools' values, -1 where it gives -1),
        ``"stats"``: those 12 as a list, ``"per_class"``: ``{class name: AP@[.5:.95]}`` and
        ``"per_class_ap50"``: ``{class name: AP@.5}``, both from ``eval["precision"]`` at area "all",
        maxDets 100, in category-id order. Classes that pycocotools leaves without precision (no
        non-crowd gt box in the evaluated images) are omitted from both. With ``plots_dir``,
        ``"plots"``: the PNG paths written, as strings.

    Empty results are scored as "no detections" (every defined stat 0) with a printed note.
    Results naming an image or category that the gt lacks raise ``ValueError``.
    """
    if not isinstance(coco_gt, COCO):
        with _stdout_unless(verbose):
            coco_gt = COCO(str(coco_gt))
    if isinstance(results, str | os.PathLike):
        with open(results) as f:
            results = json.load(f)
    if not isinstance(results, list):
        raise ValueError(f"results must be a list of dicts, got {type(results).__name__}")
    _check_results(results, coco_gt)

    cat_ids = sorted(coco_gt.getCatIds())
    if class_names is None:
        names = [coco_gt.cats[c]["name"] for c in cat_ids]
    else:
        names = [str(n) for n in class_names]
        if len(names) != len(cat_ids):
            raise ValueError(f"{len(names)} class names for {len(cat_ids)} ground-truth categories")

    if image_ids is not None:
        image_ids = sorted({int(i) for i in image_ids})
        missing = set(image_ids) - set(coco_gt.getImgIds())
        if missing:
            raise ValueError(f"image_ids not in the ground truth: {sorted(missing)[:10]}")

    if not results:
        print("evaluate_coco: no detections to evaluate; every metric is 0 (-1 where pycocotools has no gt)")
    with _stdout_unless(verbose):  # loadRes copies: it adds keys to the dicts it gets
        coco_dt = coco_gt.loadRes([dict(r) for r in results]) if results else _empty_results(coco_gt)

    coco_eval = COCOeval(coco_gt, coco_dt, iouType="bbox")
    if image_ids is not None:
        coco_eval.params.imgIds = image_ids
    with _stdout_unless(verbose):
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()

    stats = [float(s) for s in coco_eval.stats]
    metrics: dict[str, Any] = dict(zip(STAT_NAMES, stats, strict=True))
    metrics["stats"] = stats

    # precision: [T iou thresholds, R recall thresholds, K categories, A areas, M maxDets]
    precision = coco_eval.eval["precision"]
    params = coco_eval.params
    area_all = params.areaRngLbl.index("all")
    max_100 = params.maxDets.index(100)
    iou_50 = int(np.argmin(np.abs(params.iouThrs - 0.5)))
    per_class, per_class_ap50 = {}, {}
    for k, cat_id in enumerate(params.catIds):
        ap = _mean_valid(precision[:, :, k, area_all, max_100])
        if math.isnan(ap):
            continue
        name = names[cat_ids.index(cat_id)]
        per_class[name] = ap
        per_class_ap50[name] = _mean_valid(precision[iou_50, :, k, area_all, max_100])
    metrics["per_class"] = per_class
    metrics["per_class_ap50"] = per_class_ap50
    if plots_dir is not None:
        # Imported here: matplotlib is only needed when pictures are asked for.
        from detector.engine.eval_plots import write_evaluation_plots

        evaluated = list(coco_eval.params.imgIds)
        ground_truth, detections = _plot_inputs(coco_gt, results, evaluated, cat_ids)
        paths = write_evaluation_plots(precision, per_class, per_class_ap50, names, ground_truth, detections, plots_dir)
        metrics["plots"] = [str(p) for p in paths]
    return metrics


def _xyxy(xywh: list[list[float]]) -> np.ndarray:
    """COCO ``xywh`` boxes -> ``[N, 4]`` float64 xyxy."""
    return xywh_to_xyxy(torch.tensor(xywh, dtype=torch.float64).reshape(-1, 4)).numpy()


def _plot_inputs(
    coco_gt: COCO, results: list[dict[str, Any]], image_ids: Sequence[int], cat_ids: Sequence[int]
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Per evaluated image, the non-crowd gt ``(boxes xyxy, labels)`` and the detections ``(boxes
    xyxy, scores, labels)``, labels contiguous in ascending category-id order (``cat_ids``)."""
    label_of = {int(c): k for k, c in enumerate(cat_ids)}
    by_image: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        by_image.setdefault(int(r["image_id"]), []).append(r)
    ground_truth, detections = [], []
    for image_id in image_ids:
        anns = [a for a in coco_gt.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        ground_truth.append(
            (_xyxy([a["bbox"] for a in anns]), np.array([label_of[a["category_id"]] for a in anns], dtype=np.int64))
        )
        dets = by_image.get(int(image_id), [])
        detections.append(
            (
                _xyxy([d["bbox"] for d in dets]),
                np.array([d["score"] for d in dets], dtype=np.float64),
                np.array([label_of[int(d["category_id"])] for d in dets], dtype=np.int64),
            )
        )
    return ground_truth, detections


def _fmt(value: float) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:.3f}"


def format_metrics_table(metrics: Mapping[str, Any]) -> str:
    """Markdown table of the 12 COCO stats (name, value with 3 decimals; -1 = not computed)."""
    lines = ["| metric | value |", "|---|---:|"]
    lines += [f"| {name} | {_fmt(metrics[name])} |" for name in STAT_NAMES]
    return "\n".join(lines)


def format_per_class_table(metrics: Mapping[str, Any], sort_by: str = "id") -> str:
    """Markdown table of per-class AP@[.5:.95] and AP@.5.

    ``sort_by``: ``"id"`` keeps the category-id order of ``metrics["per_class"]``, ``"name"`` sorts
    alphabetically.
    """
    if sort_by not in ("id", "name"):
        raise ValueError(f"sort_by must be 'id' or 'name', got {sort_by!r}")
    per_class = metrics["per_class"]
    ap50 = metrics.get("per_class_ap50", {})
    names = list(per_class)
    if sort_by == "name":
        names.sort()
    lines = ["| class | AP | AP50 |", "|---|---:|---:|"]
    lines += [f"| {n} | {_fmt(per_class[n])} | {_fmt(ap50.get(n, math.nan))} |" for n in names]
    return "\n".join(lines)


def _jsonable(x: Any) -> Any:
    """Plain-JSON copy: numpy/torch scalars and arrays to Python, NaN/inf to ``None``."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor | np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_metrics_json(metrics: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``metrics`` as JSON atomically (temp file in the same folder, fsync, ``os.replace``).

    NaN and infinities become ``null``. Returns the path written.
    """
    text = json.dumps(_jsonable(metrics), indent=2, allow_nan=False) + "\n"
    return atomic_write_text(path, text)
