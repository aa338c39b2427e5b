"""The run folder: its name, the checkpoint a resumed run starts from, ``train.log``, and its
removal when a run fails to start."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from detector.config_sections import TrainConfig
from detector.engine.distributed import broadcast_object


def unique_run_dir(root: Path, name: str) -> Path:
    """``root/name``, or ``root/name_2``, ``_3``... when it already exists."""
    path, n = root / name, 2
    while path.exists():
        path, n = root / f"{name}_{n}", n + 1
    return path


class RunFolder:
    """Where a run writes: ``path`` (``config.yaml``, ``metrics.csv``, ``train.log``,
    ``plots/``, ``predictions/``) and ``weights`` (``last.pt``, ``last.prev.pt``, ``best.pt``).

    ``resume``: None or False for a new run; True (or ``""``) for the last checkpoint of the
    run named by ``train.name`` (or ``config_name``); or a checkpoint path, whose run folder is
    used. ``run_dir`` fixes the folder of a new run; otherwise rank 0 picks the next free
    ``train.output_dir/NAME[_N]`` and tells the other ranks. Files are written by rank 0 only.
    """

    def __init__(
        self,
        train_cfg: TrainConfig,
        config_name: str,
        is_main: bool,
        resume: str | Path | bool | None = None,
        run_dir: str | Path | None = None,
    ) -> None:
        self.is_main = is_main
        name = train_cfg.name or config_name
        if resume in (None, False):
            self.resume_path: Path | None = None
        elif resume is True or resume == "":
            self.resume_path = Path(train_cfg.output_dir) / name / "weights" / "last.pt"
        else:
            self.resume_path = Path(resume)
        if self.resume_path is not None:
            self.path = self.resume_path.parent.parent
        elif run_dir is not None:
            self.path = Path(run_dir)
        else:
            # Rank 0 picks the next free name; the others must not race it to the folder.
            root = Path(train_cfg.output_dir)
            self.path = broadcast_object(unique_run_dir(root, name) if is_main else None)
        self.weights = self.path / "weights"
        self._created = is_main and not self.path.exists()
        if is_main:
            self.weights.mkdir(parents=True, exist_ok=True)
        self.logger = logging.getLogger(f"detector.train.{id(self)}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        if is_main:
            handler: logging.Handler = logging.FileHandler(self.path / "train.log")
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            # Data problems (broken images, bad boxes) are logged by the datasets: into train.log too.
            logging.getLogger("detector.data").addHandler(handler)
        else:  # what the other ranks see reaches rank 0's log through collectives
            handler = logging.NullHandler()
        self.logger.addHandler(handler)
        self._handler = handler

    def detach_data_log(self) -> None:
        """Stop sending the datasets' warnings to this run's ``train.log`` (the run ended)."""
        logging.getLogger("detector.data").removeHandler(self._handler)

    def abandon(self) -> None:
        """A run that could not start: close ``train.log`` and remove the folder if this run
        made it, so that no empty folder pushes the next run to ``NAME_2``."""
        self.detach_data_log()
        self.logger.removeHandler(self._handler)
        self._handler.close()
        if self._created:
            shutil.rmtree(self.path, ignore_errors=True)
