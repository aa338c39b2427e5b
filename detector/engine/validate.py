"""COCO evaluation of a model on a dataset: predictor + pycocotools evaluator."""

from __future__ import annotations

from typing import Any

from tqdm import tqdm

from detector.data.loader import build_dataloader
from detector.engine.evaluator import detections_to_coco_results, evaluate_coco
from detector.inference import Predictor


def evaluate_dataset(
    predictor: Predictor,
    dataset: Any,
    batch_size: int = 8,
    num_workers: int = 0,
    verbose: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Predict every image of ``dataset`` (its transform must be the eval letterbox at the
    predictor's size) and score them with COCOeval against ``dataset.coco``.

    Returns the evaluator's metrics dict (``mAP50_95``, ``mAP50``, ..., ``per_class``).
    """
    loader = build_dataloader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    image_ids, detections = [], []
    for batch in tqdm(loader, desc="eval", leave=False, disable=not progress):
        images = batch["images"].to(predictor.device, non_blocking=True)
        dets = predictor.predict_tensor(images, batch["ratios"].tolist(), batch["orig_sizes"])
        for image_id, det in zip(batch["image_ids"], dets, strict=True):
            image_ids.append(int(image_id))
            det = det.to("cpu")
            detections.append((det.boxes, det.scores, det.labels))
    results = detections_to_coco_results(image_ids, detections, dataset.cat_ids)
    return evaluate_coco(dataset.coco, results, class_names=dataset.class_names, image_ids=image_ids, verbose=verbose)
