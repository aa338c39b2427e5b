"""The training loop: events around one training step; everything else is a hook."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from detector.config import dump_config
from detector.config_sections import parse_config
from detector.engine.build import build_training_parts
from detector.engine.distributed import init_distributed
from detector.engine.hooks import EVENTS, build_hooks
from detector.engine.hooks.logs import read_history
from detector.engine.run_folder import RunFolder
from detector.engine.step import TrainStep
from detector.errors import ConfigError, TrainingError
from detector.schema import to_plain
from detector.utils.allocator import keep_freed_memory
from detector.utils.checkpoint import load_checkpoint_or_previous


def resolve_device(name: str | None) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; ``None`` picks CUDA when available."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device: '{name}' is not a device; expected cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device: '{name}' requested but CUDA is not available on this machine")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as checkpoint-safe data (tensors, ints, tuples)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Trains ``build_model(cfg)`` on ``data.train``: a loop of epochs of optimiser steps
    (``self.step``, a :class:`~detector.engine.step.TrainStep`) that calls the hooks' events
    (:mod:`detector.engine.hooks`: EMA, evaluation, memory, checkpoints, logs, plots, the no-aug
    switch, and those of ``train.hooks``).

    The run folder (:class:`~detector.engine.run_folder.RunFolder`) holds ``config.yaml`` (the
    full config), ``metrics.csv``, ``train.log``, ``weights/``, ``plots/`` and ``predictions/``.
    Started by ``torchrun``, every process builds a Trainer: DDP (NCCL on GPUs, gloo on CPUs),
    one shared data permutation, evaluation sharded over the ranks, files on rank 0 only.
    ``data.batch_size`` is the global batch of one optimiser step; each process loads
    ``data.batch_per_device`` images at a time and accumulates the rest.
    """

    def __init__(
        self,
        cfg: Mapping[str, Any],
        device: str | None = None,
        resume: str | Path | bool | None = None,
        run_dir: str | Path | None = None,
        progress: bool = True,
        config_name: str = "run",
    ) -> None:
        # The typed config: every key checked, defaults filled in (what config.yaml records).
        self.settings = parse_config(cfg)
        self.cfg = to_plain(self.settings)
        train_cfg = self.settings.train
        self.dist = init_distributed(resolve_device(device), train_cfg.dist_timeout_s)
        self.device = self.dist.device
        self.rank, self.world_size, self.is_main = self.dist.rank, self.dist.world_size, self.dist.is_main
        if self.device.type == "cpu" and train_cfg.keep_freed_memory:
            keep_freed_memory()
        self.progress = progress and self.is_main
        self.epochs = train_cfg.epochs
        self.folder = RunFolder(train_cfg, config_name, self.is_main, resume, run_dir)
        self.run_dir, self.weights_dir, self.logger = self.folder.path, self.folder.weights, self.folder.logger
        try:
            self._build()
        except BaseException:
            self.folder.abandon()
            raise

    def _build(self) -> None:
        seed_everything(self.settings.train.seed)
        self.hooks = build_hooks(self.settings)
        parts = build_training_parts(self.settings, self.dist, [hook.prepare_model for hook in self.hooks])
        self.train_set, self.val_set, self.data = parts.train_set, parts.val_set, parts.data
        self.model, self.optimizer, self.scheduler = parts.model, parts.optimizer, parts.scheduler
        self.iters_per_epoch = self.data.steps
        train_cfg = self.settings.train
        self.step = TrainStep(
            self.model,
            self.optimizer,
            parts.ddp,
            self.device,
            self.world_size,
            self.rank,
            parts.memory_format,
            use_amp=train_cfg.amp and self.device.type == "cuda",
            clip_grad=train_cfg.clip_grad,
            max_bad_steps=train_cfg.max_bad_steps,
            logger=self.logger,
        )
        self.ema = None
        self.epoch = self.iteration = 0
        self.history: list[dict[str, Any]] = read_history(self.run_dir / "metrics.csv")
        self.metrics: dict[str, Any] = {}
        self.improved = False  # whether the epoch's evaluation found a new best (EvaluationHook)
        self.call("setup")
        if self.folder.resume_path is not None:
            self._load_state(self.folder.resume_path)
        elif self.is_main:
            dump_config(self.cfg, self.run_dir / "config.yaml")

    @property
    def eval_model(self) -> nn.Module:
        """The model that is evaluated and saved as ``model``: the EMA's when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def call(self, event: str) -> None:
        """Run ``event`` (one of ``hooks.EVENTS``) on every hook, in order."""
        assert event in EVENTS, event
        for hook in self.hooks:
            getattr(hook, event)(self)

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        state = {
            "model": self.eval_model.state_dict(),
            "train_model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.step.scaler.state_dict(),
            "epoch": self.epoch,
            "iteration": self.iteration,
            "skipped_steps": self.step.skipped_steps,
            "rng": rng_state(),
            "config": self.cfg,
            "class_names": list(self.train_set.class_names),
            "cat_ids": [int(c) for c in self.train_set.cat_ids],
        }
        for hook in self.hooks:
            state.update(hook.state_dict())
        return state

    def _load_state(self, path: Path) -> None:
        # A checkpoint cut short (a full disk, a copy interrupted) falls back to the one before.
        state, path, skipped = load_checkpoint_or_previous(path, map_location=self.device)
        if skipped is not None:
            self.logger.warning("%s; resuming from the previous checkpoint %s", skipped, path)
            if self.is_main:
                print(f"warning: {skipped}; resuming from the previous checkpoint {path}")
        self.model.load_state_dict(state["train_model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step.scaler.load_state_dict(state["scaler"])
        self.epoch, self.iteration = int(state["epoch"]), int(state["iteration"])
        self.step.skipped_steps = int(state.get("skipped_steps", 0))
        for hook in self.hooks:
            hook.load_state_dict(state)
        set_rng_state(state["rng"])
        self.history = [row for row in self.history if row["epoch"] <= self.epoch]
        self.logger.info("resumed from %s at epoch %d (iteration %d)", path, self.epoch, self.iteration)

    # ------------------------------------------------------------------- loop
    def train(self) -> dict[str, Any]:
        """Run the remaining epochs; returns the last evaluation's metrics (or {})."""
        try:
            self.call("before_train")
            while self.epoch < self.epochs:
                self.run_epoch()
            self.call("after_train")
        except TrainingError as exc:
            self.logger.error("training stopped: %s", exc)  # train.log keeps why, next to the warnings
            raise
        finally:
            # Also when training stops: later data sets' warnings do not belong in this run's log.
            self.folder.detach_data_log()
        return self.metrics

    def run_epoch(self) -> dict[str, Any]:
        """Train one epoch, then the ``after_epoch`` hooks (evaluation when due, checkpoints,
        logs); returns the epoch's record (the row of ``metrics.csv``)."""
        self.model.train()
        self.call("before_epoch")
        sums: dict[str, float] = {}
        steps, images_seen, start = 0, 0, time.perf_counter()
        self.lr = self.scheduler.lr_at(self.iteration)
        for group in self.data.batches(self.epoch):
            self.lr = self.scheduler.step(self.iteration)
            self.step_parts = self.step(group, self.iteration)
            self.iteration += 1
            self.step_images = self.world_size * sum(int(batch["images"].shape[0]) for batch in group)
            images_seen += self.step_images
            if self.step_parts is not None:
                steps += 1
                for key, value in self.step_parts.items():
                    sums[key] = sums.get(key, 0.0) + value
            self.call("after_step")
        elapsed = time.perf_counter() - start
        self.record = {k: sums.get(k, 0.0) / max(steps, 1) for k in self.step.part_names or sums}
        self.record.update(epoch=self.epoch + 1, lr=self.lr, images_per_s=images_seen / max(elapsed, 1e-9),
                           epoch_time=elapsed)  # fmt: skip
        self.epoch += 1
        self.history.append(self.record)
        self.call("after_epoch")
        return self.record
