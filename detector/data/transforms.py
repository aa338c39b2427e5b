"""Sample transforms: albumentations pipelines from config lists, and the letterbox resize.

A sample (see ``detector.data.coco``) goes in; the same dict comes out with ``image`` letterboxed
to the network size (uint8 HWC BGR, original content at the top-left, padding below/right),
``boxes`` float32 ``[N, 4]`` xyxy in network-input pixels, ``labels`` filtered in step, and
``ratio``: the letterbox scale, so original pixels = network pixels / ratio.
"""

from __future__ import annotations

import difflib
import random
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np

from detector.data.coco import Sample
from detector.errors import ConfigError
from detector.registry import TRANSFORMS, check_arguments

Size = int | tuple[int, int] | Sequence[int]


def to_hw(size: Size) -> tuple[int, int]:
    """``(h, w)`` of an int or ``(h, w)`` size."""
    if isinstance(size, int):
        return size, size
    h, w = (int(v) for v in size)
    return h, w


def letterbox(image: np.ndarray, size: Size, pad_value: int = 114) -> tuple[np.ndarray, float]:
    """Resize ``image`` (HWC) to fit ``size`` (int or ``(h, w)``) keeping its aspect ratio.

    The scale is ``r = min(h_t / h, w_t / w)``; the resized image (``int(w * r)`` x ``int(h * r)``,
    bilinear) sits at the top-left of a ``pad_value`` canvas. Returns ``(canvas, r)``.
    """
    th, tw = to_hw(size)
    h, w = image.shape[:2]
    r = min(th / h, tw / w)
    nw, nh = max(1, int(w * r)), max(1, int(h * r))
    canvas = np.full((th, tw, *image.shape[2:]), pad_value, dtype=image.dtype)
    canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR).reshape(nh, nw, *image.shape[2:])
    return canvas, r


def _augmentation_class(name: Any, path: str) -> type:
    candidate = getattr(A, str(name), None)
    if isinstance(candidate, type) and issubclass(candidate, (A.BasicTransform, A.BaseCompose)):
        return candidate
    known = sorted(n for n in dir(A) if isinstance(getattr(A, n), type) and issubclass(getattr(A, n), A.BasicTransform))
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else "see the albumentations transform list"
    raise ConfigError(f"{path}: unknown albumentations transform '{name}'; {hint}")


def _build_list(cfg_list: Sequence[Mapping[str, Any]], path: str) -> list[Any]:
    if isinstance(cfg_list, (str, bytes, Mapping)) or not isinstance(cfg_list, Sequence):
        raise ConfigError(f"{path}: expected a list of {{type: ..., ...}} mappings, got {type(cfg_list).__name__}")
    built = []
    for i, cfg in enumerate(cfg_list):
        where = f"{path}[{i}]"
        if not isinstance(cfg, Mapping) or "type" not in cfg:
            raise ConfigError(f"{where}: expected a mapping with a 'type' key, got {cfg!r}")
        cls = _augmentation_class(cfg["type"], f"{where}.type")
        kwargs = {k: v for k, v in cfg.items() if k != "type"}
        if issubclass(cls, A.BaseCompose) and "transforms" in kwargs:
            # OneOf / SomeOf / Sequential nest their own lists.
            kwargs["transforms"] = _build_list(kwargs["transforms"], f"{where}.transforms")
        check_arguments(cls, kwargs, where)
        try:
            built.append(cls(**kwargs))
        except Exception as err:  # albumentations validates arguments with pydantic
            raise ConfigError(f"{where}: bad arguments for {cls.__name__}: {err}") from err
    return built


def check_augmentations(cfg_list: Sequence[Mapping[str, Any]], path: str) -> None:
    """Check an albumentations config list (types, arguments) by building it once, as the
    training transform will; ``ConfigError`` naming ``path[i].key``. Reads no data."""
    _build_list(cfg_list, path)


def build_augmentations(
    cfg_list: Sequence[Mapping[str, Any]],
    min_box_size: float = 2.0,
    min_visibility: float = 0.0,
    seed: int | None = None,
) -> A.Compose:
    """An albumentations ``Compose`` from a config list such as ``[{type: HorizontalFlip, p: 0.5}]``.

    ``type`` is any albumentations transform name (``OneOf``-style composes take a nested
    ``transforms`` list); the other keys are its arguments. Boxes travel as ``pascal_voc``
    (xyxy pixels) with the ``labels`` field, clipped to the image; boxes narrower or lower
    than ``min_box_size`` pixels, or with less than ``min_visibility`` of their area left, are dropped.
    """
    transforms = _build_list(cfg_list, "augmentations")
    bbox_params = A.BboxParams(
        format="pascal_voc",
        label_fields=["labels"],
        min_width=min_box_size,
        min_height=min_box_size,
        min_visibility=min_visibility,
        clip=True,
        filter_invalid_bboxes=True,
    )
    with warnings.catch_warnings():
        # A pipeline of colour-only transforms is fine: boxes then simply pass through.
        warnings.filterwarnings("ignore", message="Got processor for bboxes, but no transform to process it")
        return A.Compose(transforms, bbox_params=bbox_params, seed=seed)


