"""Running the tools the way a user does: a config for a generated shapes set, and launches
plainly for 1 process or through torchrun for more (2 processes with gloo on CPU, one thread
each on this 2-core machine)."""

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from detector.config import dump_config, load_config
from detector.data.synthetic import coco_split_configs, generate_synthetic_coco

REPO = Path(__file__).resolve().parents[1]


def write_shapes_config(
    root: Path, num_train: int, num_val: int, image_size: int, seed: int, name: str = "config", **sections: Any
) -> Path:
    """``configs/yolox_nano_shapes.yaml`` trained on a shapes set generated under ``root/shapes``
    (at ``imgsz`` = ``image_size``), runs in ``root/runs``, each of ``sections`` (e.g.
    ``data={...}``, ``train={...}``) updated into that section; written to ``root/NAME.yaml``."""
    shapes = generate_synthetic_coco(root / "shapes", num_train=num_train, num_val=num_val, image_size=image_size,
                                     seed=seed)  # fmt: skip
    cfg = load_config(REPO / "configs" / "yolox_nano_shapes.yaml")
    cfg["data"].update(**coco_split_configs(shapes), imgsz=image_size)
    cfg["train"]["output_dir"] = str(root / "runs")
    for section, values in sections.items():
        cfg[section].update(values)
    path = root / f"{name}.yaml"
    dump_config(cfg, path)
    return path


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
