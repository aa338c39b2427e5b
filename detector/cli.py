"""Shared command-line plumbing of the tools: user errors as one line, exit code 2."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable

from detector.engine.checkpoint import CheckpointError
from detector.engine.errors import TrainingError
from detector.registry import ConfigError

#: Errors caused by the user's input: shown as one line without a traceback.
#: A TrainingError is a diagnosed stop (e.g. NaNs in a row): its message is what to act on.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    CheckpointError,
    TrainingError,
    FileNotFoundError,
    ValueError,
)


def run_tool(main: Callable[[], int], debug: bool = False) -> int:
    """Run ``main``; a user error prints ``error: <message>`` and returns 2 (``debug`` shows
    the traceback). In a process of a torchrun launch the line names the rank. Warnings of the
    library (e.g. broken images left out) go to stderr as ``warning: <message>``."""
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    try:
        return main()
    except USER_ERRORS as exc:
        if debug:
            traceback.print_exc()
        where = f" (rank {os.environ.get('RANK')})" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
        print(f"error{where}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
