"""Knowledge distillation as a training hook: a frozen teacher, the ``distill.losses`` added to
every training step (``TrainStep.extra_losses``), their weight schedule.

The student's neck maps and head outputs are taken from its own forward pass (forward hooks that
record only in training mode), so distillation costs one teacher forward pass per micro-batch and
the losses' backward. The teacher is loaded in every process (under torchrun too), runs without
gradients and, inside the step's autocast, in mixed precision where the student does. It is never
part of the student: checkpoints hold the student and the adapters' weights (``distill_losses``),
and ``--resume`` loads the teacher again from ``distill.teacher``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from detector.distill.losses import DistillInputs, FeatureDistillation
from detector.distill.teacher import check_output_layout, load_teacher, neck_channels
from detector.engine.hooks import Hook
from detector.engine.optim import parameter_groups
from detector.errors import ConfigError
from detector.registry import DISTILL_LOSSES, HOOKS

#: Arguments the hook fills in for feature losses (not settable in a config).
_CHANNEL_ARGUMENTS = ("student_channels", "teacher_channels")


def _channel_defaults(cfg: Mapping[str, Any], path: str, student: Sequence[int], teacher: Sequence[int]) -> dict:
    target = DISTILL_LOSSES.get(cfg.get("type"), f"{path}.type") if isinstance(cfg, Mapping) else None
    if target is None or not (isinstance(target, type) and issubclass(target, FeatureDistillation)):
        return {}
    for key in _CHANNEL_ARGUMENTS:
        if key in cfg:
            raise ConfigError(f"{path}.{key}: set from the two networks' necks; remove it from the config")
    return {"student_channels": list(student), "teacher_channels": list(teacher)}


def check_distill_losses(cfgs: Sequence[Mapping[str, Any]], path: str = "distill.losses") -> None:
    """Check ``distill.losses`` against the loss classes' signatures without building them."""
    for i, cfg in enumerate(cfgs):
        where = f"{path}[{i}]"
        DISTILL_LOSSES.check(cfg, where, **_channel_defaults(cfg, where, [1], [1]))


def build_distill_losses(
    cfgs: Sequence[Mapping[str, Any]], student_channels: Sequence[int], teacher_channels: Sequence[int],
    path: str = "distill.losses",
) -> tuple[nn.ModuleList, list[str]]:  # fmt: skip
    """The losses and their names in the logs (``distill_<short name>``, numbered when repeated)."""
    losses, names = nn.ModuleList(), []
    for i, cfg in enumerate(cfgs):
        where = f"{path}[{i}]"
        loss = DISTILL_LOSSES.build(cfg, where, **_channel_defaults(cfg, where, student_channels, teacher_channels))
        name = f"distill_{loss.short_name}"
        names.append(name if name not in names else f"{name}{i}")
        losses.append(loss)
    return losses, names


def _recorder(store: dict[str, Any], key: str) -> Callable[..., None]:
    # A plain closure, not a bound method: deep copies of the model (EMA, evaluation) share it
    # instead of copying the hook, and it records nothing in eval mode.
    def record(module: nn.Module, args: Any, output: Any) -> None:
        if module.training:
            store[key] = output

    return record


