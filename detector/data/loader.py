"""Batching: the detection collate function and a seeded DataLoader."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from detector.data.coco import Sample
from detector.utils.allocator import release_freed_memory


def collate_detection(samples: Sequence[Sample]) -> dict[str, Any]:
    """Stack transformed samples (all images the same size) into a batch.

    Returns ``images`` uint8 ``[B, 3, H, W]`` (BGR channel order kept), ``targets`` float32
    ``[M, 6]`` rows of (batch index, label, x1, y1, x2, y2) in network-input pixels,
    ``image_ids`` list[int], ``ratios`` float32 ``[B]`` (1.0 where a sample has none),
    ``orig_sizes`` list of ``(h, w)``.
    """
    if not samples:
        raise ValueError("collate_detection: empty batch")
    shapes = {tuple(s["image"].shape) for s in samples}
    if len(shapes) != 1:
        raise ValueError(
            f"collate_detection: images of different shapes {sorted(shapes)}; use a transform that letterboxes "
            "them to one size (TrainTransform / EvalTransform)"
        )
    images = torch.from_numpy(np.stack([s["image"] for s in samples])).permute(0, 3, 1, 2).contiguous()
    rows = []
    for i, s in enumerate(samples):
        boxes = np.asarray(s["boxes"], dtype=np.float32).reshape(-1, 4)
        labels = np.asarray(s["labels"], dtype=np.float32).reshape(-1, 1)
        if len(boxes) != len(labels):
            raise ValueError(f"collate_detection: sample {i} has {len(boxes)} boxes but {len(labels)} labels")
        rows.append(np.concatenate([np.full((len(boxes), 1), i, dtype=np.float32), labels, boxes], axis=1))
    return {
        "images": images,
        "targets": torch.from_numpy(np.concatenate(rows, axis=0)),
        "image_ids": [int(s["image_id"]) for s in samples],
        "ratios": torch.tensor([float(s.get("ratio", 1.0)) for s in samples], dtype=torch.float32),
        "orig_sizes": [tuple(int(v) for v in s["orig_size"]) for s in samples],
    }


def reseed_dataset(dataset: Any, seed: int, _seen: set[int] | None = None) -> None:
    """Call ``reseed(seed)`` on ``dataset`` and the transforms reachable from it (where they have one).

    Follows ``transform``, ``dataset`` (Subset, mixing wrappers) and ``datasets`` (ConcatDataset).
    """
    seen = _seen if _seen is not None else set()
    if dataset is None or id(dataset) in seen:
        return
    seen.add(id(dataset))
    own_reseed = getattr(dataset, "reseed", None)
    if callable(own_reseed):  # mixing wrappers keep a random stream of their own
        own_reseed(seed)
    transform = getattr(dataset, "transform", None)
    if transform is not None and id(transform) not in seen:
        seen.add(id(transform))
        reseed = getattr(transform, "reseed", None)
        if callable(reseed):
            reseed(seed)
    reseed_dataset(getattr(dataset, "dataset", None), seed, seen)
    for child in getattr(dataset, "datasets", None) or []:
        reseed_dataset(child, seed, seen)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed random, numpy and the augmentations from torch's seed.

    torch gives each worker ``base_seed + worker_id`` with ``base_seed`` drawn from the loader's
    generator every epoch, so workers differ from each other and from epoch to epoch, reproducibly.
    """
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    info = torch.utils.data.get_worker_info()
    if info is not None:
        reseed_dataset(info.dataset, seed)


class WorkerCollate:
    """``collate_detection`` that, inside a loader worker, returns freed heap memory to the OS
    every ``release_every`` batches, so long runs keep workers at a flat size (see
    ``detector.utils.allocator``). The main process keeps its memory, as training wants."""

    def __init__(self, release_every: int = 8) -> None:
        self.release_every = release_every
        self.batches = 0

    def __call__(self, samples: Sequence[Sample]) -> dict[str, Any]:
        batch = collate_detection(samples)
        if self.release_every and torch.utils.data.get_worker_info() is not None:
            self.batches += 1
            if self.batches % self.release_every == 0:
                release_freed_memory()
        return batch


def build_dataloader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    pin_memory: bool = False,
    drop_last: bool = False,
    seed: int = 0,
    sampler: Sampler | None = None,
    prefetch_factor: int | None = None,
    batch_sampler: Sampler[list[int]] | None = None,
) -> DataLoader:
    """A DataLoader with ``collate_detection`` (``WorkerCollate``), a seeded shuffle and seeded
    augmentation. ``sampler`` replaces the shuffle (e.g. a ``DistributedSampler``), and
    ``batch_sampler`` (e.g. a ``StepBatchSampler``) the shuffle, ``batch_size`` and ``drop_last``;
    ``prefetch_factor`` is batches loaded ahead per worker (PyTorch's default 2 when None).

    With ``num_workers=0`` the dataset's transforms are reseeded from ``seed`` here, once
    (so building the loader twice with one seed gives the same batches).
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    if num_workers == 0:
        reseed_dataset(dataset, seed)
    if batch_sampler is not None:
        batching = {"batch_sampler": batch_sampler}
    else:
        batching = {"batch_size": batch_size, "shuffle": shuffle if sampler is None else None, "sampler": sampler}
        batching["drop_last"] = drop_last
    return DataLoader(
        dataset,
        **batching,
        num_workers=num_workers,
        prefetch_factor=prefetch_factor if num_workers else None,
        pin_memory=pin_memory,
        collate_fn=WorkerCollate(),
        worker_init_fn=seed_worker,
        generator=generator,
        persistent_workers=False,
    )
