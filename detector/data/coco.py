"""COCO-format detection dataset (official ``instances_*.json`` layout).

Samples are dicts: ``image`` uint8 HWC BGR, ``boxes`` float32 ``[N, 4]`` xyxy pixels of the
original image, ``labels`` int64 ``[N]`` in ``0..C-1``, ``image_id`` int (the file's id),
``orig_size`` ``(h, w)``. A transform may add ``ratio`` (see ``detector.data.transforms``).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from pycocotools.coco import COCO

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
    """

    def __init__(
        self,
        ann_file: str | Path,
        img_dir: str | Path,
        transform: Callable[[Sample], Sample] | None = None,
        filter_empty: bool = False,
    ) -> None:
        self.ann_file = Path(ann_file)
        self.img_dir = Path(img_dir)
        self.transform = transform
        if not self.ann_file.is_file():
            raise FileNotFoundError(f"annotation file not found: {self.ann_file}")
        self._coco = load_coco_quietly(self.ann_file)

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
        for a in anns:
            if a["category_id"] not in self._label_of:
                raise ValueError(
                    f"{self.ann_file}: annotation {a.get('id')} has category_id {a['category_id']}, "
                    f"which is not among the file's categories"
                )
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
        """The untransformed sample ``index`` (image decoded, boxes in original pixels)."""
        image_id = self._image_ids[index]
        info = self._coco.imgs[image_id]
        path = self.img_dir / info["file_name"]
        image = read_image(path)
        h, w = image.shape[:2]
        if (h, w) != (info["height"], info["width"]):
            raise ValueError(
                f"image file {path} is {h}x{w} (h x w) but {self.ann_file} says {info['height']}x{info['width']}"
            )
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
