"""A synthetic COCO-format detection dataset: coloured shapes on textured backgrounds.

The class of an object is its shape (circle, square, triangle, cross, ring); colours,
rotations, sizes (``min_size`` up to half the image side, log-uniform) and backgrounds
(gradients, stripes, smooth blobs, noise) are random, so a model has to learn shape. Shapes may
overlap; a placement that would leave an earlier shape less than ``min_visible`` of its pixels
is retried elsewhere (or the shape is left out), so every drawn shape is labelled and none is
almost hidden. A box is the full shape's tight box (occluded parts included). Each shape's
colour is picked far from the pixels it covers, so it stands out. Every image has its own
random stream from ``(seed, split, index)``: one seed gives byte-identical files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring")
_SPLIT_CODES = {"train": 0, "val": 1}
_SHIFT = 4  # fractional bits for cv2 drawing: sub-pixel vertex positions
_ONE = 1 << _SHIFT


def _polygon_unit(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Vertices ``[K, 2]`` of a shape around the origin, before rotation and scaling."""
    if kind == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    if kind == "triangle":
        angles = np.deg2rad([90.0, 210.0, 330.0])
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if kind == "cross":
        t = rng.uniform(0.28, 0.4)  # half arm thickness relative to half length 1
        return np.array(
            [
                [-t, -1],
                [t, -1],
                [t, -t],
                [1, -t],
                [1, t],
                [t, t],
                [t, 1],
                [-t, 1],
                [-t, t],
                [-1, t],
                [-1, -t],
                [-t, -t],
            ],
            dtype=np.float64,
        )
    raise ValueError(f"not a polygon shape: {kind}")


def shape_mask(kind: str, size: float, rng: np.random.Generator) -> np.ndarray:
    """A bool mask of one shape whose larger extent is about ``size`` pixels, cropped tight."""
    n = int(np.ceil(size)) + 4
    mask = np.zeros((n, n), dtype=np.uint8)
    centre = n / 2.0
    if kind in ("circle", "ring"):
        c = (round(centre * _ONE), round(centre * _ONE))
        radius = size / 2.0
        cv2.circle(mask, c, round(radius * _ONE), 1, thickness=-1, lineType=cv2.LINE_8, shift=_SHIFT)
        if kind == "ring":
            # A hole of 45-65% of the radius, with at least 2 px of ring left around it.
            inner = min(radius * rng.uniform(0.45, 0.65), radius - 2.0)
            inner = max(inner, 1.0)
            cv2.circle(mask, c, round(inner * _ONE), 0, thickness=-1, lineType=cv2.LINE_8, shift=_SHIFT)
    else:
        points = _polygon_unit(kind, rng)
        theta = rng.uniform(0.0, 2.0 * np.pi)
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        points = points @ rot.T
        extent = points.max(axis=0) - points.min(axis=0)
        points = (points - points.min(axis=0)) * (size / extent.max()) + (centre - size * extent / extent.max() / 2)
        fixed = np.round(points * _ONE).astype(np.int32).reshape(1, -1, 2)
        cv2.fillPoly(mask, fixed, 1, lineType=cv2.LINE_8, shift=_SHIFT)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(bool)


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A float32 ``[h, w, 3]`` background: gradient, stripes, smooth blobs or noise."""
    kind = rng.integers(4)
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    theta = rng.uniform(0.0, np.pi)
    proj = xs * np.float32(np.cos(theta)) + ys * np.float32(np.sin(theta))
    c1 = rng.uniform(0, 255, 3).astype(np.float32)
    if kind == 0:  # linear gradient between two colours
        c2 = rng.uniform(0, 255, 3).astype(np.float32)
        t = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1.0)
        image = c1 + (c2 - c1) * t[..., None]
    elif kind == 1:  # stripes of limited contrast, soft or hard
        c2 = np.clip(c1 + rng.uniform(-70, 70, 3), 0, 255).astype(np.float32)
        wave = np.sin(proj * np.float32(2 * np.pi / rng.uniform(6, 40)))
        t = (wave > 0).astype(np.float32) if rng.random() < 0.5 else (wave + 1) / 2
        image = c1 + (c2 - c1) * t[..., None]
    elif kind == 2:  # smooth colour blobs: a coarse random grid upsampled
        k = int(rng.integers(2, 7))
        grid = rng.uniform(0, 255, (k, k, 3)).astype(np.float32)
        image = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    else:  # noise around one colour, at full or half resolution
        sigma = rng.uniform(8, 30)
        if rng.random() < 0.5:
            image = c1 + rng.normal(0, sigma, (h, w, 3)).astype(np.float32)
        else:
            small = rng.normal(0, sigma, ((h + 1) // 2, (w + 1) // 2, 3)).astype(np.float32)
            image = c1 + cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return image.astype(np.float32)


def _pick_colour(under: np.ndarray, rng: np.random.Generator, tries: int = 8) -> np.ndarray:
    """A random colour far (Euclidean, BGR) from the mean of the pixels it will cover."""
    mean = under.reshape(-1, 3).mean(axis=0)
    candidates = rng.integers(0, 256, (tries, 3)).astype(np.float32)
    dist = np.linalg.norm(candidates - mean, axis=1)
    good = np.flatnonzero(dist >= 130)
    return candidates[good[0]] if len(good) else candidates[int(dist.argmax())]


def render_image(
    height: int,
    width: int,
    rng: np.random.Generator,
    classes: Sequence[str] = CLASS_NAMES,
    max_objects: int = 8,
    min_size: float = 8.0,
    max_size: float | None = None,
    min_visible: float = 0.4,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One uint8 BGR image and its objects: dicts with ``label``, ``box`` xyxy pixels, ``area``.

    ``area`` is the shape's visible pixel count (COCO's meaning of area).
    """
    max_size = float(max_size if max_size is not None else min(height, width) / 2)
    image = _background(height, width, rng)
    owner = np.full((height, width), -1, dtype=np.int32)  # which object each pixel shows
    visible: list[int] = []
    full: list[int] = []
    objects: list[dict[str, Any]] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(len(classes)))
        size = float(np.exp(rng.uniform(np.log(min_size), np.log(max_size))))
        mask = shape_mask(classes[label], size, rng)
        mh, mw = mask.shape
        if mh > height or mw > width:
            continue
        for _attempt in range(10):
            y0 = int(rng.integers(0, height - mh + 1))
            x0 = int(rng.integers(0, width - mw + 1))
            region = owner[y0 : y0 + mh, x0 : x0 + mw]
            covered = region[mask]
            lost = np.bincount(covered[covered >= 0], minlength=len(visible))
            if visible and np.any(np.asarray(visible) - lost < min_visible * np.asarray(full)):
                continue
            patch = image[y0 : y0 + mh, x0 : x0 + mw]
            patch[mask] = _pick_colour(patch[mask], rng)
            region[mask] = len(objects)
            visible = [v - int(c) for v, c in zip(visible, lost.tolist(), strict=True)]
            pixels = int(mask.sum())
            visible.append(pixels)
            full.append(pixels)
            objects.append({"label": label, "box": [x0, y0, x0 + mw, y0 + mh]})
            break
    for obj, pixels in zip(objects, visible, strict=True):
        obj["area"] = pixels
    if rng.random() < 0.5:  # mild sensor noise over everything
        image += rng.normal(0, rng.uniform(1, 5), image.shape).astype(np.float32)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), objects


