"""The Mosaic/MixUp training-set wrapper: probabilities, the no-aug switch, seeding, samplers,
every dataset format, and the config that builds it."""

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from detector.data.coco import CocoDataset
from detector.data.loader import build_dataloader
from detector.data.mix import MixParams
from detector.data.mix_dataset import MixDataset, build_train_dataset
from detector.data.synthetic import coco_split_configs, generate_synthetic_coco
from detector.data.transforms import TrainTransform
from detector.data.yolo_txt import YoloTxtDataset
from detector.errors import ConfigError


class PaintedDataset(torch.utils.data.Dataset):
    """``n`` images of varying size, image ``i`` with ``i % 3`` boxes (some images are empty)."""

    def __init__(self, n: int = 10, transform=None) -> None:
        self.n = n
        self.decoded = 0
        self.transform = transform
        self.num_classes = 3
        self.class_names = ["a", "b", "c"]
        self.cat_ids = [1, 2, 3]

    def __len__(self) -> int:
        return self.n

    def load_sample(self, index: int) -> dict:
        self.decoded += 1
        h, w = 80 + 10 * (index % 10), 120 - 5 * (index % 10)
        image = np.full((h, w, 3), 20 + index, np.uint8)
        boxes = np.array([[5 + 10 * k, 5, 30 + 10 * k, 40] for k in range(index % 3)], np.float32).reshape(-1, 4)
        for x1, y1, x2, y2 in boxes.astype(int):
            image[y1:y2, x1:x2] = 200
        labels = np.arange(index % 3, dtype=np.int64)
        return {"image": image, "boxes": boxes, "labels": labels, "image_id": 100 + index, "orig_size": (h, w)}

    def __getitem__(self, index: int) -> dict:
        sample = self.load_sample(index)
        return self.transform(sample) if self.transform else sample


def test_mosaic_and_mixup_samples_start_with_their_index():
    ds = MixDataset(PaintedDataset(), 64, MixParams(mixup_prob=1.0), transform=TrainTransform(64))
    for index in range(len(ds)):
        out = ds[index]
        assert out["image"].shape == (64, 64, 3)
        assert out["image_id"] == 100 + index
        assert len(out["source_ids"]) == 5 and out["source_ids"][0] == 100 + index  # 4 in the mosaic + 1
        assert set(out["source_ids"]) <= set(range(100, 110))
        assert out["boxes"].shape[1] == 4 and len(out["boxes"]) == len(out["labels"])
    assert len(ds) == 10 and ds.num_classes == 3 and ds.class_names == ["a", "b", "c"] and ds.cat_ids == [1, 2, 3]


def test_mixup_partner_has_boxes_and_mosaic_source_gives_eight_images():
    ds = MixDataset(PaintedDataset(), 64, MixParams(mixup_prob=1.0, min_box_size=0, min_area_ratio=0), seed=1)
    for index in range(10):
        partner = ds[index]["source_ids"][4]
        assert (partner - 100) % 3 != 0, "YOLOX draws a MixUp partner that has boxes"
    ds = MixDataset(PaintedDataset(), 64, MixParams(mixup_prob=1.0, mixup_source="mosaic", mixup_beta=32.0))
    assert len(ds[3]["source_ids"]) == 8


def test_buffer_saves_decodes_and_stays_bounded():
    base = PaintedDataset(50)
    ds = MixDataset(base, 48, MixParams(buffer_size=6, mixup_prob=1.0))
    loaded = []
    for index in range(6):  # filling: the primary and every companion are decoded
        loaded.append(ds[index]["source_ids"])
    assert base.decoded > 6 and len(ds._buffer) == 6
    for index in range(6, 30):
        before = base.decoded
        ids = ds[index]["source_ids"]
        assert base.decoded == before + 1, "a full buffer: only the sample's own image is decoded"
        recent = {s["image_id"] for s in ds._buffer}
        assert ids[0] == 100 + index and set(ids[1:]) <= recent | {100 + index}
        assert len(ds._buffer) == 6
    ds.reseed(0)
    assert ds._buffer == []
    yolox = MixDataset(PaintedDataset(50), 48, MixParams(buffer_size=0, mixup_prob=1.0))
    for index in range(10):
        yolox[index]
    assert yolox.dataset.decoded >= 50 and yolox._buffer == []  # 5 decodes per sample


