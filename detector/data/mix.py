"""Mosaic and MixUp (YOLOX-style), the random affine that brings a mosaic to the input size, and
the box filter that follows every geometric step.

Samples follow ``detector.data.coco``: ``image`` uint8 HWC BGR, ``boxes`` float32 ``[N, 4]`` xyxy
pixels, ``labels`` int64 ``[N]``. Boxes use continuous pixel coordinates (pixel ``i`` covers
``[i, i + 1)``); OpenCV warps address pixel centres, so image matrices get the half-pixel shift
that keeps boxes exactly on their pixels.

A mosaic is laid out on a virtual canvas twice the input size, but no such canvas is ever
allocated: each of the four images is warped once, straight from its decoded pixels into its
part of the output (placement, scale, rotation, shear and translation composed into one
matrix). That saves a 2x canvas fill, four resizes and a second interpolation per sample.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from detector.data.coco import Sample
from detector.errors import ConfigError
from detector.schema import parse_section, setting

HW = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class MixParams:
    """Settings of Mosaic, MixUp and the mosaic's random affine (config key ``data.mix``).

    Defaults are YOLOX's. ``scale`` is the affine scale of the 2x mosaic canvas; ``degrees`` and
    ``shear`` are in degrees, ``translate`` a fraction of the input size. MixUp blends with a
    ``plain`` image (YOLOX: scale-jittered by ``mixup_scale``, flipped with ``mixup_flip``, randomly
    cropped) or another ``mosaic`` (Ultralytics), with weight ``mixup_ratio`` for the first image,
    or a ratio drawn from Beta(``mixup_beta``, ``mixup_beta``) when that is set. After every geometric
    step a box is kept when its width and height are at least ``min_box_size`` pixels, at least
    ``min_area_ratio`` of its transformed area lies inside the image and its aspect ratio is at most
    ``max_aspect_ratio``. ``buffer_size``: the other images of a mosaic and the MixUp partner come
    from the last ``buffer_size`` decoded images (per loader worker, as Ultralytics does), which saves
    four of five decodes; 0 draws and decodes each from the whole dataset (YOLOX).
    """

    mosaic_prob: float = setting(1.0, "probability that a sample is a mosaic of four images")
    mixup_prob: float = setting(1.0, "probability that a mosaic is blended with a second image (MixUp)")
    mixup_source: str = setting(
        "plain", "MixUp partner: a plain image (YOLOX) or a mosaic", choices=("plain", "mosaic")
    )
    mixup_ratio: float = setting(0.5, "MixUp weight of the first image (when mixup_beta is null)")
    mixup_beta: float | None = setting(None, "draw the MixUp weight from Beta(b, b) instead (null: mixup_ratio)")
    mixup_scale: tuple[float, float] = setting((0.5, 1.5), "scale jitter [low, high] of a plain MixUp partner")
    mixup_flip: float = setting(0.5, "probability that a plain MixUp partner is flipped")
    degrees: float = setting(10.0, "mosaic affine: rotation range in degrees")
    translate: float = setting(0.1, "mosaic affine: translation as a fraction of the input size")
    scale: tuple[float, float] = setting((0.1, 2.0), "mosaic affine: scale range [low, high] of the 2x canvas")
    shear: float = setting(2.0, "mosaic affine: shear range in degrees")
    min_box_size: float = setting(2.0, "after each geometric step keep boxes at least this many pixels wide and high")
    min_area_ratio: float = setting(0.1, "... and with at least this fraction of their transformed area in the image")
    max_aspect_ratio: float = setting(20.0, "... and an aspect ratio of at most this")
    pad_value: int = setting(114, "grey level of the padding")
    buffer_size: int = setting(64, "partners come from the last this many decoded images (0: from the whole set)")
    single_augment: list[dict[str, Any]] | None = setting(
        None, "albumentations steps for the samples that get no mosaic"
    )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], path: str = "data.mix") -> MixParams:
        """Validated settings from a config mapping; a bad key or value raises ``ConfigError``
        naming ``path.key`` and what was expected."""
        return parse_section(cls, cfg, path)

    def check(self, path: str) -> None:
        """Ranges: probabilities in [0, 1], [low, high] ranges, counts >= 0."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name not in ("mixup_source", "single_augment"):
                _check_value(f.name, value, f"{path}.{f.name}")


_PROBABILITIES = {"mosaic_prob", "mixup_prob", "mixup_flip", "mixup_ratio", "min_area_ratio"}
_RANGES = {"mixup_scale", "scale"}


