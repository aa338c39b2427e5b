"""COCO evaluation of a model on a dataset: predictor + pycocotools evaluator, on one process
or sharded over the ranks of a torch.distributed run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset
from tqdm import tqdm

from detector.data.loader import build_dataloader
from detector.engine.distributed import broadcast_object, gather_objects, world
from detector.engine.evaluator import detections_to_coco_results, evaluate_coco
from detector.inference import Predictor

#: One image's detections: boxes [N, 4] xyxy image pixels, scores [N], labels [N] (contiguous).
ImageDetections = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def predict_dataset(
    predictor: Predictor, dataset: Any, batch_size: int = 8, num_workers: int = 0, progress: bool = True
) -> tuple[list[int], list[ImageDetections]]:
    """Image ids and detections (CPU tensors) of every image of ``dataset``, in dataset order
    (an image that failed to load is left out: the dataset returned the next one in its place)."""
    loader = build_dataloader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    image_ids, detections, seen = [], [], set()
    for batch in tqdm(loader, desc="eval", leave=False, disable=not progress):
        images = batch["images"].to(predictor.device, non_blocking=True)
        dets = predictor.predict_tensor(images, batch["ratios"].tolist(), batch["orig_sizes"])
        for image_id, det in zip(batch["image_ids"], dets, strict=True):
            if int(image_id) in seen:  # a broken image's replacement (its own turn comes too)
                continue
            seen.add(int(image_id))
            image_ids.append(int(image_id))
            det = det.to("cpu")
            detections.append((det.boxes, det.scores, det.labels))
    return image_ids, detections


def evaluate_dataset(
    predictor: Predictor,
    dataset: Any,
    batch_size: int = 8,
    num_workers: int = 0,
    verbose: bool = True,
    progress: bool = True,
    distributed: bool = False,
    plots_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Predict every image of ``dataset`` (its transform must be the eval letterbox at the
    predictor's size) and score them with COCOeval against ``dataset.coco``.

    With ``distributed`` (in a process group of several ranks) rank r predicts images r, r + W,
    r + 2W, ... (each image exactly once), rank 0 gathers them in dataset order and scores them,
    and every rank returns rank 0's metrics: the numbers of a single-process evaluation.
    Returns the evaluator's metrics dict (``mAP50_95``, ``mAP50``, ..., ``per_class``).
    With ``plots_dir``, rank 0 also writes the evaluation PNGs there (PR curves, confusion matrix,
    per-class AP) and the metrics list them under ``"plots"``.
    """
    rank, world_size = world() if distributed else (0, 1)
    shard = dataset if world_size == 1 else Subset(dataset, range(rank, len(dataset), world_size))
    image_ids, detections = predict_dataset(predictor, shard, batch_size, num_workers, progress and rank == 0)
    if world_size > 1:
        shards = gather_objects((image_ids, detections))
        if rank == 0:
            # Back into dataset order; a broken image's replacement may come from another shard.
            position = {int(image_id): i for i, image_id in enumerate(dataset.image_ids)}
            merged = {}
            for ids, dets in shards:
                for image_id, det in zip(ids, dets, strict=True):
                    merged.setdefault(image_id, det)
            image_ids = sorted(merged, key=lambda image_id: position.get(image_id, len(position)))
            detections = [merged[image_id] for image_id in image_ids]
    metrics = None
    if rank == 0:
        results = detections_to_coco_results(image_ids, detections, dataset.cat_ids)
        metrics = evaluate_coco(
            dataset.coco,
            results,
            class_names=dataset.class_names,
            image_ids=image_ids,
            verbose=verbose,
            plots_dir=plots_dir,
        )
    return broadcast_object(metrics) if world_size > 1 else metrics
