"""Launching a tool the way a user does: plainly for 1 process, through torchrun for more
(2 processes with gloo on CPU, one thread each on this 2-core machine)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(nproc: int, script: str | Path, *args: str) -> list[str]:
    """``python script args`` for 1 process, ``torchrun --nproc_per_node N script args`` for more."""
    if nproc == 1:
        return [sys.executable, str(script), *args]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    return [*launcher, "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script), *args]


def run(
    nproc: int, script: str | Path, *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``command(...)`` in the repository with captured text output."""
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run(command(nproc, script, *args), cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
