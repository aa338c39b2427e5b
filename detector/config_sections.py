"""The typed schema of every config section the code reads: each key's type, default and description.

:class:`RunConfig` is a whole config; :func:`parse_config` builds it from a plain mapping (an
unknown key or a wrong value raises ``ConfigError`` naming its dotted path and the closest known
key); ``detector.schema.to_plain`` gives back the full plain dict, every default filled in, that a
run folder's ``config.yaml`` and the checkpoints hold. Parts built through a registry (``model``,
``data.train``, ``data.val``, ``track.tracker``) are mappings here, checked against their
constructors' signatures by :func:`check_parts`.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any

from detector.data.mix import MixParams
from detector.errors import ConfigError
from detector.schema import check_fraction, check_non_negative, check_positive, parse_section, setting


@dataclasses.dataclass
class DataConfig:
    """``data``: the datasets, input size, batches and augmentation."""

    train: dict[str, Any] | None = setting(None, "training set: a dataset config with a 'type' (e.g. CocoDataset)")
    val: dict[str, Any] | None = setting(None, "validation set: a dataset config with a 'type'")
    imgsz: int | list[int] = setting(640, "network input size in pixels: one size, or [height, width]")
    batch_size: int = setting(16, "global batch of one optimiser step, over all processes")
    batch_per_device: int | None = setting(
        None, "images per process per forward pass (null: batch_size / processes); gradients accumulate"
    )
    num_workers: int = setting(0, "data loader worker processes")
    pin_memory: bool = setting(True, "pin loaded batches in page-locked memory (CUDA only)")
    min_box_size: float = setting(2.0, "boxes narrower or lower than this many pixels after augmentation are dropped")
    augment: list[dict[str, Any]] | None = setting(
        None, "albumentations steps for every training sample: [{type: HorizontalFlip, p: 0.5}, ...]"
    )
    mix: MixParams | None = setting(None, "Mosaic and MixUp settings (null: no mixing)")

    def check(self, path: str) -> None:
        sizes = [self.imgsz] if isinstance(self.imgsz, int) else self.imgsz
        if len(sizes) not in (1, 2) or any(s <= 0 or s % 32 for s in sizes):
            raise ConfigError(f"{path}.imgsz: {self.imgsz!r}; expected a multiple of 32, or [height, width] of them")
        check_positive(path, batch_size=self.batch_size, batch_per_device=self.batch_per_device)
        check_non_negative(path, num_workers=self.num_workers, min_box_size=self.min_box_size)


@dataclasses.dataclass
class EmaConfig:
    """``train.ema``: the exponential moving average of the weights (YOLOX's)."""

    decay: float = setting(0.9998, "EMA decay once warmed up")
    tau: float = setting(2000.0, "warm-up of the decay in optimiser steps: decay x (1 - exp(-steps / tau))")

    def check(self, path: str) -> None:
        if not 0.0 < self.decay < 1.0:
            raise ConfigError(f"{path}.decay: {self.decay!r}; expected a number in (0, 1)")
        check_positive(path, tau=self.tau)


@dataclasses.dataclass
class TrainConfig:
    """``train``: the schedule length, run folder, precision and safeguards."""

    epochs: int = setting(100, "training epochs")
    seed: int = setting(0, "seed of weights, shuffling and augmentation")
    init_weights: str | None = setting(
        None, "start from these weights: a checkpoint of this package (a pruned one too) or an official YOLOX .pth"
    )
    output_dir: str = setting("runs", "folder of the run folders")
    name: str | None = setting(None, "run folder name under output_dir (null: the config's file name)")
    no_aug_epochs: int = setting(0, "last epochs without augmentation and mixing (YOLOX: 15)")
    eval_interval: int = setting(10, "evaluate every this many epochs (and after the last)")
    amp: bool = setting(True, "mixed precision (float16 autocast) on CUDA; ignored on CPU")
    ema: EmaConfig | bool = setting(EmaConfig(), "EMA of the weights: its settings, or false for none")
    clip_grad: float | None = setting(None, "clip the gradients' global norm to this (null: no clipping)")
    max_bad_steps: int = setting(10, "stop after this many skipped (non-finite) steps in a row")
    channels_last: bool = setting(True, "channels-last memory format (faster convolutions on CPU and GPU)")
    sync_bn: bool = setting(False, "BatchNorm statistics over all processes (SyncBatchNorm) in distributed runs")
    keep_freed_memory: bool = setting(True, "CPU: keep freed memory in the allocator instead of returning it")
    dist_timeout_s: float = setting(1800.0, "seconds a collective may wait for the other processes")
    plots: bool = setting(True, "at the end: curves, evaluation pictures and drawn predictions in the run folder")
    hooks: list[dict[str, Any]] = setting([], "extra training hooks after the built-in ones: [{type: NAME, ...}]")

    def check(self, path: str) -> None:
        if self.ema is True:
            self.ema = EmaConfig()
        check_positive(
            path,
            epochs=self.epochs,
            eval_interval=self.eval_interval,
            max_bad_steps=self.max_bad_steps,
            clip_grad=self.clip_grad,
            dist_timeout_s=self.dist_timeout_s,
        )
        check_non_negative(path, no_aug_epochs=self.no_aug_epochs)


@dataclasses.dataclass
class OptimizerConfig:
    """``optimizer``: SGD or AdamW, with weight decay on conv/linear weights only."""

    type: str = setting("SGD", "optimiser", choices=("SGD", "AdamW"))
    lr: float = setting(0.01, "learning rate at base_batch_size images per step (scaled linearly to batch_size)")
    base_batch_size: int = setting(64, "the batch size lr is given for")
    weight_decay: float = setting(5e-4, "weight decay of conv and linear weights (not BatchNorm, not biases)")
    momentum: float = setting(0.9, "SGD momentum")
    nesterov: bool = setting(True, "SGD Nesterov momentum")
    betas: tuple[float, float] = setting((0.9, 0.999), "AdamW betas")

    def check(self, path: str) -> None:
        check_positive(path, lr=self.lr, base_batch_size=self.base_batch_size)
        check_non_negative(path, weight_decay=self.weight_decay, momentum=self.momentum)
        if len(self.betas) != 2:
            raise ConfigError(f"{path}.betas: {list(self.betas)!r}; expected [beta1, beta2]")


@dataclasses.dataclass
class SchedulerConfig:
    """``scheduler``: linear warm-up, cosine decay, a flat tail over the no-aug epochs (YOLOX's)."""

    warmup_epochs: float = setting(1.0, "epochs of warm-up from warmup_lr to lr")
    warmup_lr: float = setting(0.0, "learning rate at the first step")
    min_lr_ratio: float = setting(0.05, "the final learning rate as a fraction of lr")

    def check(self, path: str) -> None:
        check_non_negative(path, warmup_epochs=self.warmup_epochs, warmup_lr=self.warmup_lr)
        check_fraction(path, min_lr_ratio=self.min_lr_ratio)


@dataclasses.dataclass
class EvalConfig:
    """``eval``: the detector settings of COCO evaluation."""

    conf_threshold: float = setting(0.001, "score threshold of the detections scored")
    iou_threshold: float = setting(0.65, "NMS IoU threshold")
    max_det: int = setting(100, "detections kept per image")
    batch_size: int | None = setting(None, "evaluation batch (null: data.batch_per_device)")

    def check(self, path: str) -> None:
        check_positive(path, max_det=self.max_det, batch_size=self.batch_size)


@dataclasses.dataclass
class FullRangeConfig:
    """``track.full_range``: the tracker's settings for detections over a detector's whole score
    range (``detector track --ckpt`` at ``detector_conf``), as against files already cut at a
    confidence (MOTChallenge's public detections, at 0.5)."""

    below: float = setting(0.5, "detections that can score under this span a detector's whole range")
    tracker: dict[str, Any] = setting({}, "settings replacing track.tracker's for them: {high_threshold: 0.25, ...}")

    def check(self, path: str) -> None:
        check_fraction(path, below=self.below)
        if "type" in self.tracker:
            raise ConfigError(f"{path}.tracker.type: set; expected settings of track.tracker's type only")


@dataclasses.dataclass
class TrackConfig:
    """``track``: the tracker and the detector settings of ``detector track``."""

    tracker: dict[str, Any] | None = setting(None, "the tracker: a config with a 'type' (e.g. ByteTracker)")
    interpolate: bool = setting(True, "fill the gaps the tracker bridged in results.txt (offline, as ByteTrack)")
    interpolate_max_gap: int = setting(
        20, "longest gap interpolate fills: frames between a track's two rows (ByteTrack's 20)"
    )
    interpolate_min_coverage: float = setting(
        0.0, "interpolate only tracks with rows in at least this share of the frames they span (sparse: strays)"
    )
    interpolate_min_track_score: float = setting(
        0.0, "interpolate only tracks whose rows' mean score reaches this (tracks on clutter are weak)"
    )
    backfill: bool = setting(True, "add each track's detections from before its confirmation to results.txt (offline)")
    link_max_gap: int = setting(
        0, "offline: join a track to one starting up to this many frames after its end if their motions agree (0: off)"
    )
    link_min_iou: float = setting(0.5, "IoU the two tracks need, both extrapolated to the middle of their gap")
    extend_max_miss: int | None = setting(
        None,
        "offline: extend tracks at both ends with the detections that continue them, stopping after "
        "more than this many frames without one (null: off)",
    )
    extend_min_iou: float = setting(0.5, "IoU a detection needs with the extended track's moved box")
    extend_min_track_score: float = setting(
        0.0, "tracks whose rows' mean score is below this are not extended (tracks on clutter are weak)"
    )
    full_range: FullRangeConfig | None = setting(
        None, "other tracker settings for a detector's whole score range: {below: 0.5, tracker: {...}} (null: none)"
    )
    trail: int = setting(30, "frames of trail drawn behind each track in annotated.mp4")
    detector_conf: float = setting(0.1, "the detector's score threshold (the second association needs weak boxes)")
    detector_iou: float = setting(0.7, "the detector's NMS IoU threshold")

    def check(self, path: str) -> None:
        check_non_negative(
            path, trail=self.trail, interpolate_max_gap=self.interpolate_max_gap, link_max_gap=self.link_max_gap,
            extend_max_miss=self.extend_max_miss,
        )  # fmt: skip
        for key in ("link_min_iou", "extend_min_iou"):
            if not 0.0 < getattr(self, key) <= 1.0:
                raise ConfigError(f"{path}.{key}: {getattr(self, key)!r}; expected a number in (0, 1]")
        check_fraction(path, extend_min_track_score=self.extend_min_track_score,
                       interpolate_min_coverage=self.interpolate_min_coverage,
                       interpolate_min_track_score=self.interpolate_min_track_score)  # fmt: skip

    def full_range_applies(self, lowest_score: float | None) -> bool:
        """Whether detections whose lowest possible score is ``lowest_score`` (a detector's
        ``detector_conf``, a det file's lowest score; None: scores on their own scale, as the
        motion detector's) span a detector's whole range: under ``full_range.below``."""
        return self.full_range is not None and lowest_score is not None and lowest_score < self.full_range.below

    def tracker_settings(self, lowest_score: float | None) -> dict[str, Any]:
        """``tracker``, with ``full_range.tracker``'s settings replacing its own where
        :meth:`full_range_applies` to ``lowest_score``."""
        settings = dict(self.tracker or {})
        if self.full_range_applies(lowest_score):
            settings.update(self.full_range.tracker)
        return settings

    def sequence_settings(self) -> dict[str, Any]:
        """The keyword arguments of ``detector.tracking.track_sequence`` these settings give: the
        offline clean-up (backfill, joining, extension, interpolation) and the video's trail."""
        keys = ("interpolate", "interpolate_max_gap", "interpolate_min_coverage", "interpolate_min_track_score",
                "backfill", "link_max_gap", "link_min_iou", "extend_max_miss", "extend_min_iou",
                "extend_min_track_score", "trail")  # fmt: skip
        return {key: getattr(self, key) for key in keys}


@dataclasses.dataclass
class TeacherConfig:
    """``distill.teacher``: the frozen network the student learns from."""

    ckpt: str = setting("", "the teacher's weights: a checkpoint of this package (best.pt) or an official YOLOX .pth")
    config: str | None = setting(
        None, "the teacher's config (YAML path or packaged name); null: the checkpoint's own (ours only)"
    )

    def check(self, path: str) -> None:
        if not self.ckpt:
            raise ConfigError(f"{path}.ckpt: missing; expected the teacher's checkpoint file")


@dataclasses.dataclass
class DistillConfig:
    """``distill``: knowledge distillation from a frozen teacher (off while ``teacher`` is null)."""

    teacher: TeacherConfig | None = setting(None, "the teacher: {ckpt: FILE, config: CONFIG} (null: no distillation)")
    losses: list[dict[str, Any]] = setting(
        [{"type": "OutputDistillation", "weight": 1.0}, {"type": "ChannelWiseDistillation", "weight": 1.0}],
        "distillation losses, each with its weight: [{type: ChannelWiseDistillation, weight: 1.0, temperature: 1.0}]",
    )
    weight_schedule: str = setting(
        "constant", "the losses' weights over training: constant, or cosine decay", choices=("constant", "cosine")
    )
    final_weight_ratio: float = setting(0.0, "cosine schedule: the weights at the end as a fraction of their start")
    off_in_no_aug_epochs: bool = setting(False, "no distillation in the last train.no_aug_epochs epochs")
    anneal_temperature: bool = setting(False, "temperatures fall linearly from their set value to 1 over training")

    def check(self, path: str) -> None:
        check_fraction(path, final_weight_ratio=self.final_weight_ratio)
        if self.teacher is not None and not self.losses:
            raise ConfigError(f"{path}.losses: empty; a teacher needs at least one distillation loss")


@dataclasses.dataclass
class QatConfig:
    """``qat``: quantisation-aware training, fake-quantised INT8 fine-tuning (see ``detector.compress.qat``)."""

    enabled: bool = setting(
        False, "fine-tune with INT8 fake quantisation; the run's checkpoints then export as INT8 QDQ ONNX"
    )
    calibration_images: int = setting(
        100, "first images of data.train the activation ranges are calibrated on (as `detector quantize --n`)"
    )
    range_momentum: float = setting(
        0.01, "how fast the activation ranges follow the training batches (0: fixed at their calibration)"
    )
    weight_bits: int = setting(8, "8, or 7 (ONNX Runtime's reduce_range: exact INT8 convs on x86 CPUs without VNNI)")

    def check(self, path: str) -> None:
        check_positive(path, calibration_images=self.calibration_images)
        if self.weight_bits not in (7, 8):
            raise ConfigError(f"{path}.weight_bits: {self.weight_bits!r}; expected 8 or 7")
        check_fraction(path, range_momentum=self.range_momentum)


@dataclasses.dataclass
class RunConfig:
    """A whole config: the model and the sections above."""

    model: dict[str, Any] | None = setting(None, "the detector: backbone, neck and head configs with their 'type'")
    data: DataConfig = setting(DataConfig(), "datasets, input size, batches, augmentation")
    train: TrainConfig = setting(TrainConfig(), "schedule length, run folder, precision, safeguards")
    optimizer: OptimizerConfig = setting(OptimizerConfig(), "optimiser and learning rate")
    scheduler: SchedulerConfig = setting(SchedulerConfig(), "learning-rate schedule")
    eval: EvalConfig = setting(EvalConfig(), "COCO evaluation's detector settings")
    track: TrackConfig = setting(TrackConfig(), "tracking")
    distill: DistillConfig = setting(DistillConfig(), "knowledge distillation from a teacher")
    qat: QatConfig = setting(QatConfig(), "quantisation-aware training")


#: The top-level sections a config may have.
KNOWN_SECTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RunConfig))