def _check_value(key: str, value: Any, where: str) -> Any:
    if key == "mixup_source":
        if value not in ("plain", "mosaic"):
            raise ConfigError(f"{where}: expected 'plain' or 'mosaic', got {value!r}")
        return value
    if key == "mixup_beta" and value is None:
        return None
    if key in _RANGES:
        if (
            not isinstance(value, Sequence)
            or isinstance(value, str)
            or len(value) != 2
            or not all(_is_number(v) for v in value)
            or not 0 < value[0] <= value[1]
        ):
            raise ConfigError(f"{where}: expected [low, high] with 0 < low <= high, got {value!r}")
        return float(value[0]), float(value[1])
    if not _is_number(value):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if key in _PROBABILITIES and not 0.0 <= value <= 1.0:
        raise ConfigError(f"{where}: expected a value in [0, 1], got {value!r}")
    if key == "buffer_size":
        if value < 0 or int(value) != value:
            raise ConfigError(f"{where}: expected an integer >= 0, got {value!r}")
        return int(value)
    if key == "pad_value":
        if not 0 <= value <= 255 or int(value) != value:
            raise ConfigError(f"{where}: expected an integer in 0..255, got {value!r}")
        return int(value)
    if key == "mixup_beta" and value <= 0:
        raise ConfigError(f"{where}: expected a positive number or null, got {value!r}")
    if key == "max_aspect_ratio" and value < 1:
        raise ConfigError(f"{where}: expected a number >= 1, got {value!r}")
    if value < 0:
        raise ConfigError(f"{where}: expected a number >= 0, got {value!r}")
    return float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ------------------------------------------------------------------------------------ geometry
def _translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def random_affine_matrix(
    rng: np.random.Generator,
    out_hw: HW,
    centre: tuple[float, float],
    degrees: float = 10.0,
    translate: float = 0.1,
    scale: tuple[float, float] = (0.1, 2.0),
    shear: float = 2.0,
) -> np.ndarray:
    """A random 3x3 affine taking source points (continuous pixels) to output points.

    ``centre`` (x, y) of the source goes to the output centre shifted by up to ``translate`` of
    the output size; around it the source is rotated by up to ``degrees``, scaled by a factor in
    ``scale`` and sheared by up to ``shear`` degrees on each axis.
    """
    h, w = out_hw
    angle = rng.uniform(-degrees, degrees)
    factor = rng.uniform(*scale)
    shear_x, shear_y = (math.tan(math.radians(rng.uniform(-shear, shear))) for _ in range(2))
    rotate = np.eye(3)
    rotate[:2] = cv2.getRotationMatrix2D((0.0, 0.0), angle, factor)
    shear_m = np.array([[1.0, shear_x, 0.0], [shear_y, 1.0, 0.0], [0.0, 0.0, 1.0]])
    shift = _translation(w * (0.5 + rng.uniform(-translate, translate)), h * (0.5 + rng.uniform(-translate, translate)))
    return shift @ shear_m @ rotate @ _translation(-centre[0], -centre[1])


def pixel_matrix(matrix: np.ndarray) -> np.ndarray:
    """The 2x3 OpenCV warp matrix (pixel-centre coordinates) of a continuous-coordinate affine."""
    return (_translation(-0.5, -0.5) @ matrix @ _translation(0.5, 0.5))[:2]


def warp_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The xyxy boxes enclosing the four transformed corners of each of ``boxes`` ``[N, 4]``
    under the affine ``matrix`` (2x3 or 3x3). Exact for axis-aligned rectangles' pixels."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    corners = boxes[:, [[0, 1], [2, 1], [0, 3], [2, 3]]]  # [N, 4, 2]
    moved = corners @ matrix[:2, :2].T + matrix[:2, 2]
    return np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1)


def clip_boxes(boxes: np.ndarray, region: tuple[float, float, float, float]) -> np.ndarray:
    """``boxes`` ``[N, 4]`` xyxy clipped to ``region`` (x1, y1, x2, y2); a new array."""
    x1, y1, x2, y2 = region
    out = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    out[:, 0::2] = out[:, 0::2].clip(x1, x2)
    out[:, 1::2] = out[:, 1::2].clip(y1, y2)
    return out


