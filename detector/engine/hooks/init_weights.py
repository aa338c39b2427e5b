"""Start a run from existing weights (``train.init_weights``): fine-tuning, a pruned model."""

from __future__ import annotations

import os

import torch
from torch import nn

from detector.engine.hooks import Hook
from detector.errors import ConfigError
from detector.models.yolox_weights import yolox_state_dict
from detector.utils.checkpoint import load_checkpoint

#: Tensors that may differ in shape from the checkpoint's and are then left as initialised:
#: the prediction convs, whose widths follow the classes (fine-tuning on another label set).
CLASS_DEPENDENT = ("head.cls_preds.",)


def initial_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The weights a run starts from: a checkpoint of this package (its ``model``, the EMA's
    when the run kept one) or an official YOLOX ``.pth`` (keys renamed)."""
    ckpt = load_checkpoint(path)
    if "config" in ckpt:
        return dict(ckpt["model"])
    try:
        return yolox_state_dict(ckpt)
    except KeyError as exc:
        raise ConfigError(
            f"train.init_weights: {path}: neither a checkpoint of this package nor YOLOX's ({exc})"
        ) from None


def load_initial_weights(model: nn.Module, path: str | os.PathLike[str]) -> list[str]:
    """Copy the weights of ``path`` into ``model``; returns the names left as initialised (class
    dependent tensors whose shapes differ). ``ConfigError`` on any other missing, extra or
    differently shaped tensor, naming the first and, for shapes, the likely cause."""
    state = initial_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing or extra:
        name, what = (missing[0], "missing from it") if missing else (extra[0], "not in the model")
        raise ConfigError(
            f"train.init_weights: {path}: {len(missing)} tensors missing, {len(extra)} not in the model "
            f"(first: '{name}' {what}); it holds another architecture than model"
        )
    skipped = []
    for key, value in own.items():
        if state[key].shape == value.shape:
            continue
        if key.startswith(CLASS_DEPENDENT):
            skipped.append(key)
            del state[key]
            continue
        raise ConfigError(
            f"train.init_weights: {path}: '{key}' is {list(state[key].shape)} there, {list(value.shape)} in the "
            "model; a pruned checkpoint needs the config `detector prune` wrote beside it (model.channel_layout)"
        )
    model.load_state_dict(state, strict=not skipped)
    return skipped


class InitialWeightsHook(Hook):
    """Loads ``train.init_weights`` into the model before training (a resumed run then loads its
    own state over it) and says so in ``train.log``. Added by ``build_hooks`` when the setting
    is given."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.skipped: list[str] = []

    def prepare_model(self, model: nn.Module) -> nn.Module:
        self.skipped = load_initial_weights(model, self.path)
        return model

    def setup(self, trainer) -> None:  # noqa: ANN001
        left = f"; left as initialised: {', '.join(self.skipped)}" if self.skipped else ""
        trainer.logger.info("initial weights: %s%s", self.path, left)