def test_probabilities_zero_and_one():
    plain = MixDataset(PaintedDataset(), 64, MixParams(mosaic_prob=0.0), transform=TrainTransform(64))
    reference = TrainTransform(64)(PaintedDataset().load_sample(4))
    out = plain[4]
    assert "source_ids" not in out
    np.testing.assert_array_equal(out["image"], reference["image"])
    np.testing.assert_array_equal(out["boxes"], reference["boxes"])

    half = MixDataset(PaintedDataset(200), 32, MixParams(mosaic_prob=0.5, mixup_prob=0.5), seed=0)
    kinds = [len(half[i].get("source_ids", [0])) for i in range(200)]
    assert 70 < kinds.count(1) < 130  # no mosaic
    assert 25 < kinds.count(4) < 75 and 25 < kinds.count(5) < 75  # mosaic, mosaic + mixup


def test_single_transform_only_where_no_mosaic_and_only_while_mixing():
    flip_all = TrainTransform(64, [{"type": "HorizontalFlip", "p": 1.0}])
    ds = MixDataset(
        PaintedDataset(), 64, MixParams(mosaic_prob=0.0), transform=TrainTransform(64), single_transform=flip_all
    )
    flipped = ds[2]["boxes"]
    ds.mixing = False
    unflipped = ds[2]["boxes"]
    # Image 2 is 100 x 110 (h x w): the letterbox scale is 64 / 110.
    np.testing.assert_allclose(unflipped[0], np.array([5, 5, 30, 40]) * (64 / 110), rtol=1e-5)
    np.testing.assert_allclose(flipped[0], np.array([110 - 30, 5, 110 - 5, 40]) * (64 / 110), rtol=1e-5)


def test_no_aug_switch_gives_the_letterboxed_plain_sample():
    ds = MixDataset(PaintedDataset(), 64, MixParams(), transform=TrainTransform(64))
    ds.mixing = False
    for index in (0, 5):
        ref = TrainTransform(64)(PaintedDataset().load_sample(index))
        out = ds[index]
        np.testing.assert_array_equal(out["image"], ref["image"])
        np.testing.assert_array_equal(out["boxes"], ref["boxes"])
        assert out["ratio"] == ref["ratio"] and "source_ids" not in out


def test_same_seed_same_samples_other_seed_other_samples():
    def draw(seed):
        ds = MixDataset(PaintedDataset(), 96, MixParams(), seed=seed)
        return [ds[i] for i in range(6)]

    a, b, c = draw(5), draw(5), draw(6)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["boxes"], y["boxes"])
    assert any(not np.array_equal(x["image"], z["image"]) for x, z in zip(a, c, strict=True))
    ds = MixDataset(PaintedDataset(), 96, MixParams(), seed=5)
    first = ds[0]["image"]
    ds.reseed(5)
    np.testing.assert_array_equal(ds[0]["image"], first)


def _batches(num_workers: int, seed: int) -> list:
    ds = MixDataset(PaintedDataset(16), 64, MixParams(), transform=TrainTransform(64))
    loader = build_dataloader(ds, batch_size=4, shuffle=True, num_workers=num_workers, seed=seed)
    return [(b["image_ids"], b["targets"].tolist(), b["images"].sum().item()) for b in loader]


def test_loader_with_workers_is_reproducible():
    first = _batches(num_workers=2, seed=0)
    assert first == _batches(num_workers=2, seed=0)
    assert first != _batches(num_workers=2, seed=1)
    assert sorted(i for ids, _, _ in first for i in ids) == list(range(100, 116))


