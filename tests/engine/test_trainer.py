"""Training on a tiny generated set: the loss goes down, resume is exact, bad input is caught."""

import copy
import logging

import pytest
import torch

from detector.config import load_config
from detector.data.mix_dataset import MixDataset
from detector.data.synthetic import coco_split_configs, generate_synthetic_coco
from detector.engine.trainer import Trainer
from detector.errors import ConfigError, TrainingError
from detector.utils.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate_synthetic_coco(tmp_path_factory.mktemp("shapes"), num_train=12, num_val=4, image_size=96, seed=3)


def make_cfg(configs_dir, shapes, tmp_path, **train):
    cfg = load_config(configs_dir / "yolox_nano_shapes.yaml")
    cfg["data"].update(
        **coco_split_configs(shapes),
        imgsz=96,
        batch_size=4,
        num_workers=0,
    )
    cfg["train"].update(
        {"output_dir": str(tmp_path), "name": "run", "epochs": 2, "eval_interval": 1, "no_aug_epochs": 1}
    )
    cfg["train"].update(train)
    return cfg


def test_steps_on_one_batch_lower_the_loss(configs_dir, shapes, tmp_path):
    cfg = make_cfg(configs_dir, shapes, tmp_path)
    cfg["data"]["augment"] = None
    trainer = Trainer(cfg, device="cpu", progress=False)
    batch = next(iter(trainer.data.loader))
    trainer.scheduler.step(10**6)  # the floor lr, no warm-up
    for group in trainer.optimizer.param_groups:
        group["lr"] = 0.02
    losses = [trainer.step(batch)["loss"] for _ in range(40)]
    assert sum(losses[-3:]) / 3 < 0.75 * losses[0], losses


def test_run_folder_contents(configs_dir, shapes, tmp_path):
    trainer = Trainer(make_cfg(configs_dir, shapes, tmp_path), device="cpu", progress=False)
    metrics = trainer.train()
    run = tmp_path / "run"
    assert trainer.run_dir == run
    files = ("config.yaml", "metrics.csv", "train.log", "weights/last.pt", "weights/best.pt", "plots/loss.png")
    for name in (*files, "plots/memory.png"):
        assert (run / name).is_file(), name
    assert len(list((run / "predictions").glob("*.png"))) == 4
    assert set(metrics) >= {"mAP50_95", "mAP50", "per_class"}
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,lr,loss") and rows[0].endswith(",ram_mb,workers_ram_mb,gpu_mem_mb")
    assert len(rows) == 3
    ram = [float(row.split(",")[-3]) for row in rows[1:]]  # this process's peak: hundreds of MiB
    assert all(100 < mib < 24 * 1024 for mib in ram) and rows[1].endswith(",")  # no GPU, no loader workers here
    ckpt = load_checkpoint(run / "weights" / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["class_names"] == ["circle", "square", "triangle", "cross", "ring"]
    assert ckpt["cat_ids"] == [1, 2, 3, 4, 5]
    # A second run with the same name gets a new folder instead of overwriting this one.
    assert Trainer(make_cfg(configs_dir, shapes, tmp_path), device="cpu", progress=False).run_dir == tmp_path / "run_2"


def test_resume_gives_the_same_weights(configs_dir, shapes, tmp_path):
    cfg = make_cfg(configs_dir, shapes, tmp_path, epochs=3, eval_interval=10)
    straight = Trainer(copy.deepcopy(cfg), device="cpu", progress=False, run_dir=tmp_path / "straight")
    straight.train()

    interrupted = Trainer(copy.deepcopy(cfg), device="cpu", progress=False, run_dir=tmp_path / "interrupted")
    interrupted.run_epoch()
    del interrupted  # the process "dies" after the first epoch's checkpoint
    resumed = Trainer(
        copy.deepcopy(cfg), device="cpu", progress=False, resume=tmp_path / "interrupted" / "weights" / "last.pt"
    )
    assert resumed.epoch == 1 and resumed.run_dir == tmp_path / "interrupted"
    resumed.train()
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    for name, value in straight.ema.module.state_dict().items():
        assert torch.equal(value, resumed.ema.module.state_dict()[name]), name
    assert resumed.iteration == straight.iteration


def test_nan_loss_steps_are_skipped_then_stop(configs_dir, shapes, tmp_path):
    cfg = make_cfg(configs_dir, shapes, tmp_path, max_bad_steps=3)
    trainer = Trainer(cfg, device="cpu", progress=False)
    batch = next(iter(trainer.data.loader))
    before = copy.deepcopy(trainer.model.state_dict())
    bad = dict(batch, images=batch["images"].float() * float("nan"))
    assert trainer.step(bad) is None and trainer.step(bad) is None
    assert trainer.step.skipped_steps == 2
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in before.items())
    assert trainer.step(batch) is not None and trainer.step.bad_steps == 0  # a good step resets the count
    for _ in range(2):
        trainer.step(bad)
    with pytest.raises(
        TrainingError, match=r"non-finite input images or boxes for 3 steps in a row \(last batch: image"
    ):
        trainer.step(bad)


