"""The training-set wrapper that applies Mosaic and MixUp with configured probabilities.

It wraps any dataset with ``load_sample(index)`` (COCO json, YOLO txt, the synthetic set) and
keeps its length and index order, so any sampler works (shuffling, ``DistributedSampler``):
sample ``i`` has image ``i`` first. The mosaic's other images and the MixUp partner come from a
ring buffer of the last ``buffer_size`` decoded images (each worker has its own; it is emptied
at every reseed, so an epoch's samples depend on the seed alone), or with ``buffer_size: 0``
are drawn from the whole dataset and decoded, as YOLOX does. Memory is bounded by the buffer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from detector.config_sections import DataConfig
from detector.data.coco import Sample
from detector.data.mix import MixParams, mixup, mosaic, place_for_mixup
from detector.data.transforms import Size, TrainTransform, to_hw
from detector.errors import ConfigError
from detector.registry import DATASETS
from detector.schema import parse_section

#: Tries at drawing a MixUp partner that has boxes (YOLOX redraws until it finds one).
_PARTNER_TRIES = 10


class MixDataset(torch.utils.data.Dataset):
    """Mosaic (probability ``params.mosaic_prob``), then MixUp on mosaics (``params.mixup_prob``),
    then ``transform`` (the albumentations list and the letterbox, usually ``TrainTransform``).

    Samples that get no mosaic go through ``single_transform`` first (e.g. a ``TrainTransform``
    with an albumentations ``Affine``), since the mosaic's own affine does not reach them.
    ``mixing = False`` turns Mosaic, MixUp and ``single_transform`` off (YOLOX's last no-aug
    epochs); ``transform`` still runs. ``reseed(seed)`` restarts the random streams (the data
    loader calls it per worker and per epoch).
    """

    def __init__(
        self,
        dataset: Any,
        imgsz: Size,
        params: MixParams | None = None,
        transform: Any = None,
        single_transform: Any = None,
        seed: int = 0,
    ) -> None:
        if not callable(getattr(dataset, "load_sample", None)):
            raise TypeError(f"MixDataset: {type(dataset).__name__} has no load_sample(index) to draw images from")
        self.dataset = dataset
        self.imgsz = to_hw(imgsz)
        self.params = params if params is not None else MixParams()
        self.transform = transform
        self.single_transform = single_transform
        self.mixing = True
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the mixing stream (and ``single_transform``'s) from ``seed``."""
        # Tagged so that it never equals the albumentations stream seeded with the same number.
        self.rng = np.random.default_rng([int(seed), 0x4D4958])
        self._buffer: list[Sample] = []
        self._buffer_next = 0
        reseed = getattr(self.single_transform, "reseed", None)
        if callable(reseed):
            reseed(seed)

    # Attributes the trainer and evaluator read from a training set.
    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def class_names(self) -> list[str]:
        return self.dataset.class_names

    @property
    def cat_ids(self) -> list[int]:
        return self.dataset.cat_ids

    @property
    def image_ids(self) -> list[int]:
        return self.dataset.image_ids

    @property
    def coco(self) -> Any:
        return self.dataset.coco

    def __len__(self) -> int:
        return len(self.dataset)

    def _random_index(self) -> int:
        return int(self.rng.integers(0, len(self.dataset)))

    def _load(self, index: int) -> Sample:
        """Decode sample ``index`` and remember it in the ring buffer."""
        sample = self.dataset.load_sample(index)
        size = self.params.buffer_size
        if size:
            if len(self._buffer) < size:
                self._buffer.append(sample)
            else:
                self._buffer[self._buffer_next] = sample
            self._buffer_next = (self._buffer_next + 1) % size
        return sample

    def _companion(self) -> Sample:
        """Another image: from the full buffer, else a random one of the dataset (decoded)."""
        if self.params.buffer_size and len(self._buffer) >= self.params.buffer_size:
            return self._buffer[int(self.rng.integers(0, len(self._buffer)))]
        return self._load(self._random_index())

    def _mosaic(self, index: int) -> Sample:
        samples = [self._load(index)] + [self._companion() for _ in range(3)]
        return mosaic(samples, self.imgsz, self.rng, self.params)

    def _mixup_partner(self) -> Sample:
        if self.params.mixup_source == "mosaic":
            return mosaic([self._companion() for _ in range(4)], self.imgsz, self.rng, self.params)
        for _ in range(_PARTNER_TRIES):
            sample = self._companion()
            if len(sample["labels"]):
                break
        return place_for_mixup(sample, self.imgsz, self.rng, self.params)

    def _mixup_ratio(self) -> float:
        if self.params.mixup_beta is not None:
            return float(self.rng.beta(self.params.mixup_beta, self.params.mixup_beta))
        return self.params.mixup_ratio

    def __getitem__(self, index: int) -> Sample:
        p = self.params
        if self.mixing and p.mosaic_prob > 0 and self.rng.random() < p.mosaic_prob:
            sample = self._mosaic(index)
            if p.mixup_prob > 0 and self.rng.random() < p.mixup_prob:
                sample = mixup(sample, self._mixup_partner(), self._mixup_ratio())
        else:
            sample = self._load(index) if self.mixing else self.dataset.load_sample(index)
            if self.mixing and self.single_transform is not None:
                sample = self.single_transform(sample)
        return self.transform(sample) if self.transform is not None else sample

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.dataset!r}, imgsz={self.imgsz}, {self.params}, mixing={self.mixing})"


def _data_section(data_cfg: DataConfig | Mapping[str, Any]) -> DataConfig:
    return parse_section(DataConfig, data_cfg, "data")


def train_transform(data_cfg: DataConfig | Mapping[str, Any], augment: bool = True) -> TrainTransform:
    """The per-sample transform of the training set: ``data.augment`` (when ``augment``), then the
    letterbox to ``data.imgsz``, boxes under ``data.min_box_size`` pixels dropped."""
    data = _data_section(data_cfg)
    return TrainTransform(data.imgsz, data.augment if augment else None, min_box_size=data.min_box_size)


def build_train_dataset(data_cfg: DataConfig | Mapping[str, Any], augment: bool = True, seed: int = 0) -> Any:
    """The training set that ``data_cfg`` (the config's ``data`` section) describes, as the model
    receives it.

    ``data.train``: the dataset config (built through ``DATASETS``). ``data.augment``: the
    albumentations list for every sample (colour, blur, flips). ``data.mix``: Mosaic/MixUp
    settings (``MixParams``, with ``single_augment``, an albumentations list for samples that get
    no mosaic). Without ``data.mix`` the set is the plain dataset with a ``TrainTransform``.
    ``augment=False`` gives the no-aug version (letterbox only, mixing off).
    """
    data = _data_section(data_cfg)
    if data.train is None:
        raise ConfigError("data.train: missing; expected a dataset config with a 'type'")
    transform = train_transform(data, augment)
    if data.mix is None:
        return DATASETS.build(data.train, "data.train", transform=transform)
    params = data.mix
    single = params.single_augment
    single_transform = TrainTransform(data.imgsz, single, min_box_size=data.min_box_size) if single else None
    dataset = DATASETS.build(data.train, "data.train", transform=None)
    mixed = MixDataset(dataset, data.imgsz, params, transform, single_transform, seed=seed)
    mixed.mixing = augment
    return mixed
