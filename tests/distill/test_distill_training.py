"""Distillation in training: the teacher stays frozen, each distillation loss shows in the logs,
the schedule, the layout check, an official YOLOX checkpoint as teacher, resume with a teacher,
checkpoints without the teacher, the exported student equal to one trained alone, and a
2-process torchrun run equal to one process."""

import copy
import csv
import math
from pathlib import Path

import onnx
import pytest
import torch
from tool_runs import run, write_shapes_config

from detector import build_model, load_config
from detector.data.synthetic import coco_split_configs, generate_synthetic_coco
from detector.distill import DistillationHook, load_teacher
from detector.engine.trainer import Trainer
from detector.errors import CheckpointError, ConfigError
from detector.export import export_onnx
from detector.utils.checkpoint import load_checkpoint, save_checkpoint

#: A teacher wider than the demo's student, not depthwise: other neck channels (adapters needed).
TEACHER = {"model.backbone.width": 0.375, "model.backbone.depthwise": False, "model.neck.depthwise": False,
           "model.head.depthwise": False, "model.head.feat_channels": 96}  # fmt: skip
LOSSES = [{"type": "ChannelWiseDistillation", "temperature": 2.0}, {"type": "OutputDistillation", "weight": 0.5}]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate_synthetic_coco(tmp_path_factory.mktemp("shapes"), num_train=12, num_val=4, image_size=96, seed=3)


@pytest.fixture(scope="module")
def teacher_ckpt(shapes, tmp_path_factory):
    """A checkpoint of this package's format (its config and weights), random weights."""
    cfg = load_config("yolox_nano_shapes", overrides={**TEACHER, "model.head.num_classes": 5})
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_checkpoint({"config": cfg, "model": build_model(cfg).state_dict()}, path)
    return path


def student_cfg(shapes, tmp_path, teacher_ckpt=None, **distill):
    cfg = load_config("yolox_nano_shapes", overrides={"model.head.num_classes": 5})
    cfg["data"].update(**coco_split_configs(shapes), imgsz=96, batch_size=4, num_workers=0)
    cfg["train"].update(output_dir=str(tmp_path), name="run", epochs=2, eval_interval=2, no_aug_epochs=1,
                        plots=False, keep_freed_memory=False)  # fmt: skip
    if teacher_ckpt is not None:
        cfg["distill"] = {"teacher": {"ckpt": str(teacher_ckpt)}, "losses": copy.deepcopy(LOSSES), **distill}
    return cfg


