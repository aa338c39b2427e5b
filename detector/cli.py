"""The ``detector`` command (subcommands in ``detector.commands``) and the plumbing its
subcommands share: user errors as one line, exit code 2."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from collections.abc import Callable

from detector.errors import CheckpointError, ConfigError, TrainingError

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


def _usage() -> str:
    from detector.commands import COMMANDS

    width = max(len(name) for name in COMMANDS)
    lines = ["usage: detector COMMAND [ARGS...]   (detector COMMAND --help for its arguments)", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``detector COMMAND ARGS``: run the subcommand's ``main`` with ``ARGS``."""
    from detector.commands import COMMANDS

    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        from detector import __version__

        print(f"detector {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"commands: {', '.join(COMMANDS)}"
        print(f"error: unknown command '{name}'; {hint}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"detector.commands.{COMMANDS[name][0]}")
    return module.main(rest, prog=f"detector {name}")