def test_distributed_sampler_covers_every_image_once():
    ds = MixDataset(PaintedDataset(10), 32, MixParams())
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        sampler.set_epoch(3)
        seen += [ds[i]["image_id"] for i in sampler]
    assert sorted(seen) == list(range(100, 110))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate_synthetic_coco(tmp_path_factory.mktemp("shapes"), num_train=6, num_val=1, image_size=(72, 96))


def test_works_over_coco_and_yolo_txt_datasets(shapes, tmp_path):
    coco = CocoDataset(shapes["train_ann"], shapes["train_images"])
    # The same images as a YOLO txt set.
    (tmp_path / "images").mkdir()
    for i, image_id in enumerate(coco.image_ids):
        sample = coco.load_sample(i)
        cv2.imwrite(str(tmp_path / "images" / f"{image_id}.png"), sample["image"])
        (tmp_path / "labels").mkdir(exist_ok=True)
        lines = [
            f"{label} {(x1 + x2) / 192} {(y1 + y2) / 144} {(x2 - x1) / 96} {(y2 - y1) / 72}"
            for (x1, y1, x2, y2), label in zip(sample["boxes"], sample["labels"], strict=True)
        ]
        (tmp_path / "labels" / f"{image_id}.txt").write_text("\n".join(lines))
    names = ", ".join(coco.class_names)
    (tmp_path / "data.yaml").write_text(f"path: .\ntrain: images\nnames: [{names}]\n")
    yolo = YoloTxtDataset(tmp_path / "data.yaml")
    params = MixParams(min_box_size=0, min_area_ratio=0)
    for base in (coco, yolo):
        ds = MixDataset(base, 64, params, transform=TrainTransform(64), seed=2)
        samples = [ds[i] for i in range(len(ds))]
        assert all(s["image"].shape == (64, 64, 3) for s in samples)
        assert sum(len(s["boxes"]) for s in samples) > 0
    # Same images, same random stream: the same mosaics whichever format they came from.
    a = MixDataset(coco, 64, params, seed=2)[3]
    b = MixDataset(yolo, 64, params, seed=2)[3]
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-3)


def test_build_train_dataset_from_config(shapes):
    train = coco_split_configs(shapes)["train"]

    data = {"train": train, "imgsz": 64, "augment": [{"type": "HorizontalFlip", "p": 0.5}]}
    plain = build_train_dataset(data)
    assert isinstance(plain, CocoDataset) and plain.transform.pipeline is not None

    data["mix"] = {"mosaic_prob": 0.5, "degrees": 0.0, "single_augment": [{"type": "Affine", "scale": [0.9, 1.1]}]}
    mixed = build_train_dataset(data, seed=4)
    assert isinstance(mixed, MixDataset) and mixed.mixing
    assert mixed.params.mosaic_prob == 0.5 and mixed.params.degrees == 0.0 and mixed.params.mixup_prob == 1.0
    assert mixed.single_transform.pipeline is not None and mixed.dataset.transform is None
    assert mixed[0]["image"].shape == (64, 64, 3)
    off = build_train_dataset(data, augment=False)
    assert not off.mixing and off.transform.pipeline is None

    with pytest.raises(ConfigError, match=r"data\.train: missing"):
        build_train_dataset({"imgsz": 64})
    with pytest.raises(ConfigError, match=r"data\.mix: \[1, 2\]; expected a mapping of settings or null"):
        build_train_dataset({**data, "mix": [1, 2]})
    with pytest.raises(ConfigError, match=r"data\.mix\.shaer: unknown key; did you mean 'data\.mix\.shear'"):
        build_train_dataset({**data, "mix": {"shaer": 2.0}})
    with pytest.raises(ConfigError, match=r"augmentations\[0\]\.type: unknown albumentations transform 'Afine'"):
        build_train_dataset({**data, "mix": {"single_augment": [{"type": "Afine"}]}})


def test_needs_a_dataset_with_load_sample():
    with pytest.raises(TypeError, match="has no load_sample"):
        MixDataset([1, 2, 3], 64)