def box_candidates(
    full: np.ndarray,
    clipped: np.ndarray,
    min_box_size: float = 2.0,
    min_area_ratio: float = 0.1,
    max_aspect_ratio: float = 20.0,
) -> np.ndarray:
    """Keep-mask ``[N]`` of boxes worth training on after a geometric step.

    ``full``: the transformed boxes before clipping to the image; ``clipped``: after. A box is kept
    when its clipped width and height are at least ``min_box_size``, its clipped area is at least
    ``min_area_ratio`` of its full area and ``max(w / h, h / w) <= max_aspect_ratio``.
    """
    w = clipped[:, 2] - clipped[:, 0]
    h = clipped[:, 3] - clipped[:, 1]
    full_area = (full[:, 2] - full[:, 0]) * (full[:, 3] - full[:, 1])
    aspect = np.maximum(w / np.maximum(h, 1e-9), h / np.maximum(w, 1e-9))
    return (
        (w > 0)
        & (h > 0)
        & (w >= min_box_size)
        & (h >= min_box_size)
        & (w * h >= min_area_ratio * np.maximum(full_area, 1e-9))
        & (aspect <= max_aspect_ratio)
    )


def _finish_boxes(
    full: np.ndarray, seen: np.ndarray, labels: np.ndarray, out_hw: HW, params: MixParams
) -> tuple[np.ndarray, np.ndarray]:
    """Clip ``seen`` (the visible part of each box) to the output and keep ``box_candidates``
    against the ``full`` boxes."""
    clipped = clip_boxes(seen, (0.0, 0.0, float(out_hw[1]), float(out_hw[0])))
    keep = box_candidates(full, clipped, params.min_box_size, params.min_area_ratio, params.max_aspect_ratio)
    return clipped[keep].astype(np.float32), labels[keep]


def _warp_into(out: np.ndarray, image: np.ndarray, matrix: np.ndarray) -> None:
    """Warp ``image`` by the continuous-coordinate ``matrix`` into ``out`` in place, touching only
    the output pixels that ``image`` covers (its transformed bounding rectangle, transparently)."""
    h, w = image.shape[:2]
    extent = warp_boxes(np.array([[0.0, 0.0, w, h]]), matrix)[0]
    x1, y1 = max(int(math.floor(extent[0])), 0), max(int(math.floor(extent[1])), 0)
    x2, y2 = min(int(math.ceil(extent[2])), out.shape[1]), min(int(math.ceil(extent[3])), out.shape[0])
    if x2 <= x1 or y2 <= y1:
        return
    roi = out[y1:y2, x1:x2]
    cv2.warpAffine(
        image,
        pixel_matrix(_translation(-x1, -y1) @ matrix),
        (x2 - x1, y2 - y1),
        dst=roi,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_TRANSPARENT,
    )