def parse_config(cfg: Mapping[str, Any] | RunConfig) -> RunConfig:
    """The typed config of a plain one (missing keys take their defaults); ``ConfigError`` on an
    unknown key or a wrong value, naming its dotted path."""
    if isinstance(cfg, RunConfig):
        return cfg
    for key in cfg:
        if key not in KNOWN_SECTIONS:
            close = difflib.get_close_matches(str(key), KNOWN_SECTIONS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known sections: {', '.join(KNOWN_SECTIONS)}"
            raise ConfigError(f"unknown top-level section '{key}'; {hint}")
    return parse_section(RunConfig, cfg, "")


def check_parts(run: RunConfig) -> None:
    """Check the registry-built parts against their constructors without building anything
    heavy or reading any data: the model on the ``meta`` device, datasets and the tracker by
    their signatures."""
    import detector.data  # noqa: F401  (registers the datasets)
    import detector.tracking  # noqa: F401  (registers the trackers)
    from detector.data.transforms import check_augmentations
    from detector.models.detector import check_model_config
    from detector.registry import DATASETS, HOOKS, TRACKERS

    if run.model is not None:
        check_model_config(run.model)
    for split in ("train", "val"):
        part = getattr(run.data, split)
        if part is not None:
            DATASETS.check(part, f"data.{split}")
    if run.data.augment is not None:
        check_augmentations(run.data.augment, "data.augment")
    if run.data.mix is not None and run.data.mix.single_augment is not None:
        check_augmentations(run.data.mix.single_augment, "data.mix.single_augment")
    if run.track.tracker is not None:
        TRACKERS.check(run.track.tracker, "track.tracker")
        if run.track.full_range is not None:
            TRACKERS.check({**run.track.tracker, **run.track.full_range.tracker}, "track.full_range.tracker")
    from detector.distill import check_distill_losses  # (also without a teacher: a typo waits otherwise)

    check_distill_losses(run.distill.losses, "distill.losses")
    if run.train.hooks:
        import detector.engine.hooks  # noqa: F401  (registers the built-in hooks)

        for i, hook in enumerate(run.train.hooks):
            HOOKS.check(hook, f"train.hooks[{i}]")
