"""The training loop: data, optimiser, schedule, EMA, AMP, checkpoints, evaluation, logs."""

from __future__ import annotations

import contextlib
import copy
import csv
import logging
import random
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from detector.allocator import keep_freed_memory
from detector.config import dump_config
from detector.config_sections import parse_config
from detector.data.loader import build_dataloader, reseed_dataset
from detector.data.mix_dataset import MixDataset, build_train_dataset, train_transform
from detector.data.step_sampler import StepBatchSampler
from detector.data.transforms import EvalTransform
from detector.engine.checkpoint import load_checkpoint_or_previous, save_checkpoint
from detector.engine.distributed import (
    all_gather_objects,
    all_reduce_sum,
    broadcast_module_state,
    broadcast_object,
    convert_sync_batchnorm,
    init_distributed,
)
from detector.engine.ema import ModelEMA
from detector.engine.errors import TrainingError
from detector.engine.memory import MemoryMonitor
from detector.engine.optim import build_optimizer
from detector.engine.plots import plot_training_curves
from detector.engine.schedulers import WarmupCosineLR
from detector.engine.validate import evaluate_dataset
from detector.fileio import atomic_write
from detector.inference import Predictor
from detector.models.detector import build_model
from detector.registry import DATASETS, ConfigError
from detector.schema import to_plain
from detector.visualize import draw_detections

LOSS_KEYS = ("loss", "iou", "obj", "cls", "l1")
#: Per-epoch peaks in MiB (metrics.csv): main process, its loader workers, the GPU (see memory.py).
MEMORY_KEYS = ("ram_mb", "workers_ram_mb", "gpu_mem_mb")
#: Offsets a rank's data seed (shuffling is shared; augmentation draws must differ per rank).
RANK_SEED_STRIDE = 100_003


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


def unique_run_dir(root: Path, name: str) -> Path:
    """``root/name``, or ``root/name_2``, ``_3``... when it already exists."""
    path, n = root / name, 2
    while path.exists():
        path, n = root / f"{name}_{n}", n + 1
    return path


