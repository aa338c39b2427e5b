"""Atomic file writes: a reader never sees a half-written file, a crash never leaves one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

#: File suffixes read as images (datasets, image folders, tools), lower case.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[IO[Any]], None],
    binary: bool = False,
    keep_previous: str | os.PathLike[str] | None = None,
) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it over
    ``path`` (and fsync the folder where the OS allows). Creates the parent folders. With
    ``keep_previous``, the file ``path`` held until now is first renamed there, so that at every
    moment one of the two is complete. Returns ``path``; on any error the temporary file is
    removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are meant to be read by others
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # makes the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """``atomic_write`` of a string."""
    return atomic_write(path, lambda f: f.write(text))
