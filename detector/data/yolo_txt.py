"""YOLO txt detection dataset: a data YAML, ``images/<split>/*`` and ``labels/<split>/*.txt``.

The data YAML::

    path: ../datasets/mydata      # root; relative to the YAML file's folder; default: that folder
    train: images/train           # a folder, a list of folders, or a .txt file listing images
    val: images/val
    names: [person, car]          # or {0: person, 1: car}

Each image ``.../images/.../x.jpg`` has its labels in ``.../labels/.../x.txt`` (the last
``images`` path component replaced by ``labels``), one ``class cx cy w h`` line per box,
coordinates normalised to 0..1. A missing label file means an image without boxes.
Samples follow ``detector.data.coco``: boxes xyxy pixels, labels ``0..C-1``, image ids ``0..N-1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from pycocotools.coco import COCO

from detector.data import problems as P
from detector.data.coco import (
    Sample,
    empty_targets,
    load_coco_quietly,
    load_or_replace,
    read_image_checked,
    record_broken,
)
from detector.data.problems import DataProblems, image_file_problem
from detector.errors import BrokenImageError, ConfigError
from detector.ops.boxes import cxcywh_to_xyxy
from detector.registry import DATASETS
from detector.utils.fileio import IMAGE_SUFFIXES


def label_path_for(image_path: Path) -> Path:
    """``.../images/a/b.jpg`` -> ``.../labels/a/b.txt`` (the last ``images`` component)."""
    parts = list(image_path.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    raise ValueError(f"image {image_path} is not under an 'images' folder, so its labels folder is unknown")


def read_label_file(
    path: Path, num_classes: int, problems: DataProblems | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``[N]`` int64 labels and ``[N, 4]`` float32 normalised cx, cy, w, h from one label file.

    Without ``problems`` a bad line raises ``ValueError`` naming ``file:line``. With it, bad
    lines (column count, non-numeric, class id out of range) and bad boxes (NaN / infinite,
    zero or negative size, entirely outside 0..1) are counted there and skipped; boxes partly
    outside are kept (clipped later) and counted as a notice."""
    labels: list[int] = []
    rows: list[list[float]] = []

    def bad(kind: str, where: str, message: str) -> None:
        if problems is None:
            raise ValueError(message)
        problems.add(kind, where)

    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        fields = line.split()
        where = f"{path.name}:{lineno}"
        if not fields:
            continue
        if len(fields) != 5:
            bad(P.BAD_LABEL_LINE, where, f"{path}:{lineno}: expected 5 columns 'class cx cy w h', got {len(fields)}")
            continue
        try:
            cls_f = float(fields[0])
            values = [float(v) for v in fields[1:]]
        except ValueError:
            bad(P.BAD_LABEL_LINE, where, f"{path}:{lineno}: non-numeric value in {line.strip()!r}")
            continue
        if not math.isfinite(cls_f) or cls_f != int(cls_f) or not 0 <= cls_f < num_classes:
            bad(P.BAD_CLASS_ID, where, f"{path}:{lineno}: class {fields[0]} is not an integer in 0..{num_classes - 1}")
            continue
        cx, cy, w, h = values
        if not all(math.isfinite(v) for v in values):
            bad(P.NON_FINITE_BOX, where, f"{path}:{lineno}: box {line.strip()!r} has NaN or infinite values")
            continue
        if w <= 0 or h <= 0:
            bad(P.EMPTY_BOX, where, f"{path}:{lineno}: box {line.strip()!r} has zero or negative size")
            continue
        if cx + w / 2 <= 0 or cy + h / 2 <= 0 or cx - w / 2 >= 1 or cy - h / 2 >= 1:
            bad(P.OUTSIDE_BOX, where, f"{path}:{lineno}: box {line.strip()!r} is outside the image (0..1)")
            continue
        if problems is not None and (cx - w / 2 < 0 or cy - h / 2 < 0 or cx + w / 2 > 1 or cy + h / 2 > 1):
            problems.add(P.CLIPPED_BOX, where)
        labels.append(int(cls_f))
        rows.append(values)
    if not rows:
        return np.zeros((0,), dtype=np.int64), np.zeros((0, 4), dtype=np.float32)
    return np.array(labels, dtype=np.int64), np.array(rows, dtype=np.float32)


def _parse_names(names: Any, data_yaml: Path) -> list[str]:
    if isinstance(names, list):
        return [str(n) for n in names]
    if isinstance(names, dict):
        keys = sorted(int(k) for k in names)
        if keys != list(range(len(keys))):
            raise ConfigError(f"{data_yaml}: names: ids must be 0..{len(keys) - 1}, got {keys}")
        by_id = {int(k): str(v) for k, v in names.items()}
        return [by_id[k] for k in keys]
    raise ConfigError(f"{data_yaml}: names: expected a list or an {{id: name}} mapping, got {type(names).__name__}")