@HOOKS.register()
class DistillationHook(Hook):
    """Adds the ``distill.losses`` between the student and the frozen ``distill.teacher`` to every
    training step, each times its ``weight`` and the schedule's factor (``distill.weight_schedule``;
    zero in the no-aug epochs with ``distill.off_in_no_aug_epochs``). Added by ``build_hooks``
    when ``distill.teacher`` is set. Loss parts are logged as ``distill_<name>[_<part>]``, as
    added to the loss."""

    def __init__(self) -> None:
        self.store: dict[str, Any] = {}

    def setup(self, trainer) -> None:  # noqa: ANN001
        cfg = trainer.settings.distill
        self.trainer, self.cfg = trainer, cfg
        student = trainer.model
        teacher = load_teacher(cfg.teacher.ckpt, cfg.teacher.config)
        self.losses, self.names = build_distill_losses(cfg.losses, neck_channels(student), neck_channels(teacher))
        reads_outputs = [getattr(loss, "needs_outputs", False) for loss in self.losses]
        for i in (i for i, reads in enumerate(reads_outputs) if reads):
            check_output_layout(student, teacher, f"distill.losses[{i}]")
        self.needs_outputs = any(reads_outputs)
        memory_format = trainer.step.memory_format
        self.teacher = teacher.to(trainer.device, memory_format=memory_format)
        self.losses.to(trainer.device, memory_format=memory_format)
        self.start_temperatures = [getattr(loss, "temperature", None) for loss in self.losses]
        adapters = [p for p in self.losses.parameters() if p.requires_grad]
        if adapters:
            # Trained beside the student at its learning rate; the step averages their gradients
            # over the processes, as DDP does for the student's.
            for group in parameter_groups(self.losses, trainer.settings.optimizer.weight_decay):
                if group["params"]:
                    trainer.optimizer.add_param_group(group)
            trainer.step.extra_params.extend(adapters)
        student.neck.register_forward_hook(_recorder(self.store, "features"))
        student.head.register_forward_hook(_recorder(self.store, "level_outputs"))
        trainer.step.extra_losses.append(self.distill_losses)
        trainer.logger.info(
            "distillation from %s (%d parameters): %s; %d adapter parameters", cfg.teacher.ckpt,
            sum(p.numel() for p in self.teacher.parameters()), ", ".join(self.names), sum(p.numel() for p in adapters),
        )  # fmt: skip

    def _progress(self) -> float:
        """The share of the run's optimiser steps done, in [0, 1]."""
        trainer = self.trainer
        return min(trainer.iteration / max(trainer.epochs * trainer.iters_per_epoch, 1), 1.0)

    def weight_factor(self) -> float:
        """The schedule's factor on every loss weight at the trainer's current iteration."""
        trainer, cfg = self.trainer, self.cfg
        no_aug = trainer.settings.train.no_aug_epochs
        if cfg.off_in_no_aug_epochs and no_aug and trainer.epoch >= trainer.epochs - no_aug:
            return 0.0
        if cfg.weight_schedule == "constant":
            return 1.0
        progress = self._progress()
        return cfg.final_weight_ratio + (1.0 - cfg.final_weight_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def _anneal_temperatures(self) -> None:
        progress = self._progress()
        for loss, start in zip(self.losses, self.start_temperatures, strict=True):
            if start is not None:
                loss.temperature = 1.0 + (start - 1.0) * (1.0 - progress)

    def _outputs(self, model: nn.Module, levels: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        head = model.head
        flat = head.flatten(levels)
        return flat, head.decode(flat[..., :4], head.priors(levels))

    def distill_losses(
        self, images: torch.Tensor, targets: torch.Tensor, losses: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """The step's extra losses (``TrainStep.extra_losses``): each distillation part, weighted."""
        features, levels = self.store.pop("features"), self.store.pop("level_outputs")
        factor = self.weight_factor()
        if factor == 0.0:
            zero = features[0].new_zeros((), dtype=torch.float32)
            return {name: zero for name in self._part_names()}
        if self.cfg.anneal_temperature:
            self._anneal_temperatures()
        with torch.no_grad():
            t_features = self.teacher.features(images)
            t_levels = self.teacher.head(t_features) if self.needs_outputs else None
        student, teacher = DistillInputs(features), DistillInputs(t_features)
        if self.needs_outputs:
            student.flat, student.boxes = self._outputs(self.trainer.model, levels)
            teacher.flat, teacher.boxes = self._outputs(self.teacher, t_levels)
            assignment = getattr(self.trainer.model.head.criterion, "last_assignment", None)
            student.positives = assignment.fg_mask if assignment is not None else None
        out = {}
        for name, loss in zip(self.names, self.losses, strict=True):
            for part, value in loss(student, teacher).items():
                out[f"{name}_{part}" if part else name] = value * (loss.weight * factor)
        return out

    def _part_names(self) -> list[str]:
        return [
            f"{name}_{part}" if part else name
            for name, loss in zip(self.names, self.losses, strict=True)
            for part in loss.parts
        ]

    def state_dict(self) -> dict[str, Any]:
        return {"distill_losses": self.losses.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "distill_losses" in state:
            self.losses.load_state_dict(state["distill_losses"])
