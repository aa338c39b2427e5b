"""Features without an edit of the loop: a hook added by config sees the events in order, an
extra loss term joins the step (and metrics.csv) through ``TrainStep.extra_losses``, and a
hook's ``prepare_model`` changes the model before the optimiser sees it."""

import csv

import pytest
import torch
from test_trainer import make_cfg as trainer_cfg
from test_trainer import shapes  # noqa: F401  (the fixture)

from detector.engine.hooks import BUILTIN_HOOKS, EVENTS, Hook
from detector.engine.trainer import Trainer
from detector.errors import ConfigError
from detector.registry import HOOKS


def make_cfg(configs_dir, shapes, tmp_path, **train):  # noqa: F811
    # Keeping freed memory in the allocator would outlive these tests in this process and
    # blur the memory monitor's tests that run after them.
    return trainer_cfg(configs_dir, shapes, tmp_path, keep_freed_memory=False, **train)


@HOOKS.register()
class RecordingHook(Hook):
    """Records (event, epoch, iteration) and adds an L2 penalty as an extra loss part."""

    def __init__(self, l2: float = 0.0) -> None:
        self.l2 = l2
        self.seen = []

    def _note(self, event, trainer):
        self.seen.append((event, trainer.epoch, trainer.iteration))

    def setup(self, trainer):
        self._note("setup", trainer)

    def before_train(self, trainer):
        self._note("before_train", trainer)
        if self.l2:
            params = [p for p in trainer.model.parameters() if p.requires_grad]
            trainer.step.extra_losses.append(
                lambda images, targets, losses: {"l2": self.l2 * sum((p**2).sum() for p in params)}
            )

    def before_epoch(self, trainer):
        self._note("before_epoch", trainer)

    def after_step(self, trainer):
        self._note("after_step", trainer)

    def after_epoch(self, trainer):
        self._note("after_epoch", trainer)

    def after_train(self, trainer):
        self._note("after_train", trainer)


@HOOKS.register()
class FreezeBackboneHook(Hook):
    def prepare_model(self, model):
        model.backbone.requires_grad_(False)
        return model


def test_a_configured_hook_sees_every_event_and_adds_a_logged_loss_term(configs_dir, shapes, tmp_path):  # noqa: F811
    cfg = make_cfg(configs_dir, shapes, tmp_path, epochs=2, hooks=[{"type": "RecordingHook", "l2": 1e-3}])
    trainer = Trainer(cfg, device="cpu", progress=False)
    assert [type(h) for h in trainer.hooks[: len(BUILTIN_HOOKS)]] == list(BUILTIN_HOOKS)
    (hook,) = [h for h in trainer.hooks if isinstance(h, RecordingHook)]
    trainer.train()
    steps = trainer.iters_per_epoch
    expected = [("setup", 0, 0), ("before_train", 0, 0)]
    for epoch in range(2):
        expected.append(("before_epoch", epoch, epoch * steps))
        expected += [("after_step", epoch, epoch * steps + i + 1) for i in range(steps)]
        expected.append(("after_epoch", epoch + 1, (epoch + 1) * steps))
    expected.append(("after_train", 2, 2 * steps))
    assert hook.seen == expected
    assert set(EVENTS) == {event for event, _, _ in hook.seen}
    # The extra term is trained (part of the total) and logged under its own name.
    record = trainer.history[-1]
    assert record["l2"] > 0
    parts = 5.0 * record["iou"] + record["obj"] + record["cls"] + record["l1"] + record["l2"]
    assert record["loss"] == pytest.approx(parts, rel=1e-6)
    with (trainer.run_dir / "metrics.csv").open() as f:
        header = next(csv.reader(f))
    assert header[:8] == ["epoch", "lr", "loss", "iou", "obj", "cls", "l1", "l2"]


def test_prepare_model_runs_before_the_optimiser(configs_dir, shapes, tmp_path):  # noqa: F811
    cfg = make_cfg(configs_dir, shapes, tmp_path, epochs=1, hooks=[{"type": "FreezeBackboneHook"}])
    trainer = Trainer(cfg, device="cpu", progress=False)
    frozen = {id(p) for p in trainer.model.backbone.parameters()}
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert frozen and not frozen & optimised
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    changed = {name for name, value in before.items() if not torch.equal(value, after[name])}
    assert changed and all(name.startswith(("neck.", "head.")) for name in changed)


def test_an_unknown_hook_is_a_config_error(configs_dir, shapes, tmp_path):  # noqa: F811
    cfg = make_cfg(configs_dir, shapes, tmp_path, hooks=[{"type": "RecordngHook"}])
    with pytest.raises(ConfigError, match=r"train\.hooks\[0\]\.type: unknown HOOKS type 'RecordngHook'; did you mean"):
        Trainer(cfg, device="cpu", progress=False)
