"""Predictor: a model (or a checkpoint) in, detections in original-image pixels out.

Every tool that turns images into boxes (predict, eval, track) goes through ``postprocess``
so that their numbers cannot drift apart. Preprocessing is YOLOX's: BGR, 0..255, letterbox
at the top-left on a canvas of 114, boxes divided by the letterbox ratio.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from detector.compress.qat import drop_box_prediction_quantisers, prepare_qat
from detector.config_sections import parse_config
from detector.data.transforms import letterbox, to_hw
from detector.errors import ConfigError
from detector.models.detector import build_model
from detector.models.yolox_weights import load_yolox_weights
from detector.ops.boxes import cxcywh_to_xyxy
from detector.ops.nms import batched_nms_images
from detector.utils.checkpoint import load_checkpoint


@dataclass
class Detections:
    """Detections of one image: ``boxes [K, 4]`` xyxy pixels, ``scores [K]``, ``labels [K]``
    (contiguous class indices), sorted by score."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def to(self, device: torch.device | str) -> Detections:
        return Detections(self.boxes.to(device), self.scores.to(device), self.labels.to(device))


def postprocess(
    preds: torch.Tensor,
    conf_threshold: float = 0.001,
    iou_threshold: float = 0.65,
    max_det: int = 300,
    ratios: Sequence[float] | torch.Tensor | None = None,
    image_sizes: Sequence[tuple[int, int]] | None = None,
) -> list[Detections]:
    """Decoded predictions ``[B, P, 5 + C]`` (cx, cy, w, h, obj, class probs) -> detections.

    score = objectness x best class probability (one label per box, as YOLOX); boxes with
    score >= ``conf_threshold`` go through class-aware NMS at ``iou_threshold``; at most
    ``max_det`` per image. With ``ratios`` the boxes are divided by each image's letterbox
    ratio, and with ``image_sizes`` [(h, w)] clipped to the original image.
    """
    class_scores, labels = preds[..., 5:].max(dim=-1)
    scores = (preds[..., 4] * class_scores).float()
    boxes = cxcywh_to_xyxy(preds[..., :4]).float()
    kept = batched_nms_images(boxes, scores, labels, iou_threshold, valid=scores >= conf_threshold, max_det=max_det)
    results = []
    for b, order in enumerate(kept):
        img_boxes = to_image_pixels(boxes[b][order], ratios[b] if ratios is not None else None,
                                    image_sizes[b] if image_sizes is not None else None)  # fmt: skip
        results.append(Detections(img_boxes, scores[b][order], labels[b][order]))
    return results


def to_image_pixels(boxes: torch.Tensor, ratio: float | None, size: tuple[int, int] | None) -> torch.Tensor:
    """Network-input xyxy boxes to original-image pixels: divided by the letterbox ``ratio`` and
    clipped to ``size`` (h, w), where given."""
    if ratio is not None:
        boxes = boxes / float(ratio)
    if size is not None:
        h, w = size
        boxes = torch.minimum(boxes.clamp(min=0.0), boxes.new_tensor([w, h, w, h]))
    return boxes


def images_to_tensor(images: Sequence[np.ndarray], device: torch.device | str) -> torch.Tensor:
    """Letterboxed uint8 HWC BGR images (same size) -> float ``[B, 3, H, W]`` on ``device``."""
    batch = torch.from_numpy(np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2)))
    return batch.to(device, non_blocking=True).float()


def load_detector(
    path: str | os.PathLike[str], cfg: Mapping[str, Any] | None = None
) -> tuple[nn.Module, dict[str, Any], Mapping[str, Any]]:
    """``(model, checkpoint, config)`` from a checkpoint of this package's trainer (its own config
    and weights, the EMA's when the run kept one; ``cfg`` replaces the config when given) or from
    an official YOLOX checkpoint (``{"model": state_dict}``), which needs ``cfg`` for the
    architecture. A pruned checkpoint's ``model.channel_layout`` applies to ``cfg`` too, and so does
    a quantisation-aware run's ``qat`` (the model is then fused and fake-quantised, see
    ``detector.compress.qat``). Otherwise the model is unfused. In training mode, on the CPU."""
    ckpt = load_checkpoint(path)
    if "config" in ckpt:
        cfg = cfg or ckpt["config"]
        layout = ckpt["config"].get("model", {}).get("channel_layout")
        if layout and not cfg.get("model", {}).get("channel_layout"):
            # The layout belongs to the weights (a pruned checkpoint), whatever config is given.
            cfg = {**cfg, "model": {**cfg["model"], "channel_layout": layout}}
        qat = ckpt["config"].get("qat")
        if qat and qat.get("enabled") and not cfg.get("qat", {}).get("enabled"):
            cfg = {**cfg, "qat": qat}  # the fake-quantised layout belongs to the weights too
        model = build_model(cfg)
        state = ckpt["model"]
        qat_settings = parse_config(cfg).qat
        if qat_settings.enabled:
            model = prepare_qat(model, qat_settings.range_momentum, qat_settings.weight_bits)
            state = drop_box_prediction_quantisers(state)
        model.load_state_dict(state)
    elif cfg is not None:
        model = load_yolox_weights(build_model(cfg), ckpt)
    else:
        raise ConfigError(f"{path}: not a checkpoint of this package (no 'config'); pass a config for its model")
    return model, ckpt, cfg


