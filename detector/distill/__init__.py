"""Knowledge distillation: a frozen teacher, distillation losses and the training hook that adds
them to the student's training step (``distill`` config section)."""

from detector.distill.hook import DistillationHook, build_distill_losses, check_distill_losses
from detector.distill.losses import (
    ChannelWiseDistillation,
    DistillInputs,
    NormalizedFeatureMSE,
    OutputDistillation,
)
from detector.distill.teacher import load_teacher

__all__ = [
    "ChannelWiseDistillation",
    "DistillInputs",
    "DistillationHook",
    "NormalizedFeatureMSE",
    "OutputDistillation",
    "build_distill_losses",
    "check_distill_losses",
    "load_teacher",
]
