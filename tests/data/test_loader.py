import numpy as np
import pytest
import torch

from detector.data import loader as loader_module
from detector.data.loader import build_dataloader, collate_detection
from detector.data.transforms import TrainTransform


def _sample(image_id: int, n_boxes: int, h: int = 32, w: int = 48) -> dict:
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 1, 2, 3  # B, G, R
    boxes = np.array([[i, i + 1, i + 10, i + 12] for i in range(n_boxes)], np.float32).reshape(-1, 4)
    return {
        "image": image,
        "boxes": boxes,
        "labels": np.arange(n_boxes, dtype=np.int64) + 4,
        "image_id": image_id,
        "orig_size": (h * 2, w * 2),
        "ratio": 0.5,
    }


def test_collate_shapes_and_batch_indices():
    batch = collate_detection([_sample(10, 2), _sample(11, 0), _sample(12, 3)])
    images = batch["images"]
    assert images.dtype == torch.uint8 and images.shape == (3, 3, 32, 48) and images.is_contiguous()
    assert images[0, :, 0, 0].tolist() == [1, 2, 3]  # BGR order kept, HWC -> CHW
    targets = batch["targets"]
    assert targets.dtype == torch.float32 and targets.shape == (5, 6)
    assert targets[:, 0].tolist() == [0, 0, 2, 2, 2]
    assert targets[:, 1].tolist() == [4, 5, 4, 5, 6]
    assert targets[3, 2:].tolist() == [1, 2, 11, 13]
    assert batch["image_ids"] == [10, 11, 12]
    assert batch["ratios"].dtype == torch.float32 and batch["ratios"].tolist() == [0.5, 0.5, 0.5]
    assert batch["orig_sizes"] == [(64, 96)] * 3

    empty = collate_detection([_sample(1, 0)])
    assert empty["targets"].shape == (0, 6)


def test_collate_rejects_mixed_sizes():
    with pytest.raises(ValueError, match="different shapes"):
        collate_detection([_sample(1, 1), _sample(2, 1, h=40)])


class ToyDataset(torch.utils.data.Dataset):
    """Images with one box each, so augmentation shows in the targets."""

    def __init__(self, n: int, transform=None, same: bool = False) -> None:
        self.n = n
        self.transform = transform
        self.same = same

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        sample = _sample(index, 1, h=40, w=60)
        shift = 0 if self.same else index
        sample["boxes"] = np.array([[5 + shift, 5, 25 + shift, 30]], np.float32)
        del sample["ratio"]
        return self.transform(sample) if self.transform is not None else sample


def _epochs(num_workers: int, seed: int, epochs: int = 2) -> list[tuple[list[int], list[list[float]]]]:
    augment = [{"type": "HorizontalFlip", "p": 0.5}, {"type": "Affine", "scale": [0.6, 1.4], "p": 0.5}]
    dataset = ToyDataset(12, TrainTransform(64, augment))
    loader = build_dataloader(dataset, batch_size=4, shuffle=True, num_workers=num_workers, seed=seed)
    return [(b["image_ids"], b["targets"].tolist()) for _ in range(epochs) for b in loader]


def test_loader_is_reproducible_in_process():
    first = _epochs(num_workers=0, seed=0)
    assert first == _epochs(num_workers=0, seed=0)
    assert first != _epochs(num_workers=0, seed=1)
    ids = [i for batch_ids, _ in first[:3] for i in batch_ids]
    assert sorted(ids) == list(range(12)) and ids != list(range(12))  # shuffled, all images
    assert first[:3] != first[3:]  # the second epoch is another draw


def test_loader_is_reproducible_with_workers():
    first = _epochs(num_workers=2, seed=0)
    assert first == _epochs(num_workers=2, seed=0)
    assert first[:3] != first[3:]


def test_workers_get_different_augmentation_streams():
    augment = [{"type": "HorizontalFlip", "p": 0.5}, {"type": "Affine", "scale": [0.6, 1.4], "p": 0.5}]
    dataset = ToyDataset(8, TrainTransform(64, augment), same=True)
    loader = build_dataloader(dataset, batch_size=4, shuffle=False, num_workers=2, seed=0)
    # Batch 0 comes from worker 0, batch 1 from worker 1, on identical samples: one shared
    # augmentation seed would make their boxes equal.
    boxes = [b["targets"][:, 2:] for b in loader]
    assert not torch.equal(boxes[0], boxes[1])


def test_worker_collate_releases_memory_every_few_batches_in_workers_only(monkeypatch):
    calls = []
    monkeypatch.setattr(loader_module, "release_freed_memory", lambda: calls.append(1) or True)
    samples = [_sample(0, 1)]
    collate = loader_module.WorkerCollate(release_every=3)
    for _ in range(7):
        batch = collate(samples)
    assert calls == [] and batch["images"].shape[0] == 1  # the main process keeps its memory
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: object())
    for _ in range(7):
        collate(samples)
    assert len(calls) == 2