def _as_targets(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.asarray(sample["boxes"], dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(sample["labels"], dtype=np.int64).reshape(-1)
    return boxes, labels


def _output(base: Sample, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, **extra: Any) -> Sample:
    out = {k: v for k, v in base.items() if k not in ("image", "boxes", "labels", "ratio")}
    out.update(image=image, boxes=boxes, labels=labels, orig_size=tuple(image.shape[:2]), **extra)
    return out


# -------------------------------------------------------------------------------------- mosaic
def mosaic(samples: Sequence[Sample], out_hw: HW, rng: np.random.Generator, params: MixParams) -> Sample:
    """Four samples around a random centre on a ``2h x 2w`` canvas, then a random affine to ``out_hw``.

    Each image is scaled so that it fits ``out_hw`` (longer side to the input size) and placed
    in its quadrant touching the centre (top-left, top-right, bottom-left, bottom-right); the
    centre is uniform in the middle half of the canvas. Parts beyond the canvas are cut. The
    affine (``params``: degrees, translate, scale, shear) is about the canvas centre. Boxes are
    transformed with the pixels, clipped and filtered (``box_candidates``). Images may differ in
    size and may have no boxes. Returns a sample of size ``out_hw`` with the first sample's
    ``image_id`` and all four in ``source_ids``.
    """
    if len(samples) != 4:
        raise ValueError(f"mosaic: expected 4 samples, got {len(samples)}")
    h, w = out_hw
    xc, yc = rng.uniform(0.5 * w, 1.5 * w), rng.uniform(0.5 * h, 1.5 * h)
    affine = random_affine_matrix(
        rng, out_hw, (float(w), float(h)), params.degrees, params.translate, params.scale, params.shear
    )
    out = np.full((h, w, 3), params.pad_value, dtype=np.uint8)
    all_full, all_labels = [], []
    for k, sample in enumerate(samples):
        image = sample["image"]
        h0, w0 = image.shape[:2]
        r = min(h / h0, w / w0)
        # The image's corner on the canvas: it touches the centre with its inner corner.
        x0 = xc - w0 * r if k in (0, 2) else xc
        y0 = yc - h0 * r if k in (0, 1) else yc
        # Source pixels that land on the canvas (whole pixels, so boxes and pixels stay exact).
        sx1, sy1 = max(0, math.ceil(-x0 / r - 1e-6)), max(0, math.ceil(-y0 / r - 1e-6))
        sx2 = min(w0, math.floor((2 * w - x0) / r + 1e-6))
        sy2 = min(h0, math.floor((2 * h - y0) / r + 1e-6))
        if sx2 <= sx1 or sy2 <= sy1:
            continue
        place = np.array([[r, 0.0, x0 + sx1 * r], [0.0, r, y0 + sy1 * r], [0.0, 0.0, 1.0]])
        _warp_into(out, image[sy1:sy2, sx1:sx2], affine @ place)
        boxes, labels = _as_targets(sample)
        if len(boxes):
            canvas_boxes = boxes * r + np.array([x0, y0, x0, y0])
            cut = (x0 + sx1 * r, y0 + sy1 * r, x0 + sx2 * r, y0 + sy2 * r)
            # Clipping happens on the canvas first (pixels cut there are gone); the area filter
            # compares with the whole object, so both versions travel through the affine.
            visible = clip_boxes(canvas_boxes, cut)
            full, seen = warp_boxes(canvas_boxes, affine), warp_boxes(visible, affine)
            lost = (visible[:, 2] <= visible[:, 0]) | (visible[:, 3] <= visible[:, 1])
            seen[lost] = 0.0
            all_full.append(np.stack([full, seen], axis=0))
            all_labels.append(labels)
    if all_full:
        both = np.concatenate(all_full, axis=1)
        boxes, labels = _finish_boxes(both[0], both[1], np.concatenate(all_labels), out_hw, params)
    else:
        boxes, labels = np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)
    source_ids = [int(s.get("image_id", -1)) for s in samples]
    return _output(samples[0], out, boxes, labels, source_ids=source_ids)


# -------------------------------------------------------------------------------------- mixup
def place_for_mixup(sample: Sample, out_hw: HW, rng: np.random.Generator, params: MixParams) -> Sample:
    """A plain image prepared for MixUp the YOLOX way: letterboxed to ``out_hw`` times a jitter in
    ``params.mixup_scale``, flipped left-right with ``params.mixup_flip``, then a random ``out_hw``
    crop (at the top-left when the jittered canvas is smaller). One warp, boxes filtered."""
    h, w = out_hw
    image = sample["image"]
    h0, w0 = image.shape[:2]
    jitter = rng.uniform(*params.mixup_scale)
    r = min(h / h0, w / w0) * jitter
    canvas_w, canvas_h = int(w * jitter), int(h * jitter)
    flip = rng.random() < params.mixup_flip
    dx = int(rng.integers(0, max(canvas_w - w, 0) + 1))
    dy = int(rng.integers(0, max(canvas_h - h, 0) + 1))
    if flip:  # the flipped letterbox canvas: the image ends at the canvas's right edge
        matrix = np.array([[-r, 0.0, canvas_w - dx], [0.0, r, -dy], [0.0, 0.0, 1.0]])
    else:
        matrix = np.array([[r, 0.0, -dx], [0.0, r, -dy], [0.0, 0.0, 1.0]])
    out = np.full((h, w, 3), params.pad_value, dtype=np.uint8)
    _warp_into(out, image, matrix)
    boxes, labels = _as_targets(sample)
    moved = warp_boxes(boxes, matrix)
    boxes, labels = _finish_boxes(moved, moved, labels, out_hw, params)
    return _output(sample, out, boxes, labels)


def mixup(base: Sample, other: Sample, ratio: float) -> Sample:
    """Blend two samples of the same size: ``ratio * base + (1 - ratio) * other`` (rounded),
    boxes and labels concatenated (``base``'s first). Keeps ``base``'s ids."""
    if base["image"].shape != other["image"].shape:
        raise ValueError(f"mixup: images of different shapes {base['image'].shape} and {other['image'].shape}")
    image = cv2.addWeighted(base["image"], float(ratio), other["image"], 1.0 - float(ratio), 0.0)
    b_boxes, b_labels = _as_targets(base)
    o_boxes, o_labels = _as_targets(other)
    boxes = np.concatenate([b_boxes, o_boxes]).astype(np.float32)
    labels = np.concatenate([b_labels, o_labels])
    ids = list(base.get("source_ids", [base.get("image_id", -1)])) + list(
        other.get("source_ids", [other.get("image_id", -1)])
    )
    return _output(base, image, boxes, labels, source_ids=[int(i) for i in ids])
