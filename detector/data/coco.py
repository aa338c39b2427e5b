"""COCO-format detection dataset (official ``instances_*.json`` layout).

Samples are dicts: ``image`` uint8 HWC BGR, ``boxes`` float32 ``[N, 4]`` xyxy pixels of the
original image, ``labels`` int64 ``[N]`` in ``0..C-1``, ``image_id`` int (the file's id),
``orig_size`` ``(h, w)``. A transform may add ``ratio`` (see ``detector.data.transforms``).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Callable
from numbers import Real
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from pycocotools.coco import COCO

from detector.data import problems as P
from detector.data.problems import DataProblems, image_file_problem
from detector.errors import BrokenImageError, DatasetError
from detector.ops.boxes import xywh_to_xyxy
from detector.registry import DATASETS

Sample = dict[str, Any]


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8 HWC BGR (3 channels; grayscale is expanded).

    EXIF orientation is ignored on purpose: annotation files (COCO's among them) give sizes
    and boxes in the stored pixel layout, which an auto-rotated decode would not match.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise OSError(f"could not decode image file: {path}")
    return image


def load_coco_quietly(ann_file: str | Path | None = None, dataset: dict | None = None) -> COCO:
    """A pycocotools ``COCO`` from a file or an in-memory dict, without its progress prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        if dataset is None:
            return COCO(str(ann_file))
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
        return coco


def read_image_checked(path: Path, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """``read_image``, raising ``BrokenImageError`` (with its problem kind) for a missing or
    undecodable file, or one whose size differs from ``expected_hw``."""
    try:
        image = read_image(path)
    except FileNotFoundError as exc:
        raise BrokenImageError(P.MISSING_IMAGE, path, str(exc)) from None
    except OSError as exc:
        raise BrokenImageError(P.UNREADABLE_IMAGE, path, str(exc)) from None
    if expected_hw is not None and image.shape[:2] != tuple(expected_hw):
        h, w = image.shape[:2]
        raise BrokenImageError(
            P.SIZE_MISMATCH, path, f"image file {path} is {h}x{w} (h x w) but its annotation says "
            f"{expected_hw[0]}x{expected_hw[1]}"
        )  # fmt: skip
    return image


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_coco_json(path: Path) -> dict[str, Any]:
    """The parsed annotation file, with the top-level schema checked; ``DatasetError`` naming
    the file (and line:column for malformed JSON) otherwise."""
    try:
        data = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 JSON text ({exc.reason} at byte {exc.start})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object with 'images', 'annotations' and 'categories'")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: '{key}': missing or not a list")
    if not isinstance(data.get("annotations", []), list):
        raise DatasetError(f"{path}: 'annotations': not a list")
    ids = set()
    for i, cat in enumerate(data["categories"]):
        if not (isinstance(cat, dict) and _is_int(cat.get("id")) and isinstance(cat.get("name"), str)):
            raise DatasetError(f"{path}: categories[{i}]: expected an object with an integer 'id' and a string 'name'")
        if cat["id"] in ids:
            raise DatasetError(f"{path}: categories[{i}]: category id {cat['id']} appears twice")
        ids.add(cat["id"])
    return data