def rows(run_dir):
    with (run_dir / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_teacher_frozen_losses_logged_checkpoint_and_export_clean(shapes, teacher_ckpt, tmp_path):
    trainer = Trainer(student_cfg(shapes, tmp_path, teacher_ckpt, off_in_no_aug_epochs=True), device="cpu",
                      progress=False)  # fmt: skip
    hook = next(h for h in trainer.hooks if isinstance(h, DistillationHook))
    teacher_before = copy.deepcopy(hook.teacher.state_dict())
    adapters_before = copy.deepcopy(hook.losses.state_dict())
    trainer.train()
    # The teacher: eval mode, no gradients, not a weight changed (BatchNorm statistics included).
    assert not hook.teacher.training and all(not p.requires_grad and p.grad is None for p in hook.teacher.parameters())
    for key, value in hook.teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key
    # The adapters (student 32/64/128 -> teacher 48/96/192 channels) are trained.
    assert any(not torch.equal(v, adapters_before[k]) for k, v in hook.losses.state_dict().items())
    # Every distillation loss in metrics.csv and train.log; zero in the no-aug epoch.
    history = rows(tmp_path / "run")
    names = ["distill_cwd", "distill_out_cls", "distill_out_obj", "distill_out_box"]
    assert all(float(history[0][n]) > 0 for n in names), history[0]
    assert all(float(history[1][n]) == 0 for n in names), history[1]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "distillation from" in log and "distill_cwd=" in log
    # Checkpoints hold the student (the keys of a plain student) and the adapters, no teacher.
    ckpt = load_checkpoint(tmp_path / "run" / "weights" / "last.pt")
    plain = build_model(student_cfg(shapes, tmp_path))
    assert set(ckpt["model"]) == set(plain.state_dict()) == set(ckpt["train_model"])
    assert set(ckpt["distill_losses"]) == {f"0.adapters.{i}.{p}" for i in range(3) for p in ("weight", "bias")}
    teacher_tensors = {id(t) for t in hook.teacher.state_dict().values()}
    assert not any(id(v) in teacher_tensors for v in ckpt["model"].values())
    # The exported student is the graph of a student built without distillation, weight for weight.
    plain.load_state_dict(ckpt["model"])
    distilled = build_model(ckpt["config"])
    distilled.load_state_dict(ckpt["model"])
    graphs = [
        onnx.load(str(export_onnx(m, tmp_path / f"{i}.onnx", imgsz=96))).graph for i, m in enumerate((plain, distilled))
    ]
    assert graphs[0] == graphs[1]


def test_schedule_cosine_decay_and_temperature_annealing(shapes, teacher_ckpt, tmp_path):
    cfg = student_cfg(shapes, tmp_path, teacher_ckpt, weight_schedule="cosine", final_weight_ratio=0.2,
                      anneal_temperature=True)  # fmt: skip
    trainer = Trainer(cfg, device="cpu", progress=False)
    hook = next(h for h in trainer.hooks if isinstance(h, DistillationHook))
    total = trainer.epochs * trainer.iters_per_epoch
    factors = []
    for it in (0, total // 2, total):
        trainer.iteration = it
        factors.append(hook.weight_factor())
        hook._anneal_temperatures()
        if it == total // 2:
            assert hook.losses[0].temperature == pytest.approx(1.0 + (2.0 - 1.0) * (1 - (total // 2) / total))
    middle = 0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * (total // 2) / total))
    assert factors == pytest.approx([1.0, middle, 0.2])
    assert hook.losses[0].temperature == pytest.approx(1.0)  # T annealed to 1 at the end
    trainer.folder.abandon()


def test_output_losses_need_the_same_prior_layout(shapes, tmp_path):
    cfg = load_config("yolox_nano_shapes", overrides={**TEACHER, "model.head.num_classes": 7})
    path = tmp_path / "teacher7.pt"
    save_checkpoint({"config": cfg, "model": build_model(cfg).state_dict()}, path)
    with pytest.raises(ConfigError, match=r"distill.losses\[1\]: output distillation needs the teacher's prior "
                                          r"layout \(classes: student 5, teacher 7\)"):  # fmt: skip
        Trainer(student_cfg(shapes, tmp_path, path), device="cpu", progress=False)
    assert not (tmp_path / "run").exists()  # a failed start leaves no run folder
    # Feature losses alone do not need it.
    cfg = student_cfg(shapes, tmp_path, path)
    cfg["distill"]["losses"] = [{"type": "NormalizedFeatureMSE"}]
    Trainer(cfg, device="cpu", progress=False).folder.abandon()


def test_official_yolox_checkpoint_as_teacher(fixtures_dir, tmp_path):
    """An official YOLOX-Nano checkpoint file (the parity fixture's weights, saved as YOLOX's
    trainer saves them) with its config: frozen, and the official outputs reproduced."""
    fixture = torch.load(fixtures_dir / "yolox_nano_parity.pt", weights_only=True)
    path = tmp_path / "yolox_nano.pth"
    torch.save({"start_epoch": 300, "model": fixture["model"], "optimizer": {}, "amp": None}, path)
    teacher = load_teacher(str(path), "_base_/models/yolox_nano")
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        out = teacher(fixture["input"])
    torch.testing.assert_close(out, fixture["decoded_outputs"], atol=1e-3, rtol=1e-4)
    with pytest.raises(ConfigError, match="distill.teacher: .*not a checkpoint of this package .*pass a config"):
        load_teacher(str(path))
    with pytest.raises(CheckpointError, match=r"distill.teacher: .*missing.pt: checkpoint not found"):
        load_teacher(str(tmp_path / "missing.pt"))


def test_resume_reloads_the_teacher_and_continues_exactly(shapes, teacher_ckpt, tmp_path):
    straight = Trainer(student_cfg(shapes, tmp_path / "a", teacher_ckpt), device="cpu", progress=False)
    straight.train()
    cfg = student_cfg(shapes, tmp_path / "b", teacher_ckpt)
    cut_short = Trainer(cfg, device="cpu", progress=False)
    cut_short.call("before_train")
    cut_short.run_epoch()  # the first epoch and its checkpoint, then the run stops
    resumed = Trainer(cfg, device="cpu", progress=False, resume=tmp_path / "b" / "run" / "weights" / "last.pt")
    assert resumed.epoch == 1
    resumed.train()
    a = load_checkpoint(tmp_path / "a" / "run" / "weights" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "run" / "weights" / "last.pt")
    for key in ("train_model", "distill_losses"):
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), f"{key}.{name}"


@pytest.mark.slow
def test_two_processes_distil_as_one(tmp_path):
    """torchrun with 2 processes (gloo) equals 1 process accumulating the same 2 micro-batches: the
    teacher is loaded in both, the adapters' gradients are averaged over them as the student's."""
    root = tmp_path
    shapes_cfg = write_shapes_config(
        root, num_train=8, num_val=4, image_size=64, seed=5,
        data={"batch_size": 4, "num_workers": 0, "augment": None},
        optimizer={"lr": 0.0016, "base_batch_size": 64},
        scheduler={"warmup_epochs": 0},
        train={"epochs": 1, "no_aug_epochs": 0, "eval_interval": 100, "plots": False},
    )  # fmt: skip
    cfg = load_config(shapes_cfg)
    teacher_cfg = load_config(shapes_cfg, overrides=TEACHER)
    torch.manual_seed(2)
    save_checkpoint({"config": teacher_cfg, "model": build_model(teacher_cfg).state_dict()}, root / "teacher.pt")
    cfg["distill"] = {"teacher": {"ckpt": str(root / "teacher.pt")}, "losses": copy.deepcopy(LOSSES)}
    path = Path(root / "distill.yaml")
    from detector.config import dump_config

    dump_config(cfg, path)
    ckpts = {}
    for nproc in (1, 2):
        micro_batches = ["data.batch_per_device=2"] if nproc == 1 else []
        args = [str(path), "--device", "cpu", "--no-progress", "--set", f"train.name=p{nproc}", *micro_batches]
        done = run(nproc, "tools/train.py", *args)
        assert done.returncode == 0, done.stderr[-3000:]
        ckpts[nproc] = load_checkpoint(root / "runs" / f"p{nproc}" / "weights" / "last.pt")
    for name, value in ckpts[1]["train_model"].items():
        if value.is_floating_point() and "running_" not in name:
            torch.testing.assert_close(ckpts[2]["train_model"][name], value, atol=1e-5, rtol=0, msg=name)
    # The adapters move little at this learning rate (about 1e-6): compare their motion from the
    # start (the same seeded draw in every process), which a rank training them alone gets 40-90% wrong.
    # (keep_freed_memory off: kept memory would outlive this test and blur the memory monitor's tests.)
    start_cfg = load_config(path, overrides={"train.name": "start", "train.keep_freed_memory": False})
    start = Trainer(start_cfg, device="cpu", progress=False)
    initial = next(h for h in start.hooks if isinstance(h, DistillationHook)).losses.state_dict()
    start.folder.abandon()
    for name, value in ckpts[1]["distill_losses"].items():
        moved = float((value - initial[name]).abs().max())
        differ = float((ckpts[2]["distill_losses"][name] - value).abs().max())
        assert differ <= 0.1 * moved, (name, moved, differ)  # float32 rounding: 2%
        assert moved > 0 or name.endswith("bias"), name  # CWD ignores a per-channel offset: biases stay
    assert ckpts[1]["iteration"] == ckpts[2]["iteration"] == 2
    log = (root / "runs" / "p2" / "train.log").read_text()
    assert "distillation from" in log and "distill_out_box=" in log