def reseed_augmentations(pipeline: A.Compose, seed: int) -> None:
    """Give ``pipeline`` one fresh random stream (shared by its transforms) from ``seed``.

    ``Compose.set_random_seed`` would give every transform its own generator with the same
    seed, so their "apply with probability p" draws would be correlated.
    """
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))


def _scale_boxes(boxes: np.ndarray, ratio: float) -> np.ndarray:
    return (np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * np.float32(ratio)).astype(np.float32)


@TRANSFORMS.register()
class TrainTransform:
    """Augment (albumentations, on the original image), letterbox, clip and filter boxes.

    ``augmentations``: a config list for ``build_augmentations`` (or a built ``A.Compose``).
    Albumentations sees RGB (its colour transforms assume it); the sample stays BGR.
    Boxes are clipped to the resized image and dropped when w or h < ``min_box_size`` pixels
    (network-input pixels). ``ratio`` maps to the augmented image, not the original one.
    ``seed`` fixes the augmentation stream; ``reseed`` restarts it (the data loader calls it per worker).
    """

    def __init__(
        self,
        imgsz: Size,
        augmentations: Sequence[Mapping[str, Any]] | A.Compose | None = None,
        min_box_size: float = 2.0,
        pad_value: int = 114,
        seed: int | None = None,
    ) -> None:
        self.imgsz = to_hw(imgsz)
        self.min_box_size = float(min_box_size)
        self.pad_value = pad_value
        if augmentations is None or isinstance(augmentations, A.Compose):
            self.pipeline = augmentations
        else:
            # Boxes are filtered at min_box_size again after the letterbox, in network pixels;
            # inside the pipeline only empty boxes go.
            self.pipeline = build_augmentations(augmentations, min_box_size=0.0, seed=seed)
        if self.pipeline is not None and seed is not None:
            reseed_augmentations(self.pipeline, seed)

    def reseed(self, seed: int) -> None:
        """Restart the augmentation random stream from ``seed``."""
        if self.pipeline is not None:
            reseed_augmentations(self.pipeline, seed)

    def __call__(self, sample: Sample) -> Sample:
        out = dict(sample)
        image = sample["image"]
        boxes = np.asarray(sample["boxes"], dtype=np.float32).reshape(-1, 4)
        labels = np.asarray(sample["labels"], dtype=np.int64).reshape(-1)
        if self.pipeline is not None:
            result = self.pipeline(image=cv2.cvtColor(image, cv2.COLOR_BGR2RGB), bboxes=boxes, labels=labels)
            image = cv2.cvtColor(result["image"], cv2.COLOR_RGB2BGR)
            boxes = np.asarray(result["bboxes"], dtype=np.float32).reshape(-1, 4)
            labels = np.asarray(result["labels"], dtype=np.int64).reshape(-1)

        h, w = image.shape[:2]
        canvas, ratio = letterbox(image, self.imgsz, self.pad_value)
        boxes = _scale_boxes(boxes, ratio)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, int(w * ratio))
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, int(h * ratio))
        keep = ((boxes[:, 2] - boxes[:, 0]) >= self.min_box_size) & ((boxes[:, 3] - boxes[:, 1]) >= self.min_box_size)
        out.update(image=canvas, boxes=boxes[keep], labels=labels[keep], ratio=float(ratio))
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(imgsz={self.imgsz}, min_box_size={self.min_box_size}, pipeline={self.pipeline})"


@TRANSFORMS.register()
class EvalTransform:
    """Letterbox to ``imgsz`` and scale the boxes by the same ratio (no box is dropped)."""

    def __init__(self, imgsz: Size, pad_value: int = 114) -> None:
        self.imgsz = to_hw(imgsz)
        self.pad_value = pad_value

    def __call__(self, sample: Sample) -> Sample:
        out = dict(sample)
        canvas, ratio = letterbox(sample["image"], self.imgsz, self.pad_value)
        labels = np.asarray(sample["labels"], dtype=np.int64).reshape(-1)
        out.update(image=canvas, boxes=_scale_boxes(sample["boxes"], ratio), labels=labels, ratio=float(ratio))
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(imgsz={self.imgsz})"