def test_a_stopped_run_logs_why_and_lets_go_of_the_data_log(configs_dir, shapes, tmp_path, monkeypatch):
    trainer = Trainer(make_cfg(configs_dir, shapes, tmp_path), device="cpu", progress=False)
    data_log = logging.getLogger("detector.data")
    assert trainer.folder._handler in data_log.handlers  # broken-image warnings go into train.log

    def stop(batches, iteration=0):
        raise TrainingError("non-finite obj loss for 10 steps in a row")

    monkeypatch.setattr(trainer, "step", stop)
    with pytest.raises(TrainingError):
        trainer.train()
    assert trainer.folder._handler not in data_log.handlers  # other sets' warnings stay out of this log
    assert "training stopped: non-finite obj loss" in (trainer.run_dir / "train.log").read_text()


def test_non_finite_outputs_skip_the_step_and_keep_bn_statistics(configs_dir, shapes, tmp_path):
    trainer = Trainer(make_cfg(configs_dir, shapes, tmp_path), device="cpu", progress=False)
    batch = next(iter(trainer.data.loader))
    before = copy.deepcopy(trainer.model.state_dict())
    with torch.no_grad():
        trainer.model.head.obj_preds[0].bias.fill_(float("inf"))  # finite input, infinite outputs
    assert trainer.step(batch) is None and trainer.step.skipped_steps == 1
    for name, value in before.items():
        if "obj_preds.0.bias" not in name:
            assert torch.equal(value, trainer.model.state_dict()[name]), name


def gradient_norm_at_step(trainer, batch):
    seen = []
    step = trainer.optimizer.step

    def recording_step(*args, **kwargs):
        seen.append(
            float(torch.nn.utils.get_total_norm([p.grad for p in trainer.model.parameters() if p.grad is not None]))
        )
        return step(*args, **kwargs)

    trainer.optimizer.step = recording_step
    assert trainer.step(batch) is not None
    return seen[0]


def test_clip_grad_bounds_the_gradient_norm(configs_dir, shapes, tmp_path):
    free = Trainer(make_cfg(configs_dir, shapes, tmp_path), device="cpu", progress=False, run_dir=tmp_path / "a")
    batch = next(iter(free.data.loader))
    unclipped = gradient_norm_at_step(free, batch)
    clipped_cfg = make_cfg(configs_dir, shapes, tmp_path, clip_grad=unclipped / 4)
    clipped = Trainer(clipped_cfg, device="cpu", progress=False, run_dir=tmp_path / "b")
    assert gradient_norm_at_step(clipped, batch) == pytest.approx(unclipped / 4, rel=1e-3)


def test_class_count_mismatch_is_reported(configs_dir, shapes, tmp_path):
    cfg = make_cfg(configs_dir, shapes, tmp_path)
    cfg["model"]["head"]["num_classes"] = 80
    with pytest.raises(ConfigError, match=r"model.head.num_classes: 80 but the training set has 5 classes"):
        Trainer(cfg, device="cpu", progress=False)
    assert not (tmp_path / "run").exists()  # a run that cannot start leaves no folder behind
    existing = tmp_path / "given"
    existing.mkdir()
    with pytest.raises(ConfigError, match="num_classes"):
        Trainer(cfg, device="cpu", progress=False, run_dir=existing)
    assert existing.is_dir()  # a folder it did not create is left alone


def test_unavailable_device_is_reported(configs_dir, shapes, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"--device: 'cuda:0' requested but CUDA is not available"):
        Trainer(make_cfg(configs_dir, shapes, tmp_path), device="cuda:0", progress=False)


def test_mosaic_training_switches_mixing_off_for_the_no_aug_epochs(configs_dir, shapes, tmp_path):
    cfg = make_cfg(configs_dir, shapes, tmp_path, epochs=2, no_aug_epochs=1, eval_interval=10)
    cfg["data"]["mix"] = {"mosaic_prob": 1.0, "mixup_prob": 1.0, "scale": [0.5, 1.5]}
    trainer = Trainer(cfg, device="cpu", progress=False)
    assert isinstance(trainer.train_set, MixDataset) and trainer.train_set.mixing
    trainer.run_epoch()
    assert trainer.train_set.mixing and trainer.train_set.transform.pipeline is not None
    assert trainer.history[-1]["loss"] > 0 and not trainer.model.head.criterion.use_l1
    batch = next(iter(trainer.data.loader))
    assert batch["images"].shape[-2:] == (96, 96)
    trainer.run_epoch()
    assert not trainer.train_set.mixing and trainer.train_set.transform.pipeline is None
    assert trainer.model.head.criterion.use_l1
    log = (trainer.run_dir / "train.log").read_text()
    assert "epoch 2: augmentation (mosaic, mixup, albumentations) off, L1 loss on" in log