def clean_coco(data: dict[str, Any], ann_file: Path, img_dir: Path, problems: DataProblems) -> dict[str, Any]:
    """A copy of a COCO dict without what cannot be used, each drop counted in ``problems``:
    malformed or duplicate image entries, images whose file is missing or truncated
    (``image_file_problem``), annotations with missing keys, unknown image or category ids,
    non-finite, empty or entirely outside boxes. Boxes partly outside are kept (the dataset
    clips them) and counted as a notice. Annotations without ``area`` get ``w * h``."""
    images, known_ids, usable_ids = [], set(), set()
    for i, image in enumerate(data["images"]):
        name = image.get("file_name", f"images[{i}]") if isinstance(image, dict) else f"images[{i}]"
        if not (
            isinstance(image, dict) and _is_int(image.get("id")) and isinstance(image.get("file_name"), str)
            and _is_int(image.get("width")) and _is_int(image.get("height"))
            and image["width"] > 0 and image["height"] > 0
        ):  # fmt: skip
            problems.add(P.MALFORMED_IMAGE_ENTRY, name, image=name)
            if isinstance(image, dict) and _is_int(image.get("id")):
                known_ids.add(image["id"])  # its annotations go with it, not counted again
            continue
        if image["id"] in known_ids:
            problems.add(P.DUPLICATE_IMAGE, f"{name} (id {image['id']})", image=name)
            continue
        known_ids.add(image["id"])
        name_parts = Path(image["file_name"]).parts
        if Path(image["file_name"]).is_absolute() or ".." in name_parts:  # "../../etc/passwd" from a download
            problems.add(P.OUTSIDE_IMAGE_FOLDER, name, image=name)
            continue
        kind = image_file_problem(img_dir / image["file_name"])
        if kind is not None:
            problems.add(kind, name, image=name)
            continue
        usable_ids.add(image["id"])
        images.append(image)
    sizes = {image["id"]: (image["width"], image["height"]) for image in images}
    category_ids = {cat["id"] for cat in data["categories"]}
    annotations = []
    for i, ann in enumerate(data.get("annotations", [])):
        where = f"annotation {ann.get('id', i) if isinstance(ann, dict) else i}"
        bbox = ann.get("bbox") if isinstance(ann, dict) else None
        if not (
            isinstance(ann, dict) and _is_int(ann.get("image_id")) and _is_int(ann.get("category_id"))
            and isinstance(bbox, list) and len(bbox) == 4
            and all(isinstance(v, Real) and not isinstance(v, bool) for v in bbox)
        ):  # fmt: skip
            problems.add(P.MALFORMED_ANNOTATION, where)
            continue
        if ann["image_id"] not in known_ids:
            problems.add(P.UNKNOWN_IMAGE, f"{where} (image id {ann['image_id']})")
            continue
        if ann["image_id"] not in usable_ids:
            continue  # its image is left out, and counted there
        if ann["category_id"] not in category_ids:
            problems.add(P.UNKNOWN_CATEGORY, f"{where} (category id {ann['category_id']})")
            continue
        x, y, w, h = (float(v) for v in bbox)
        width, height = sizes[ann["image_id"]]
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            problems.add(P.NON_FINITE_BOX, where)
            continue
        if w <= 0 or h <= 0:
            problems.add(P.EMPTY_BOX, where)
            continue
        if x >= width or y >= height or x + w <= 0 or y + h <= 0:
            problems.add(P.OUTSIDE_BOX, where)
            continue
        if x < 0 or y < 0 or x + w > width or y + h > height:
            problems.add(P.CLIPPED_BOX, where)
        ann = dict(ann)
        if not isinstance(ann.get("area"), Real):
            ann["area"] = w * h
        if "id" not in ann:
            ann["id"] = i + 1
        annotations.append(ann)
    return {**data, "images": images, "annotations": annotations}


def empty_targets() -> tuple[np.ndarray, np.ndarray]:
    """Zero boxes ``[0, 4]`` float32 and zero labels ``[0]`` int64."""
    return np.zeros((0, 4), dtype=np.float32), np.zeros((0,), dtype=np.int64)


