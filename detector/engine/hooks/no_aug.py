"""The last ``train.no_aug_epochs`` epochs without augmentation and with the L1 loss (YOLOX)."""

from __future__ import annotations

from detector.data.mix_dataset import MixDataset, train_transform
from detector.engine.hooks import Hook
from detector.registry import HOOKS


@HOOKS.register()
class NoAugHook(Hook):
    """Switch augmentation and mixing off and the L1 loss on when the no-aug epochs begin
    (once, also when a resumed run starts inside them)."""

    def __init__(self) -> None:
        self.switched = False

    def before_epoch(self, trainer) -> None:  # noqa: ANN001
        epochs, no_aug = trainer.epochs, trainer.settings.train.no_aug_epochs
        if self.switched or not no_aug or trainer.epoch < epochs - no_aug:
            return
        trainer.train_set.transform = train_transform(trainer.settings.data, augment=False)
        if isinstance(trainer.train_set, MixDataset):
            trainer.train_set.mixing = False
        trainer.model.head.criterion.use_l1 = True
        self.switched = True
        trainer.logger.info("epoch %d: augmentation (mosaic, mixup, albumentations) off, L1 loss on", trainer.epoch + 1)