class Predictor:
    """Runs a detector on BGR uint8 images of any size.

    ``imgsz`` is the network input (int or (h, w), multiples of 32). Thresholds default to
    deployment values (0.25 score); evaluation uses a low score threshold (0.001).
    """

    def __init__(
        self,
        model: nn.Module,
        imgsz: int | Sequence[int] = 640,
        class_names: Sequence[str] | None = None,
        device: torch.device | str = "cpu",
        conf_threshold: float = 0.25,
        iou_threshold: float = 0.65,
        max_det: int = 300,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.imgsz = to_hw(imgsz)
        self.class_names = list(class_names) if class_names is not None else None
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.max_det = max_det

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        cfg: Mapping[str, Any] | None = None,
        device: torch.device | str = "cpu",
        fuse: bool = True,
        **kwargs: Any,
    ) -> Predictor:
        """A predictor from a checkpoint of this package's trainer (its own config, weights
        and class names; EMA weights when the run kept them), or from an official YOLOX
        checkpoint (``{"model": state_dict}``), which needs ``cfg`` for the architecture.
        ``cfg`` given with one of our checkpoints replaces the checkpoint's config."""
        model, ckpt, cfg = load_detector(path, cfg)
        if "config" in ckpt:
            kwargs.setdefault("class_names", ckpt.get("class_names"))
        if fuse:
            model.fuse()
        kwargs.setdefault("imgsz", parse_config(cfg).data.imgsz)
        return cls(model, device=device, **kwargs)

    @torch.no_grad()
    def predict_tensor(
        self, batch: torch.Tensor, ratios: Sequence[float], image_sizes: Sequence[tuple[int, int]]
    ) -> list[Detections]:
        """Detections for a letterboxed float batch ``[B, 3, H, W]`` (BGR, 0..255)."""
        preds = self.model(batch.to(self.device).float())
        return postprocess(preds, self.conf_threshold, self.iou_threshold, self.max_det, ratios, image_sizes)

    def __call__(self, images: np.ndarray | Sequence[np.ndarray]) -> list[Detections]:
        """Detections (original-image pixels) for one BGR image or a list of them."""
        return predict_images(self, images)


def predict_images(predictor: Any, images: np.ndarray | Sequence[np.ndarray]) -> list[Detections]:
    """Letterbox BGR uint8 images to ``predictor.imgsz`` and run ``predictor.predict_tensor``."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    boxed, ratios, sizes = [], [], []
    for image in images:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 HxWx3 BGR image, got {image.dtype} {list(image.shape)}")
        canvas, ratio = letterbox(image, predictor.imgsz)
        boxed.append(canvas)
        ratios.append(ratio)
        sizes.append(image.shape[:2])
    return predictor.predict_tensor(images_to_tensor(boxed, predictor.device), ratios, sizes)


class OnnxPredictor:
    """The ``Predictor`` interface over an ONNX file from ``tools/export.py``, run by ONNX Runtime.

    Input size, class names and whether NMS is in the graph come from the file's metadata. A
    graph without NMS goes through the same ``postprocess`` as PyTorch; a graph with NMS has
    its thresholds fixed at export (``conf_threshold`` here can only raise the score bar, and
    ``max_det`` lower the count). ``providers``: ONNX Runtime execution providers (CPU default).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        conf_threshold: float = 0.25,
        iou_threshold: float = 0.65,
        max_det: int = 300,
        providers: Sequence[str] | None = None,
    ) -> None:
        import onnxruntime

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: ONNX model not found")
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as exc:  # ONNX Runtime raises its own types for unreadable files
            raise ValueError(f"{self.path}: not a loadable ONNX model: {' '.join(str(exc).split())[:200]}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "imgsz" not in meta:
            raise ValueError(f"{self.path}: no 'imgsz' in the model metadata; export it with tools/export.py")
        self.metadata = dict(meta)
        self.imgsz = tuple(int(v) for v in meta["imgsz"].split(","))
        names = json.loads(meta.get("class_names", "null"))
        self.class_names = list(names) if names is not None else None
        self.in_graph_nms = meta.get("nms") == "true"
        self.dynamic_batch = meta.get("dynamic_batch") == "true"
        self.device = torch.device("cpu")
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.max_det = max_det
        self.input_name = self.session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """The graph's raw outputs for a float32 ``[B, 3, H, W]`` batch (one image at a time
        when the batch size was fixed at export)."""
        if self.dynamic_batch or len(batch) == 1:
            return self.session.run(None, {self.input_name: batch})
        parts = [self.session.run(None, {self.input_name: batch[i : i + 1]}) for i in range(len(batch))]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]

    def predict_tensor(
        self, batch: torch.Tensor, ratios: Sequence[float], image_sizes: Sequence[tuple[int, int]]
    ) -> list[Detections]:
        """Detections for a letterboxed batch ``[B, 3, H, W]`` (BGR, 0..255)."""
        outputs = self.run(np.ascontiguousarray(batch.float().cpu().numpy()))
        if not self.in_graph_nms:
            preds = torch.from_numpy(outputs[0])
            return postprocess(preds, self.conf_threshold, self.iou_threshold, self.max_det, ratios, image_sizes)
        boxes, scores, labels, counts = (torch.from_numpy(o) for o in outputs)
        results = []
        for b in range(len(counts)):
            k = int(counts[b])
            chosen = torch.nonzero(scores[b, :k] >= self.conf_threshold).squeeze(1)[: self.max_det]
            img_boxes = to_image_pixels(boxes[b, chosen], ratios[b], image_sizes[b])
            results.append(Detections(img_boxes, scores[b, chosen], labels[b, chosen]))
        return results

    def __call__(self, images: np.ndarray | Sequence[np.ndarray]) -> list[Detections]:
        """Detections (original-image pixels) for one BGR image or a list of them."""
        return predict_images(self, images)
