"""Frame sources for tracking: a video file, a folder of images, or a MOTChallenge sequence.

A source yields ``(frame, image)`` with ``frame`` 1-based (MOTChallenge numbering) and
``image`` uint8 HWC BGR, or ``None`` for a MOTChallenge sequence whose images are not there
(tracking its public detections needs none).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from detector.tracking.mot_io import read_seqinfo
from detector.utils.fileio import IMAGE_SUFFIXES

DEFAULT_FRAME_RATE = 30.0


class FrameSource:
    """Frames of ``path``: a video file, a MOTChallenge sequence folder (``seqinfo.ini``,
    ``img1/``), or a folder of images (sorted by name).

    ``frame_rate``: the video's, the sequence's ``frameRate``, else ``DEFAULT_FRAME_RATE``
    (``fps`` overrides it). ``num_frames``: known up front (0 for a video whose container does
    not say). ``has_images``: False for a sequence without its image folder. Raises
    ``FileNotFoundError`` / ``ValueError`` with one line naming the path when it cannot be read.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float | None = None) -> None:
        self.path = Path(path)
        self.files: list[Path] = []
        self.video: cv2.VideoCapture | None = None
        self.size: tuple[int, int] | None = None  # (h, w) when known before decoding
        rate: float | None = None
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such video, image folder or MOTChallenge sequence")
        if self.path.is_file():
            self.video = cv2.VideoCapture(str(self.path))
            if not self.video.isOpened():
                raise ValueError(f"{self.path}: cannot open as a video (not a video file, or a codec OpenCV lacks)")
            rate = self.video.get(cv2.CAP_PROP_FPS) or None
            self.num_frames = max(0, int(self.video.get(cv2.CAP_PROP_FRAME_COUNT)))
        elif (self.path / "seqinfo.ini").is_file():
            info = read_seqinfo(self.path / "seqinfo.ini")
            rate = float(info["frameRate"])
            self.num_frames = int(info["seqLength"])
            self.size = (int(info["imHeight"]), int(info["imWidth"]))
            image_dir = self.path / str(info.get("imDir", "img1"))
            if image_dir.is_dir():
                self.files = _images_in(image_dir)
                if len(self.files) != self.num_frames:
                    raise ValueError(
                        f"{image_dir}: {len(self.files)} images but seqinfo.ini says seqLength={self.num_frames}"
                    )
        else:
            self.files = _images_in(self.path)
            if not self.files:
                raise FileNotFoundError(f"{self.path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            self.num_frames = len(self.files)
        self.frame_rate = float(fps or rate or DEFAULT_FRAME_RATE)

    @property
    def has_images(self) -> bool:
        return self.video is not None or bool(self.files)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray | None]]:
        if self.video is not None:
            frame = 0
            while True:
                ok, image = self.video.read()
                if not ok:
                    break
                frame += 1
                yield frame, image
            return
        if not self.files:
            for frame in range(1, self.num_frames + 1):
                yield frame, None
            return
        for frame, file in enumerate(self.files, start=1):
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"{file}: not a readable image (frame {frame})")
            yield frame, image

    def close(self) -> None:
        if self.video is not None:
            self.video.release()


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