@DATASETS.register()
class YoloTxtDataset(torch.utils.data.Dataset):
    """One split of a YOLO txt dataset; ``coco`` gives an in-memory ground truth for evaluation.

    ``cat_ids[label]`` is ``label + 1`` (the category ids of ``coco``). Bad data is handled as
    in ``CocoDataset``: missing or truncated images and bad label lines are left out and
    counted in ``problems``, up to ``max_broken_fraction`` of the images.
    """

    def __init__(
        self,
        data_yaml: str | Path,
        split: str = "train",
        transform: Callable[[Sample], Sample] | None = None,
        max_broken_fraction: float = P.DEFAULT_MAX_BROKEN_FRACTION,
    ) -> None:
        self.data_yaml = Path(data_yaml)
        self.split = split
        self.transform = transform
        self.max_broken_fraction = float(max_broken_fraction)
        self.problems = DataProblems(f"{self.data_yaml} ({split})")
        self._failed: set[int] = set()
        if not self.data_yaml.is_file():
            raise FileNotFoundError(f"data YAML not found: {self.data_yaml}")
        cfg = yaml.safe_load(self.data_yaml.read_text(encoding="utf-8")) or {}
        if not isinstance(cfg, dict):
            raise ConfigError(f"{self.data_yaml}: expected a mapping at the top level")
        if "names" not in cfg:
            raise ConfigError(f"{self.data_yaml}: names: missing")
        self.class_names: list[str] = _parse_names(cfg["names"], self.data_yaml)
        self.cat_ids: list[int] = [i + 1 for i in range(len(self.class_names))]
        if split not in cfg or cfg[split] is None:
            raise ConfigError(f"{self.data_yaml}: {split}: missing; the split names its image folder")

        root = Path(cfg.get("path") or ".")
        if not root.is_absolute():
            root = self.data_yaml.parent / root
        self.root = root
        listed = self._list_images(cfg[split])
        if not listed:
            raise FileNotFoundError(f"{self.data_yaml}: {split}: no images found")
        self.image_files = []
        for image_file in listed:
            kind = image_file_problem(image_file)
            if kind is None:
                self.image_files.append(image_file)
            else:
                self.problems.add(kind, image_file.name, image=image_file.name)

        # Labels are read once (small text files); boxes stay normalised until the image is
        # decoded, because the pixel size is only known then.
        self._targets: list[tuple[np.ndarray, np.ndarray]] = []
        for image_file in self.image_files:
            label_file = label_path_for(image_file)
            if label_file.is_file():
                self._targets.append(read_label_file(label_file, self.num_classes, self.problems))
            else:
                self._targets.append((np.zeros((0,), dtype=np.int64), np.zeros((0, 4), dtype=np.float32)))
        self._coco: COCO | None = None
        self.problems.log(len(listed))
        self.problems.check_share(len(listed), self.max_broken_fraction)

    def _list_images(self, entry: Any) -> list[Path]:
        entries = entry if isinstance(entry, list) else [entry]
        files: list[Path] = []
        for item in entries:
            path = Path(item)
            if not path.is_absolute():
                path = self.root / path
            if path.is_dir():
                files.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
            elif path.suffix == ".txt" and path.is_file():
                for line in path.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        image = Path(line.strip())
                        files.append(image if image.is_absolute() else self.root / image)
            else:
                raise FileNotFoundError(f"{self.data_yaml}: {self.split}: {path} is neither a folder nor a .txt list")
        return files

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_ids(self) -> list[int]:
        return list(range(len(self.image_files)))

    def __len__(self) -> int:
        return len(self.image_files)

    @staticmethod
    def _to_pixels(cxcywh: np.ndarray, h: int, w: int) -> np.ndarray:
        """Normalised cx, cy, w, h ``[N, 4]`` -> xyxy pixels clipped to the image, float32."""
        scale = torch.tensor([w, h, w, h], dtype=torch.float64)
        boxes = cxcywh_to_xyxy(torch.from_numpy(cxcywh).double() * scale).numpy()
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
        return boxes.astype(np.float32)

    def _pixel_targets(self, index: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        labels, cxcywh = self._targets[index]
        if len(labels) == 0:
            return empty_targets()
        boxes = self._to_pixels(cxcywh, h, w)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return boxes[keep], labels[keep].copy()

    def load_sample(self, index: int) -> Sample:
        """The untransformed sample ``index`` (image decoded, boxes in original pixels); a broken
        image is reported once and the next readable one returned (``load_or_replace``)."""
        return load_or_replace(self, index, self._load_sample)

    def _load_sample(self, index: int) -> Sample:
        image = read_image_checked(self.image_files[index])
        h, w = image.shape[:2]
        boxes, labels = self._pixel_targets(index, h, w)
        return {"image": image, "boxes": boxes, "labels": labels, "image_id": index, "orig_size": (h, w)}

    def __getitem__(self, index: int) -> Sample:
        sample = self.load_sample(index)
        return self.transform(sample) if self.transform is not None else sample

    @property
    def coco(self) -> COCO:
        """An in-memory COCO ground truth of this split (built on first use: reads image sizes)."""
        if self._coco is None:
            self._coco = load_coco_quietly(dataset=self._coco_dict())
        return self._coco

    def _coco_dict(self) -> dict[str, Any]:
        images, annotations = [], []
        for index, path in enumerate(self.image_files):
            try:
                h, w = _image_size(path)
            except BrokenImageError as exc:  # not evaluated; training replaces it too
                record_broken(self, index, exc)
                continue
            images.append({"id": index, "file_name": str(path), "height": h, "width": w})
            boxes, labels = self._pixel_targets(index, h, w)
            for box, label in zip(boxes.tolist(), labels.tolist(), strict=True):
                bw, bh = box[2] - box[0], box[3] - box[1]
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": index,
                        "category_id": self.cat_ids[label],
                        "bbox": [box[0], box[1], bw, bh],
                        "area": bw * bh,
                        "iscrowd": 0,
                    }
                )
        categories = [{"id": cid, "name": name} for cid, name in zip(self.cat_ids, self.class_names, strict=True)]
        return {"images": images, "annotations": annotations, "categories": categories}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(data_yaml={str(self.data_yaml)!r}, split={self.split!r}, "
            f"images={len(self)}, classes={self.num_classes})"
        )


def _image_size(path: Path) -> tuple[int, int]:
    """``(h, w)`` of an image file, as ``read_image`` decodes it (``BrokenImageError`` if it cannot)."""
    h, w = read_image_checked(path).shape[:2]
    return int(h), int(w)