def generate_synthetic_coco(
    out_dir: str | Path,
    num_train: int = 500,
    num_val: int = 100,
    image_size: int | tuple[int, int] = 320,
    seed: int = 0,
    max_objects: int = 8,
    min_size: float = 8.0,
    max_size: float | None = None,
    min_visible: float = 0.4,
    classes: Sequence[str] = CLASS_NAMES,
    image_format: str = "jpg",
) -> dict[str, Path]:
    """Write ``out_dir/images/{train,val}/*`` and ``out_dir/annotations/instances_{train,val}.json``.

    ``image_size``: int or ``(h, w)``. ``max_size`` defaults to half the shorter side.
    ``classes``: shape names out of ``CLASS_NAMES``; category ids are 1.. in that order.
    Returns ``root``, ``train_images``, ``val_images``, ``train_ann``, ``val_ann`` paths.
    """
    unknown = [c for c in classes if c not in CLASS_NAMES]
    if unknown or not classes:
        raise ValueError(f"classes: unknown shapes {unknown}; choose from {', '.join(CLASS_NAMES)}")
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format: expected 'jpg' or 'png', got {image_format!r}")
    height, width = (image_size, image_size) if isinstance(image_size, int) else (int(v) for v in image_size)
    if min(height, width) < 2 * min_size:
        raise ValueError(f"image_size {image_size} is too small for min_size {min_size}")
    root = Path(out_dir)
    paths = {"root": root}
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(classes)]
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if image_format == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    for split, count in (("train", num_train), ("val", num_val)):
        img_dir = root / "images" / split
        ann_file = root / "annotations" / f"instances_{split}.json"
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_file.parent.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for index in range(count):
            rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
            image, objects = render_image(
                height, width, rng, classes, max_objects, min_size, max_size, min_visible=min_visible
            )
            file_name = f"{index:06d}.{image_format}"
            if not cv2.imwrite(str(img_dir / file_name), image, params):
                raise OSError(f"could not write {img_dir / file_name}")
            image_id = index + 1
            images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
            for obj in objects:
                x1, y1, x2, y2 = obj["box"]
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": obj["label"] + 1,
                        "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                        "area": float(obj["area"]),
                        "iscrowd": 0,
                    }
                )
        info = {"description": "synthetic shapes", "seed": seed, "split": split, "version": 1}
        data = {"info": info, "licenses": [], "images": images, "annotations": annotations, "categories": categories}
        ann_file.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
        paths[f"{split}_images"] = img_dir
        paths[f"{split}_ann"] = ann_file
    return paths


def coco_split_configs(paths: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """``data.train`` / ``data.val`` config entries (``CocoDataset``) for the set that
    ``generate_synthetic_coco`` wrote (its returned ``paths``)."""
    return {
        split: {"type": "CocoDataset", "ann_file": str(paths[f"{split}_ann"]), "img_dir": str(paths[f"{split}_images"])}
        for split in ("train", "val")
    }
