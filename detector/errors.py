"""The package's error classes, in one place.

User errors (a wrong config key, a missing file, unusable data, a run that cannot go on) are
shown by the commands as one ``error:`` line with exit code 2 (``detector.cli.USER_ERRORS``);
``BrokenImageError`` is caught inside the datasets, which report and skip the image.
"""

from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    """A config value is wrong: the message names the config key and what was expected."""


class DatasetError(ConfigError):
    """A data set cannot be used as it is (too many broken images, or an unreadable annotation file)."""


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated or not a checkpoint of this package."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss stayed NaN/Inf for too many steps)."""


class MotFormatError(ValueError):
    """A MOT file has a bad line: ``"{path}:{lineno}: <what is wrong>; expected <what>"``."""


class BrokenImageError(OSError):
    """An image that cannot be used (missing, undecodable, or not the size its labels say);
    ``kind`` is its problem kind (``detector.data.problems``)."""

    def __init__(self, kind: str, path: Path, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.path = kind, path
