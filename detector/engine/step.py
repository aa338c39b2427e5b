"""One training step: forward, loss, the ranks' agreement on non-finite inputs and losses,
backward with AMP, gradient accumulation and clipping, the optimiser step.

This is the extension point for features that change what one step computes:

* ``TrainStep.extra_losses``: callables ``(images, targets, losses) -> {name: loss}``; each
  returned loss is added to the total that is differentiated and reported as a loss part of its
  own (a distillation hook appends the frozen teacher's loss here in ``before_train``). They are
  on the scale of the model's own loss (YOLOX: per positive), which the step normalises.
* subclass and override :meth:`TrainStep.forward_losses` for anything else about the forward.

* ``TrainStep.extra_params``: parameters trained beside the model but not part of it (the
  distillation adapters); the step averages their gradients over the processes as DDP does for the
  model's, and clips them with the model's.

Features that change the model before training (quantisation-aware training, pruning) prepare
it in a hook's ``prepare_model`` (``detector.engine.hooks``), before the optimiser sees it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from detector.engine.distributed import all_gather_objects, all_reduce_sum
from detector.errors import TrainingError

#: Entries of a loss dict that are not loss parts: the differentiated total and the counts.
#: Every other entry (YOLOX: ``iou``, ``obj``, ``cls``, ``l1``) is a part, logged by its name.
NOT_PARTS = ("loss", "normalizer", "num_fg")

ExtraLoss = Callable[[torch.Tensor, torch.Tensor, Mapping[str, torch.Tensor]], Mapping[str, torch.Tensor]]


class TrainStep:
    """``step(batches, iteration)``: one optimiser step over one micro-batch or the
    ``accumulate`` micro-batches of this process. Returns the loss parts over the step's global
    batch (``{"loss": ..., "iou": ..., ...}``, the same on every rank), or None when the step was
    skipped because an input, a loss or the gradients were not finite on any rank (all ranks
    skip together; ``max_bad_steps`` skipped steps in a row raise ``TrainingError``).

    The loss is normalised over the whole step, as one process with the global batch would:
    each micro-batch's parts are multiplied back by their ``normalizer`` (the positives count
    YOLOX divides by), summed over micro-batches and ranks, and divided by the total.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        ddp: nn.Module | None,
        device: torch.device,
        world_size: int = 1,
        rank: int = 0,
        memory_format: torch.memory_format = torch.preserve_format,
        use_amp: bool = False,
        clip_grad: float | None = None,
        max_bad_steps: int = 10,
        logger: logging.Logger | None = None,
    ) -> None:
        self.model, self.optimizer, self.ddp, self.device = model, optimizer, ddp, device
        self.world_size, self.rank, self.memory_format = world_size, rank, memory_format
        self.use_amp, self.clip_grad, self.max_bad_steps = use_amp, clip_grad, max_bad_steps
        self.logger = logger or logging.getLogger(__name__)
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        self.extra_losses: list[ExtraLoss] = []
        self.extra_params: list[nn.Parameter] = []
        self.bad_steps = 0
        self.skipped_steps = 0
        #: The loss part names of the last step computed (from the loss dict).
        self.part_names: list[str] = []
        # Walking the module tree every step costs more than the step's bookkeeping itself.
        self._params = [p for p in model.parameters() if p.requires_grad]
        self._buffers = list(model.buffers())

    def forward_losses(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss dict of one micro-batch: the model's, plus each ``extra_losses`` term."""
        losses = model(images, targets)
        for term in self.extra_losses:
            for name, value in term(images, targets, losses).items():
                losses["loss"] = losses["loss"] + value
                losses[name] = value.detach()
        return losses

    def _no_sync(self, last: bool) -> contextlib.AbstractContextManager:
        """DDP's gradient all-reduce only on the last micro-batch of an accumulated step."""
        return self.ddp.no_sync() if self.ddp is not None and not last else contextlib.nullcontext()

    def __call__(
        self, batches: Mapping[str, Any] | Sequence[Mapping[str, Any]], iteration: int = 0
    ) -> dict[str, float] | None:
        batches = [batches] if isinstance(batches, Mapping) else list(batches)
        model = self.ddp if self.ddp is not None else self.model
        # A forward pass in training mode updates the BatchNorm statistics: keep a copy so that a
        # skipped step leaves no trace of a non-finite batch in the model.
        saved_buffers = [b.clone() for b in self._buffers]
        totals: torch.Tensor | None = None
        names: list[str] = []
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
                return self._skip("input images or boxes" if bad_here else None, batches, saved_buffers, iteration)
            with self._no_sync(k == len(batches) - 1):
                with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
                    losses = self.forward_losses(model, images, targets)
                parts = [key for key in losses if key not in NOT_PARTS]
                names = ["loss", *parts]
                # The first bad part (iou, obj, cls, l1) tells more than the total it spoils.
                bad_parts = [key for key in (*parts, "loss") if not torch.isfinite(losses[key]).all()]
                bad = f"{bad_parts[0]} loss" if bad_parts else None
                # One small all-reduce per micro-batch: whether any rank's loss went wrong (then
                # all skip the step, since a rank skipping alone would leave the others waiting in
                # DDP's gradient reduction), and the sums that normalise the step over all ranks.
                stats = torch.zeros(len(names) + 2, dtype=torch.float64, device=self.device)
                if bad is not None:
                    stats[0] = 1.0
                else:
                    normalizer = losses.get("normalizer")
                    normalizer = float(images.shape[0]) if normalizer is None else float(normalizer)
                    weight = max(normalizer, 1.0)
                    values = torch.stack([losses[key].detach() for key in names]).to(torch.float64)
                    stats[1:-1] = values * weight
                    stats[-1] = normalizer
                all_reduce_sum(stats)
                if stats[0].item() > 0:
                    return self._skip(bad, batches, saved_buffers, iteration)
                if totals is None:
                    totals = torch.zeros(len(names) + 1, dtype=torch.float64, device=self.device)
                totals += stats[1:]
                if k == 0:
                    # The first micro-batch's mean normaliser per rank keeps the backward's scale
                    # near a plain mean loss; the exact global normaliser is applied below.
                    reference = max(float(stats[-1]), 1.0) / self.world_size
                self.scaler.scale(losses["loss"] * (weight / reference)).backward()
        if self.extra_params and self.world_size > 1:
            self._average_extra_grads()
        self.scaler.unscale_(self.optimizer)
        params = self._params + self.extra_params
        grads = [p.grad for p in params if p.grad is not None]
        total = max(float(totals[-1]), 1.0)  # the step's global normaliser
        # DDP averaged over ranks; gradients must be those of (sum of losses) / (global normaliser).
        correction = reference * self.world_size / total
        if correction != 1.0:
            torch._foreach_mul_(grads, correction)
        grad_norm = torch.nn.utils.get_total_norm(grads, foreach=True)
        if self.clip_grad:
            torch.nn.utils.clip_grads_with_norm_(params, float(self.clip_grad), grad_norm, foreach=True)
        if not torch.isfinite(grad_norm) and not self.use_amp:  # gradients are equal on all ranks here
            return self._skip("gradients", batches, saved_buffers, iteration)
        self.bad_steps = 0
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.part_names = names
        return {key: float(value) / total for key, value in zip(names, totals[:-1].tolist(), strict=True)}

    def _average_extra_grads(self) -> None:
        """The mean over the processes of ``extra_params``' gradients, in one all-reduce."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.extra_params]
        flat = all_reduce_sum(torch.cat([g.reshape(-1) for g in grads])) / self.world_size
        offset = 0
        for p, g in zip(self.extra_params, grads, strict=True):
            p.grad = flat[offset : offset + g.numel()].view_as(g).clone()
            offset += g.numel()

    def _skip(
        self,
        what: str | None,
        batches: Sequence[Mapping[str, Any]],
        saved_buffers: Sequence[torch.Tensor],
        iteration: int,
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
        self.logger.warning("iteration %d: non-finite %s, step skipped (%s)", iteration, parts, where)
        if self.bad_steps >= self.max_bad_steps:
            raise TrainingError(
                f"non-finite {parts} for {self.bad_steps} steps in a row (last batch: {where}); "
                "check these images, lower optimizer.lr or set train.clip_grad"
            )
        return None
