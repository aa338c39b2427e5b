"""What is wrong with a data set: problems counted by kind with their first examples, which
images cannot be used, and the share of broken images a run accepts.

Datasets check their files when they are built (cheaply: annotation schema, box values, image
files present and not truncated), drop what cannot be used and keep a ``DataProblems``;
``tools/check_dataset.py`` prints it, with a full decode of every image on top.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from detector.errors import ConfigError, DatasetError

LOGGER = logging.getLogger("detector.data")
EXAMPLES_PER_KIND = 3

# Kinds of problem. Image-level ones take the image out; the others drop one box or line.
MISSING_IMAGE = "image file missing"
UNREADABLE_IMAGE = "image file truncated or not decodable"
SIZE_MISMATCH = "image size differs from the annotation file"
DUPLICATE_IMAGE = "duplicate image id"
MALFORMED_IMAGE_ENTRY = "image entry with missing or wrongly typed keys"
OUTSIDE_IMAGE_FOLDER = "image file name leading outside the image folder"
MALFORMED_ANNOTATION = "annotation with missing or wrongly typed keys"
UNKNOWN_CATEGORY = "annotation with an unknown category id"
UNKNOWN_IMAGE = "annotation of an unknown image id"
NON_FINITE_BOX = "box with NaN or infinite coordinates"
EMPTY_BOX = "box with zero or negative width or height"
OUTSIDE_BOX = "box entirely outside the image"
CLIPPED_BOX = "box partly outside the image (clipped)"
BAD_LABEL_LINE = "label line with a wrong column count or non-numeric values"
BAD_CLASS_ID = "label line with a class id out of range"
IMAGE_PROBLEMS = (
    MISSING_IMAGE, UNREADABLE_IMAGE, SIZE_MISMATCH, DUPLICATE_IMAGE, MALFORMED_IMAGE_ENTRY, OUTSIDE_IMAGE_FOLDER,
)  # fmt: skip
#: Counted and shown, but nothing is lost (COCO itself has boxes a pixel past the border).
NOTICES = (CLIPPED_BOX,)

#: Default share of broken images a dataset tolerates before it refuses to start.
DEFAULT_MAX_BROKEN_FRACTION = 0.05


@dataclass
class DataProblems:
    """Problems found in ``source`` (an annotation file or a data YAML): counts per kind, the
    first ``EXAMPLES_PER_KIND`` places of each, and the indices of images left out."""

    source: str
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)

    def add(self, kind: str, where: str | Path, image: str | Path | None = None) -> None:
        """Count one ``kind`` problem at ``where`` (a file name, ``file:line``, an annotation
        id); ``image`` names the image it makes unusable, for image-level kinds."""
        self.counts[kind] += 1
        shown = self.examples.setdefault(kind, [])
        if len(shown) < EXAMPLES_PER_KIND:
            shown.append(str(where))
        if image is not None:
            self.broken.add(str(image))

    @property
    def total(self) -> int:
        """Problems that lost data (notices such as clipped boxes excluded)."""
        return sum(n for kind, n in self.counts.items() if kind not in NOTICES)

    def lines(self) -> list[str]:
        """One line per kind: ``kind: N (first, second, third)``, most frequent first."""
        return [
            f"{kind}: {n} ({', '.join(self.examples.get(kind, []))}{', ...' if n > EXAMPLES_PER_KIND else ''})"
            for kind, n in self.counts.most_common()
        ]

    def log(self, total_images: int) -> None:
        """A warning with the summary, when anything was found."""
        if self.counts:
            LOGGER.warning(
                "%s: %d of %d images left out; %s", self.source, len(self.broken), total_images, "; ".join(self.lines())
            )

    def check_share(self, total_images: int, max_fraction: float, key: str = "max_broken_fraction") -> None:
        """Raise ``DatasetError`` when more than ``max_fraction`` of ``total_images`` are broken."""
        if not 0.0 <= max_fraction <= 1.0:
            raise ConfigError(f"{key}: {max_fraction}; expected a share between 0 and 1")
        if total_images and len(self.broken) / total_images > max_fraction:
            raise DatasetError(
                f"{self.source}: {len(self.broken)} of {total_images} images are broken "
                f"({len(self.broken) / total_images:.1%} > {key} {max_fraction:.1%}): " + "; ".join(self.lines())
            )


def image_file_problem(path: Path) -> str | None:
    """A cheap check of an image file without decoding it: ``MISSING_IMAGE``, ``UNREADABLE_IMAGE``
    (empty, or a JPEG / PNG whose end marker is missing, as in a truncated download) or None."""
    try:
        size = path.stat().st_size
    except OSError:
        return MISSING_IMAGE
    if size == 0:
        return UNREADABLE_IMAGE
    try:
        with path.open("rb") as f:
            head = f.read(8)
            f.seek(max(size - 32, 0))
            tail = f.read()
    except OSError:
        return UNREADABLE_IMAGE
    if head[:3] == b"\xff\xd8\xff":  # JPEG: ends with EOI (FF D9), possibly followed by padding
        return None if b"\xff\xd9" in tail else UNREADABLE_IMAGE
    if head == b"\x89PNG\r\n\x1a\n":  # PNG: the last chunk is IEND
        return None if b"IEND" in tail else UNREADABLE_IMAGE
    return None  # other formats are checked when decoded