class Trainer:
    """Trains ``build_model(cfg)`` on ``cfg['data']['train']`` and evaluates on ``val``.

    The run folder holds ``config.yaml`` (resolved), ``metrics.csv``, ``train.log``,
    ``weights/last.pt`` (and ``last.prev.pt``, the one before) and ``weights/best.pt``,
    ``plots/*.png`` and ``predictions/*.png``.

    Started by ``torchrun``, every process builds a Trainer: DistributedDataParallel (NCCL on
    GPUs, gloo on CPUs), a DistributedSampler, optional SyncBatchNorm (``train.sync_bn``),
    evaluation sharded over the ranks, and files, logs and progress bars on rank 0 only.
    ``data.batch_size`` is the global batch of one optimiser step; each process loads
    ``data.batch_per_device`` images at a time (default: the global batch over the processes)
    and accumulates gradients over ``batch_size / (processes x batch_per_device)`` of them.
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
        self.train_cfg, self.data_cfg = self.settings.train, self.settings.data
        self.dist = init_distributed(resolve_device(device), self.train_cfg.dist_timeout_s)
        self.device = self.dist.device
        self.rank, self.world_size, self.is_main = self.dist.rank, self.dist.world_size, self.dist.is_main
        if self.device.type == "cpu" and self.train_cfg.keep_freed_memory:
            keep_freed_memory()
        self.progress = progress and self.is_main
        self.epochs = self.train_cfg.epochs
        self.batch_size = self.data_cfg.batch_size
        self.batch_per_device, self.accumulate = self._split_batch()
        self.imgsz = self.data_cfg.imgsz
        self.seed = self.train_cfg.seed
        self.use_amp = self.train_cfg.amp and self.device.type == "cuda"
        self.max_bad_steps = self.train_cfg.max_bad_steps
        self.clip_grad = self.train_cfg.clip_grad
        self.no_aug_epochs = self.train_cfg.no_aug_epochs
        self.eval_interval = self.train_cfg.eval_interval

        resume_path = self._resume_path(resume, config_name)
        if resume_path is not None:
            self.run_dir = resume_path.parent.parent
        elif run_dir is not None:
            self.run_dir = Path(run_dir)
        else:
            root = Path(self.train_cfg.output_dir)
            # Rank 0 picks the next free name; the others must not race it to the folder.
            self.run_dir = broadcast_object(
                unique_run_dir(root, self.train_cfg.name or config_name) if self.is_main else None
            )
        self.weights_dir = self.run_dir / "weights"
        created = self.is_main and not self.run_dir.exists()
        if self.is_main:
            self.weights_dir.mkdir(parents=True, exist_ok=True)
        self.logger = self._make_logger()
        try:
            self._build_parts(resume_path)
        except BaseException:
            # A run that cannot start leaves no empty folder behind to push the next one to _2.
            self._close_log()
            if created:
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise

    def _build_parts(self, resume_path: Path | None) -> None:
        """Datasets, model, loader, DDP, optimiser, schedule, EMA; the state to resume from."""
        seed_everything(self.seed)
        self.train_set = build_train_dataset(self.data_cfg, augment=True, seed=self.seed)
        self.val_set = self._build_dataset("val", EvalTransform(self.imgsz)) if self.data_cfg.val is not None else None
        self._check_classes()
        # Channels-last lets oneDNN/cuDNN pick faster convolution kernels (about 1.5x here on CPU).
        self.memory_format = torch.channels_last if self.train_cfg.channels_last else torch.preserve_format
        model = build_model(self.cfg)
        if self.train_cfg.sync_bn and self.dist.distributed:
            model = convert_sync_batchnorm(model, self.device)
        self.model = model.to(self.device, memory_format=self.memory_format)
        # Walking the module tree every step costs more than the step's bookkeeping itself.
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        self._buffers = list(self.model.buffers())
        # One permutation per epoch shared by all processes (DistributedSampler's): a step sees the
        # same images, in the same micro-batches, whatever the number of processes.
        self.sampler = StepBatchSampler(
            self.train_set, self.batch_per_device, self.rank, self.world_size, self.accumulate, self.seed
        )
        self.loader = build_dataloader(
            self.train_set,
            batch_size=self.batch_per_device,
            shuffle=True,
            num_workers=self.data_cfg.num_workers,
            pin_memory=self.data_cfg.pin_memory and self.device.type == "cuda",
            seed=self.seed,
            batch_sampler=self.sampler,
        )
        self.iters_per_epoch = self.sampler.steps  # optimiser steps
        if self.iters_per_epoch == 0:
            raise ConfigError(
                f"data.train: {len(self.train_set)} images ({self._dataset_source('train')}) do not fill one step of "
                f"data.batch_size {self.batch_size}"
            )
        self.ddp = (
            DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.dist.distributed
            else None
        )
        opt_cfg = self.settings.optimizer
        # Linear scaling rule: the configured lr is for base_batch_size images per step.
        self.base_lr = opt_cfg.lr * self.batch_size / float(opt_cfg.base_batch_size)
        self.optimizer = build_optimizer(self.model, opt_cfg, self.base_lr)
        sched_cfg = self.settings.scheduler
        self.scheduler = WarmupCosineLR(
            self.optimizer,
            self.base_lr,
            total_iters=self.epochs * self.iters_per_epoch,
            warmup_iters=int(sched_cfg.warmup_epochs * self.iters_per_epoch),
            warmup_lr=sched_cfg.warmup_lr,
            min_lr_ratio=sched_cfg.min_lr_ratio,
            flat_iters=self.no_aug_epochs * self.iters_per_epoch,
        )
        ema = self.train_cfg.ema
        self.ema = ModelEMA(self.model, decay=ema.decay, tau=ema.tau) if ema else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.epoch = 0
        self.iteration = 0
        self.best_map = -1.0
        self.bad_steps = 0
        self.skipped_steps = 0
        self.augment_off = False
        self.memory = MemoryMonitor(self.device)
        self.history: list[dict[str, Any]] = self._read_history()
        if resume_path is not None:
            self._load_state(resume_path)
        elif self.is_main:
            dump_config(self.cfg, self.run_dir / "config.yaml")
        self.tb_writer = self._make_tensorboard() if self.is_main else None

    # ----------------------------------------------------------------- set-up
    def _split_batch(self) -> tuple[int, int]:
        """``(images per process per forward pass, micro-batches accumulated per step)``."""
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size: {self.batch_size}; expected a positive global batch")
        per_device = self.data_cfg.batch_per_device
        if per_device is None:
            if self.batch_size % self.world_size:
                raise ConfigError(
                    f"data.batch_size: {self.batch_size} images do not split evenly over {self.world_size} processes; "
                    "use a multiple of the process count"
                )
            return self.batch_size // self.world_size, 1
        if per_device < 1 or self.batch_size % (self.world_size * per_device):
            raise ConfigError(
                f"data.batch_per_device: {per_device}; expected a positive divisor of data.batch_size "
                f"{self.batch_size} / {self.world_size} processes (the steps accumulate whole micro-batches)"
            )
        return per_device, self.batch_size // (self.world_size * per_device)

    def _resume_path(self, resume: str | Path | bool | None, config_name: str) -> Path | None:
        if resume in (None, False):
            return None
        if resume is True or resume == "":
            return Path(self.train_cfg.output_dir) / (self.train_cfg.name or config_name) / "weights" / "last.pt"
        return Path(resume)

    def _make_logger(self) -> logging.Logger:
        logger = logging.getLogger(f"detector.train.{id(self)}")
        logger.setLevel(logging.INFO)
        logger.propagate = False
        if self.is_main:
            handler: logging.Handler = logging.FileHandler(self.run_dir / "train.log")
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            # Data problems (broken images, bad boxes) are logged by the datasets: into train.log too.
            logging.getLogger("detector.data").addHandler(handler)
        else:  # what the other ranks see reaches rank 0's log through collectives
            handler = logging.NullHandler()
        logger.addHandler(handler)
        self._log_handler = handler
        return logger

    def _close_log(self) -> None:
        """Detach and close train.log's handler (a run that failed to start)."""
        logging.getLogger("detector.data").removeHandler(self._log_handler)
        self.logger.removeHandler(self._log_handler)
        self._log_handler.close()

    def _make_tensorboard(self) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"))

    def _dataset_source(self, split: str) -> str:
        cfg = getattr(self.data_cfg, split) or {}
        return ", ".join(f"{k}={v}" for k, v in cfg.items() if k != "type")

    def _build_dataset(self, split: str, transform: Any) -> Any:
        cfg = getattr(self.data_cfg, split)
        if cfg is None:
            raise ConfigError(f"data.{split}: missing; expected a dataset config with a 'type'")
        return DATASETS.build(cfg, f"data.{split}", transform=transform)

    def _check_classes(self) -> None:
        head_classes = self.cfg["model"]["head"].get("num_classes")
        if head_classes != self.train_set.num_classes:
            raise ConfigError(
                f"model.head.num_classes: {head_classes} but the training set has {self.train_set.num_classes} "
                f"classes; set --set model.head.num_classes={self.train_set.num_classes}"
            )

    def _read_history(self) -> list[dict[str, Any]]:
        path = self.run_dir / "metrics.csv"
        if not path.exists():
            return []
        with path.open(newline="") as f:
            return [
                {k: (float(v) if v not in ("", None) else None) for k, v in row.items()} for row in csv.DictReader(f)
            ]

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        eval_model = self.ema.module if self.ema is not None else self.model
        return {
            "model": eval_model.state_dict(),
            "train_model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "iteration": self.iteration,
            "best_map": self.best_map,
            "skipped_steps": self.skipped_steps,
            "rng": rng_state(),
            "config": self.cfg,
            "class_names": list(self.train_set.class_names),
            "cat_ids": [int(c) for c in self.train_set.cat_ids],
        }

    def _load_state(self, path: Path) -> None:
        # A checkpoint cut short (a full disk, a copy interrupted) falls back to the one before.
        state, path, skipped = load_checkpoint_or_previous(path, map_location=self.device)
        if skipped is not None:
            self.logger.warning("%s; resuming from the previous checkpoint %s", skipped, path)
            if self.is_main:
                tqdm.write(f"warning: {skipped}; resuming from the previous checkpoint {path}")
        self.model.load_state_dict(state["train_model"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.iteration = int(state["iteration"])
        self.best_map = float(state["best_map"])
        self.skipped_steps = int(state.get("skipped_steps", 0))
        set_rng_state(state["rng"])
        self.history = [row for row in self.history if row["epoch"] <= self.epoch]
        self.logger.info("resumed from %s at epoch %d (iteration %d)", path, self.epoch, self.iteration)

    # ------------------------------------------------------------------ train
    def _set_no_aug(self, epoch: int) -> None:
        """Switch augmentation off and the L1 loss on for the last ``no_aug_epochs`` epochs
        (once, also when a resumed run starts inside them)."""
        if self.augment_off or not self.no_aug_epochs or epoch < self.epochs - self.no_aug_epochs:
            return
        self.train_set.transform = train_transform(self.data_cfg, augment=False)
        if isinstance(self.train_set, MixDataset):
            self.train_set.mixing = False
        self.model.head.criterion.use_l1 = True
        self.augment_off = True
        self.logger.info("epoch %d: augmentation (mosaic, mixup, albumentations) off, L1 loss on", epoch + 1)

    def _memory_text(self) -> str:
        """`` mem=1.2G`` (this process), ``+0.8G`` (its workers), `` gpu=3.4G`` for the bar."""
        peaks = self.memory.peaks()
        text = "" if peaks["ram_mb"] is None else f" mem={peaks['ram_mb'] / 1024:.2f}G"
        if peaks["workers_ram_mb"] is not None:
            text += f"+{peaks['workers_ram_mb'] / 1024:.2f}G"
        if peaks["gpu_mem_mb"] is not None:
            text += f" gpu={peaks['gpu_mem_mb'] / 1024:.2f}G"
        return text

    def _no_sync(self, last: bool) -> contextlib.AbstractContextManager:
        """DDP's gradient all-reduce only on the last micro-batch of an accumulated step."""
        return self.ddp.no_sync() if self.ddp is not None and not last else contextlib.nullcontext()

    def train_step(self, batches: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> dict[str, float] | None:
        """One optimiser step over ``batches``: one micro-batch, or the ``accumulate`` micro-batches
        of this process. Returns the loss parts over the step's global batch (the same on every
        rank), or None when the step was skipped because an input, a loss or the gradients were
        not finite, on any rank (all ranks skip together).

        The loss is normalised over the whole step, as one process with the global batch would:
        each micro-batch's parts are multiplied back by their ``normalizer`` (the positives count
        YOLOX divides by), summed over micro-batches and ranks, and divided by the total."""
        batches = [batches] if isinstance(batches, Mapping) else list(batches)
        model = self.ddp if self.ddp is not None else self.model
        buffers = self._buffers
        # A forward pass in training mode updates the BatchNorm statistics: keep a copy so that a
        # skipped step leaves no trace of a non-finite batch in the model.
        saved_buffers = [b.clone() for b in buffers]
        totals = torch.zeros(len(LOSS_KEYS) + 1, dtype=torch.float64, device=self.device)
        reference = 0.0
        for k, batch in enumerate(batches):
            images = batch["images"].to(self.device, non_blocking=True).float()
            images = images.contiguous(memory_format=self.memory_format)
            targets = batch["targets"].to(self.device, non_blocking=True)
            # All ranks agree on the input before the forward pass: DDP's buffer broadcast and
            # SyncBN are collectives in it, so one rank skipping it alone would hang the others.
            bad_here = not (torch.isfinite(images).all() and torch.isfinite(targets).all())
            bad_anywhere = bad_here
            if self.world_size > 1:
                bad_anywhere = all_reduce_sum(torch.tensor([float(bad_here)], device=self.device)).item() > 0
            if bad_anywhere:
                return self._skip_step("input images or boxes" if bad_here else None, batches, saved_buffers)
            with self._no_sync(k == len(batches) - 1):
                with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
                    losses = model(images, targets)
                # The first bad part (iou, obj, cls, l1) tells more than the total it spoils.
                bad_parts = [key for key in (*LOSS_KEYS[1:], "loss") if not torch.isfinite(losses[key]).all()]
                bad = f"{bad_parts[0]} loss" if bad_parts else None
                # One small all-reduce per micro-batch: whether any rank's loss went wrong (then
                # all skip the step, since a rank skipping alone would leave the others waiting in
                # DDP's gradient reduction), and the sums that normalise the step over all ranks.
                stats = torch.zeros(len(LOSS_KEYS) + 2, dtype=torch.float64, device=self.device)
                if bad is not None:
                    stats[0] = 1.0
                else:
                    normalizer = losses.get("normalizer")
                    normalizer = float(images.shape[0]) if normalizer is None else float(normalizer)
                    weight = max(normalizer, 1.0)
                    parts = torch.stack([losses[key].detach() for key in LOSS_KEYS]).to(torch.float64)
                    stats[1:-1] = parts * weight
                    stats[-1] = normalizer
                all_reduce_sum(stats)
                if stats[0].item() > 0:
                    return self._skip_step(bad, batches, saved_buffers)
                totals += stats[1:]
                if k == 0:
                    # The first micro-batch's mean normaliser per rank keeps the backward's scale
                    # near a plain mean loss; the exact global normaliser is applied below.
                    reference = max(float(stats[-1]), 1.0) / self.world_size
                self.scaler.scale(losses["loss"] * (weight / reference)).backward()
        self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self._params if p.grad is not None]
        total = max(float(totals[-1]), 1.0)  # the step's global normaliser
        # DDP averaged over ranks; gradients must be those of (sum of losses) / (global normaliser).
        correction = reference * self.world_size / total
        if correction != 1.0:
            torch._foreach_mul_(grads, correction)
        grad_norm = torch.nn.utils.get_total_norm(grads, foreach=True)
        if self.clip_grad:
            torch.nn.utils.clip_grads_with_norm_(self._params, float(self.clip_grad), grad_norm, foreach=True)
        if not torch.isfinite(grad_norm) and not self.use_amp:  # gradients are equal on all ranks here
            return self._skip_step("gradients", batches, saved_buffers)
        self.bad_steps = 0
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        return {key: float(value) / total for key, value in zip(LOSS_KEYS, totals[:-1].tolist(), strict=True)}

    def _skip_step(
        self, what: str | None, batches: Sequence[Mapping[str, Any]], saved_buffers: Sequence[torch.Tensor]
    ) -> None:
        """Undo the step's BatchNorm updates and gradients, count it, log which images of which
        rank went wrong; stop the run after ``max_bad_steps`` skipped steps in a row."""
        torch._foreach_copy_(self._buffers, saved_buffers)
        self.optimizer.zero_grad(set_to_none=True)
        self.bad_steps += 1
        self.skipped_steps += 1
        ids = [int(i) for batch in batches for i in batch["image_ids"]]
        reports = all_gather_objects((what, ids) if what is not None else None)
        found = [(rank, *report) for rank, report in enumerate(reports) if report is not None]
        parts = ", ".join(dict.fromkeys(part for _, part, _ in found))
        where = "; ".join(
            (f"rank {rank} " if self.world_size > 1 else "") + f"image ids {image_ids}" for rank, _, image_ids in found
        )
        self.logger.warning("iteration %d: non-finite %s, step skipped (%s)", self.iteration, parts, where)
        if self.bad_steps >= self.max_bad_steps:
            raise TrainingError(
                f"non-finite {parts} for {self.bad_steps} steps in a row (last batch: {where}); "
                "check these images, lower optimizer.lr or set train.clip_grad"
            )
        return None

    def _step_batches(self) -> Any:
        """The epoch's micro-batches in groups of ``accumulate``: ``iters_per_epoch`` groups,
        since the sampler yields exactly ``steps x accumulate`` micro-batches."""
        group: list[Mapping[str, Any]] = []
        for batch in self.loader:
            group.append(batch)
            if len(group) == self.accumulate:
                yield group
                group = []

    def train_epoch(self) -> dict[str, Any]:
        self.model.train()
        self._set_no_aug(self.epoch)
        # Shuffling and augmentation depend on the seed, the epoch and the rank only, so that a
        # resumed run sees the same data as an uninterrupted one. The permutation is shared by
        # all ranks (the sampler's seed + epoch); augmentation draws differ per rank.
        self.sampler.set_epoch(self.epoch)
        data_seed = self.seed + self.epoch + RANK_SEED_STRIDE * self.rank
        self.loader.generator.manual_seed(data_seed)
        if self.loader.num_workers == 0:
            reseed_dataset(self.train_set, data_seed)
        sums = dict.fromkeys(LOSS_KEYS, 0.0)
        self.memory.reset()
        steps, images_seen, start = 0, 0, time.perf_counter()
        bar = tqdm(
            self._step_batches(),
            total=self.iters_per_epoch,
            desc=f"epoch {self.epoch + 1}/{self.epochs}",
            disable=not self.progress,
            dynamic_ncols=True,
            leave=False,
        )
        lr = self.scheduler.lr_at(self.iteration)
        for group in bar:
            lr = self.scheduler.step(self.iteration)
            parts = self.train_step(group)
            self.iteration += 1
            self.memory.sample()
            images_seen += self.world_size * sum(int(batch["images"].shape[0]) for batch in group)
            if parts is None:
                continue
            steps += 1
            for k in LOSS_KEYS:
                sums[k] += parts[k]
            speed = images_seen / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix_str(
                " ".join(f"{k}={parts[k]:.3f}" for k in LOSS_KEYS) + f" lr={lr:.2e} {speed:.1f}img/s"
                f"{self._memory_text()}",
                refresh=False,
            )
        elapsed = time.perf_counter() - start
        row = {k: sums[k] / max(steps, 1) for k in LOSS_KEYS}
        row.update(epoch=self.epoch + 1, lr=lr, images_per_s=images_seen / max(elapsed, 1e-9), epoch_time=elapsed)
        return row

    def evaluate(self, progress: bool | None = None, plots_dir: Path | None = None) -> dict[str, Any]:
        """COCO metrics of the EMA model (or the model) on the validation set; with ``plots_dir``
        also the evaluation pictures (PR curves, confusion matrix, per-class AP) there."""
        if self.val_set is None:
            raise ConfigError("data.val: missing; evaluation needs a validation set")
        model = copy.deepcopy(self.ema.module if self.ema is not None else self.model)
        # Without SyncBN each rank's BatchNorm statistics (and so its EMA) drift apart between
        # DDP's buffer broadcasts: every shard is evaluated with rank 0's model, the one saved.
        broadcast_module_state(model)
        eval_cfg = self.settings.eval
        predictor = Predictor(
            model.fuse(),
            self.imgsz,
            device=self.device,
            conf_threshold=eval_cfg.conf_threshold,
            iou_threshold=eval_cfg.iou_threshold,
            max_det=eval_cfg.max_det,
        )
        return evaluate_dataset(
            predictor,
            self.val_set,
            batch_size=eval_cfg.batch_size or self.batch_per_device,
            verbose=False,
            progress=self.progress if progress is None else progress and self.is_main,
            distributed=self.dist.distributed,
            plots_dir=plots_dir,
        )

    def save_prediction_samples(self, count: int = 4, conf_threshold: float = 0.3) -> list[Path]:
        """Draw the final model's detections on the first ``count`` validation images into
        ``predictions/`` (PNG) for a look at what the model learned."""
        model = copy.deepcopy(self.ema.module if self.ema is not None else self.model)
        predictor = Predictor(model, self.imgsz, self.train_set.class_names, self.device, conf_threshold=conf_threshold)
        out_dir = self.run_dir / "predictions"
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for i in range(min(count, len(self.val_set))):
            sample = self.val_set.load_sample(i)
            det = predictor(sample["image"])[0].to("cpu")
            drawn = draw_detections(
                sample["image"], det.boxes.numpy(), det.labels.numpy(), det.scores.numpy(), predictor.class_names
            )
            path = out_dir / f"{sample['image_id']}.png"
            cv2.imwrite(str(path), drawn)
            written.append(path)
        return written

    def _write_history(self) -> None:
        keys = ["epoch", "lr", *LOSS_KEYS, "images_per_s", "epoch_time", "mAP50_95", "mAP50", *MEMORY_KEYS]

        def write(f: Any) -> None:
            writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            for row in self.history:
                writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in keys})

        atomic_write(self.run_dir / "metrics.csv", write)

    def train(self) -> dict[str, Any]:
        """Run the remaining epochs; returns the last evaluation's metrics (or {})."""
        self.logger.info(
            "training %d epochs on %s, %d iterations/epoch", self.epochs, self.device, self.iters_per_epoch
        )
        metrics: dict[str, Any] = {}
        try:
            while self.epoch < self.epochs:
                metrics = self.run_epoch() or metrics
            if self.is_main and self.train_cfg.plots:
                plot_training_curves(self.history, self.run_dir / "plots")
                if self.val_set is not None:
                    self.save_prediction_samples()
        except TrainingError as exc:
            self.logger.error("training stopped: %s", exc)  # train.log keeps why, next to the warnings
            raise
        finally:
            # Also when training stops: later data sets' warnings do not belong in this run's log.
            logging.getLogger("detector.data").removeHandler(self._log_handler)
        if self.tb_writer is not None:
            self.tb_writer.close()
        return metrics

    def run_epoch(self) -> dict[str, Any]:
        """Train one epoch, evaluate when due, log and write the checkpoints (rank 0); returns
        the evaluation's metrics ({} when there was none), the same on every rank."""
        metrics: dict[str, Any] = {}
        row = self.train_epoch()
        last_epoch = self.epoch + 1 == self.epochs
        if self.val_set is not None and ((self.epoch + 1) % self.eval_interval == 0 or last_epoch):
            plots = self.run_dir / "plots" if last_epoch and self.train_cfg.plots else None
            metrics = self.evaluate(plots_dir=plots)
            row.update(mAP50_95=metrics["mAP50_95"], mAP50=metrics["mAP50"])
        self.memory.sample(force=True)  # after the evaluation, whose memory counts as well
        row.update(self.memory.peaks())
        self.epoch += 1
        self.history.append(row)
        improved = row.get("mAP50_95") is not None and row["mAP50_95"] > self.best_map
        if improved:
            self.best_map = row["mAP50_95"]
        if not self.is_main:
            return metrics
        self.logger.info(
            " ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if v is not None)
        )
        if self.tb_writer is not None:
            for k, v in row.items():
                if k != "epoch" and v is not None:
                    self.tb_writer.add_scalar(k, v, self.epoch)
        state = self.state_dict()
        save_checkpoint(state, self.weights_dir / "last.pt", keep_previous=True)
        if improved:
            save_checkpoint(state, self.weights_dir / "best.pt")
        self._write_history()
        if self.progress:
            shown = {k: row[k] for k in ("epoch", "loss", "mAP50_95", "mAP50", "images_per_s") if k in row}
            tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()))
        return metrics