@DATASETS.register()
class CocoDataset(torch.utils.data.Dataset):
    """Images and boxes of a COCO instances file.

    Labels are contiguous ``0..C-1`` in sorted category-id order; ``cat_ids[label]`` is the
    file's category id and ``class_names[label]`` its name. Crowd annotations are left out
    of the training boxes but stay in ``coco`` for evaluation. Boxes are clipped to the image
    and dropped when nothing is left of them. ``filter_empty`` drops images without boxes.

    Bad data is checked when the set is built (``clean_coco``: schema, ids, box values, image
    files present and not truncated): what cannot be used is left out and counted in
    ``problems``, and ``DatasetError`` stops the set when more than ``max_broken_fraction`` of
    its images are broken. An image that still fails to decode later is reported once and
    replaced by the next readable one (``load_sample``).
    """

    def __init__(
        self,
        ann_file: str | Path,
        img_dir: str | Path,
        transform: Callable[[Sample], Sample] | None = None,
        filter_empty: bool = False,
        max_broken_fraction: float = P.DEFAULT_MAX_BROKEN_FRACTION,
    ) -> None:
        self.ann_file = Path(ann_file)
        self.img_dir = Path(img_dir)
        self.transform = transform
        self.max_broken_fraction = float(max_broken_fraction)
        if not self.ann_file.is_file():
            raise FileNotFoundError(f"annotation file not found: {self.ann_file}")
        raw = read_coco_json(self.ann_file)
        self.problems = DataProblems(str(self.ann_file))
        self._coco = load_coco_quietly(dataset=clean_coco(raw, self.ann_file, self.img_dir, self.problems))
        listed = len(raw["images"])
        self.problems.log(listed)
        self.problems.check_share(listed, self.max_broken_fraction)
        self._failed: set[int] = set()  # indices that failed to decode in this process

        cats = self._coco.loadCats(sorted(self._coco.getCatIds()))
        self.cat_ids: list[int] = [int(c["id"]) for c in cats]
        self.class_names: list[str] = [str(c["name"]) for c in cats]
        self._label_of = {cat_id: label for label, cat_id in enumerate(self.cat_ids)}

        self._targets: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        ids = sorted(int(i) for i in self._coco.getImgIds())
        for image_id in ids:
            self._targets[image_id] = self._parse_annotations(image_id)
        if filter_empty:
            ids = [i for i in ids if len(self._targets[i][1]) > 0]
        self._image_ids = ids

    def _parse_annotations(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        info = self._coco.imgs[image_id]
        anns = [a for a in self._coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        if not anns:
            return empty_targets()
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4)
        boxes = xywh_to_xyxy(xywh).numpy()
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, info["width"])
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, info["height"])
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        labels = np.array([self._label_of[a["category_id"]] for a in anns], dtype=np.int64)
        return boxes[keep].astype(np.float32), labels[keep]

    @property
    def coco(self) -> COCO:
        """The full ground truth (crowd annotations included) for pycocotools evaluation."""
        return self._coco

    @property
    def image_ids(self) -> list[int]:
        """The file's image ids in dataset order (sorted)."""
        return list(self._image_ids)

    @property
    def num_classes(self) -> int:
        return len(self.cat_ids)

    def __len__(self) -> int:
        return len(self._image_ids)

    def load_sample(self, index: int) -> Sample:
        """The untransformed sample ``index`` (image decoded, boxes in original pixels). An image
        that fails to load is reported once and the next readable one is returned instead."""
        return load_or_replace(self, index, self._load_sample)

    def _load_sample(self, index: int) -> Sample:
        image_id = self._image_ids[index]
        info = self._coco.imgs[image_id]
        image = read_image_checked(self.img_dir / info["file_name"], (info["height"], info["width"]))
        h, w = image.shape[:2]
        boxes, labels = self._targets[image_id]
        return {
            "image": image,
            "boxes": boxes.copy(),
            "labels": labels.copy(),
            "image_id": int(image_id),
            "orig_size": (h, w),
        }

    def __getitem__(self, index: int) -> Sample:
        sample = self.load_sample(index)
        return self.transform(sample) if self.transform is not None else sample

    def __repr__(self) -> str:
        return f"{type(self).__name__}(ann_file={str(self.ann_file)!r}, images={len(self)}, classes={self.num_classes})"


def record_broken(dataset: Any, index: int, exc: BrokenImageError) -> bool:
    """Note image ``index`` of ``dataset`` as failed (``dataset._failed``) and count it in
    ``dataset.problems``, once; returns whether it was new."""
    if index in dataset._failed:
        return False
    dataset._failed.add(index)
    dataset.problems.add(exc.kind, exc.path.name, image=exc.path.name)
    return True


def load_or_replace(dataset: Any, index: int, load: Callable[[int], Sample]) -> Sample:
    """``load(index)``; when that image is broken, report it once (per process), count it in
    ``dataset.problems`` and return the next readable sample. ``DatasetError`` when the images
    found broken this way exceed ``dataset.max_broken_fraction`` of the set."""
    n = len(dataset)
    for step in range(n):
        i = (index + step) % n
        if i in dataset._failed:
            continue
        try:
            return load(i)
        except BrokenImageError as exc:
            record_broken(dataset, i, exc)
            P.LOGGER.warning("%s: %s; left out, the next image is used instead", exc.path, exc.kind)
            if len(dataset._failed) > dataset.max_broken_fraction * n:
                raise DatasetError(
                    f"{dataset.problems.source}: {len(dataset._failed)} of {n} images failed to load, more than "
                    f"max_broken_fraction {dataset.max_broken_fraction:.1%}: " + "; ".join(dataset.problems.lines())
                ) from None
    raise DatasetError(f"{dataset.problems.source}: no image of the set can be loaded")
