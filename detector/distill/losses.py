"""Knowledge-distillation losses (the ``DISTILL_LOSSES`` registry): the student imitates a frozen
teacher's neck features or its head outputs.

Each loss is an ``nn.Module`` whose ``forward(student, teacher)`` takes two :class:`DistillInputs`
(the student's with gradients, the teacher's without) and returns ``{part: value}``, unweighted;
the distillation hook multiplies by ``weight`` and the schedule. Values are means of order one,
on the scale of the detector's own loss terms. Feature losses own 1x1 adapters (student channels
to the teacher's) where the channel counts differ; those are trained with the student and never
part of it. ``temperature`` is read at every call, so the hook can anneal it towards 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from detector.ops.boxes import aligned_iou, cxcywh_to_xyxy
from detector.registry import DISTILL_LOSSES


@dataclasses.dataclass
class DistillInputs:
    """What a distillation loss reads from one network's forward pass.

    features: the neck's maps ``[B, C_l, H_l, W_l]`` (strides 8, 16, 32); flat: the head's raw
    outputs ``[B, P, 5 + C]`` in prior order (tx, ty, tw, th, objectness logit, class logits);
    boxes: ``[B, P, 4]`` decoded cx, cy, w, h input pixels; positives: ``[B, P]`` bool, the
    priors the student's own assigner matched to a ground-truth box (student only).
    """

    features: Sequence[torch.Tensor]
    flat: torch.Tensor | None = None
    boxes: torch.Tensor | None = None
    positives: torch.Tensor | None = None


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name}: {value!r}; expected a positive number")


class FeatureDistillation(nn.Module):
    """Base of the neck-feature losses: adapters and the per-level sum."""

    #: Loss classes that read the head's outputs set this (the hook then checks the prior layout).
    needs_outputs = False
    #: The loss's name in train.log and metrics.csv (``distill_<name>``, parts ``distill_<name>_<part>``).
    short_name = "feat"
    #: The keys of what ``forward`` returns ("" for the loss itself).
    parts: tuple[str, ...] = ("",)

    def __init__(self, student_channels: Sequence[int], teacher_channels: Sequence[int], weight: float = 1.0) -> None:
        super().__init__()
        if len(student_channels) != len(teacher_channels):
            raise ValueError(
                f"the student's neck has {len(student_channels)} levels, the teacher's {len(teacher_channels)}"
            )
        _check_positive("weight", weight)
        self.weight = float(weight)
        # A 1x1 conv maps the student's channels onto the teacher's only where they differ.
        self.adapters = nn.ModuleList(
            nn.Identity() if cs == ct else nn.Conv2d(cs, ct, 1)
            for cs, ct in zip(student_channels, teacher_channels, strict=True)
        )

    def level_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The loss of one level's adapted student features against the teacher's (each subclass's own)."""
        raise NotImplementedError(f"{type(self).__name__} does not define level_loss(student, teacher)")

    def forward(self, student: DistillInputs, teacher: DistillInputs) -> dict[str, torch.Tensor]:
        total = None
        for level, (adapter, s, t) in enumerate(zip(self.adapters, student.features, teacher.features, strict=True)):
            if s.shape[-2:] != t.shape[-2:]:
                raise ValueError(
                    f"neck level {level}: student map {tuple(s.shape[-2:])} but teacher map {tuple(t.shape[-2:])}; "
                    "feature distillation needs the same strides and input size"
                )
            value = self.level_loss(adapter(s).float(), t.float())
            total = value if total is None else total + value
        return {"": total}


@DISTILL_LOSSES.register()
class ChannelWiseDistillation(FeatureDistillation):
    """Channel-wise distillation (CWD, Shu et al. 2021): each channel's map becomes a spatial
    distribution ``softmax(x / T)`` over its ``H x W`` locations, and the student's is pulled to
    the teacher's by ``T^2 KL(teacher || student)``, averaged over images and channels, summed
    over levels."""

    short_name = "cwd"

    def __init__(
        self, student_channels: Sequence[int], teacher_channels: Sequence[int], weight: float = 1.0,
        temperature: float = 1.0,
    ) -> None:  # fmt: skip
        super().__init__(student_channels, teacher_channels, weight)
        _check_positive("temperature", temperature)
        self.temperature = float(temperature)

    def level_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        s_log = F.log_softmax(student.flatten(2) / t, dim=-1)
        t_log = F.log_softmax(teacher.flatten(2) / t, dim=-1)
        kl = (t_log.exp() * (t_log - s_log)).sum(-1)  # [B, C]
        return t * t * kl.mean()


@DISTILL_LOSSES.register()
class NormalizedFeatureMSE(FeatureDistillation):
    """Feature imitation on normalised maps (PKD-style, Cao et al. 2022): each channel of student
    and teacher is standardised to zero mean and unit variance over the batch and locations,
    then half the mean squared difference (= 1 - their Pearson correlation), summed over levels.
    Insensitive to the two networks' feature scales."""

    short_name = "nmse"

    @staticmethod
    def standardise(x: torch.Tensor) -> torch.Tensor:
        per_channel = x.transpose(0, 1).flatten(1)  # [C, B * H * W]
        mean = per_channel.mean(dim=1, keepdim=True)
        std = per_channel.std(dim=1, keepdim=True, unbiased=False)
        return (per_channel - mean) / (std + 1e-6)

    def level_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return 0.5 * F.mse_loss(self.standardise(student), self.standardise(teacher))


def binary_kl_with_logits(student_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Element-wise ``KL(Bernoulli(target) || Bernoulli(sigmoid(student_logits)))``: the binary
    cross-entropy with soft targets minus the targets' own entropy (zero when they agree)."""
    bce = F.binary_cross_entropy_with_logits(student_logits, target, reduction="none")
    p = target.clamp(1e-12, 1 - 1e-12)
    entropy = -(p * p.log() + (1 - p) * (1 - p).log())
    return bce - entropy


@DISTILL_LOSSES.register()
class OutputDistillation(nn.Module):
    """Output distillation for YOLOX-style heads (per-class sigmoids, an objectness logit), at
    temperature ``T``; teacher and student must share the prior layout (strides, priors per cell):

    * ``obj``: every prior's objectness ``sigmoid(s / T)`` against the teacher's ``sigmoid(t / T)``
      (binary KL);
    * ``cls``: every prior's class probabilities against the teacher's, each prior weighted by the
      teacher's objectness probability (background priors hardly count);
    * ``box``: ``1 - GIoU`` of the student's decoded boxes with the teacher's at the student's
      positive priors (where the student's assigner matched a ground truth).

    ``obj`` and ``cls`` are sums divided by the teacher's total objectness (its count of expected
    objects, as YOLOX divides by positives) and multiplied by ``T^2``; ``box`` is a mean over the
    positives. Each part has its own weight on top of ``weight``.
    """

    needs_outputs = True
    short_name = "out"
    parts = ("cls", "obj", "box")

    def __init__(
        self, weight: float = 1.0, temperature: float = 1.0, cls_weight: float = 1.0, obj_weight: float = 1.0,
        box_weight: float = 1.0,
    ) -> None:  # fmt: skip
        super().__init__()
        for name, value in (("weight", weight), ("temperature", temperature)):
            _check_positive(name, value)
        for name, value in (("cls_weight", cls_weight), ("obj_weight", obj_weight), ("box_weight", box_weight)):
            if value < 0:
                raise ValueError(f"{name}: {value!r}; expected a number >= 0")
        self.weight, self.temperature = float(weight), float(temperature)
        self.part_weights = {"cls": float(cls_weight), "obj": float(obj_weight), "box": float(box_weight)}

    def forward(self, student: DistillInputs, teacher: DistillInputs) -> dict[str, torch.Tensor]:
        if student.flat is None or teacher.flat is None:
            raise ValueError("OutputDistillation needs both networks' head outputs")
        if student.flat.shape != teacher.flat.shape:
            raise ValueError(
                f"student outputs {tuple(student.flat.shape)} but teacher outputs {tuple(teacher.flat.shape)}; "
                "output distillation needs the same priors and classes"
            )
        t = self.temperature
        s_flat, t_flat = student.flat.float(), teacher.flat.float()
        objectness = t_flat[..., 4].sigmoid()  # [B, P], the teacher's, at T = 1
        normaliser = objectness.sum().clamp(min=1.0)
        obj = binary_kl_with_logits(s_flat[..., 4] / t, (t_flat[..., 4] / t).sigmoid()).sum() / normaliser
        cls_kl = binary_kl_with_logits(s_flat[..., 5:] / t, (t_flat[..., 5:] / t).sigmoid()).sum(-1)  # [B, P]
        cls = (objectness * cls_kl).sum() / normaliser
        parts = {"cls": t * t * cls, "obj": t * t * obj}
        positives = student.positives
        if positives is not None and positives.any() and student.boxes is not None and teacher.boxes is not None:
            s_box = cxcywh_to_xyxy(student.boxes[positives].float())
            t_box = cxcywh_to_xyxy(teacher.boxes[positives].float())
            parts["box"] = (1.0 - aligned_iou(s_box, t_box, kind="giou")).mean()
        else:
            parts["box"] = s_flat.new_zeros(()) + 0.0 * s_flat[..., :4].sum()  # keeps the graph connected
        return {name: value * self.part_weights[name] for name, value in parts.items()}
