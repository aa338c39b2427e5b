"""Interrupted runs: training killed with SIGKILL at random moments and resumed ends with the
weights of an uninterrupted run; a truncated checkpoint falls back to the one before it."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tool_runs import write_shapes_config

from detector.errors import CheckpointError
from detector.utils.checkpoint import load_checkpoint, load_checkpoint_or_previous, previous_path

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 6


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    return write_shapes_config(
        tmp_path_factory.mktemp("killed"), num_train=12, num_val=3, image_size=64, seed=2,
        data={"batch_size": 4, "num_workers": 0},
        train={"epochs": EPOCHS, "no_aug_epochs": 1, "eval_interval": 2},
    )  # fmt: skip


def train_command(config: Path, name: str, resume: Path | None = None) -> list[str]:
    command = [sys.executable, "tools/train.py", str(config), "--device", "cpu", "--no-progress"]
    return [*command, *(["--resume", str(resume)] if resume else []), "--set", f"train.name={name}"]


def run_to_end(command: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def start_training(config: Path, name: str, resume: Path | None) -> tuple[subprocess.Popen, float]:
    """A training process (own process group) and the moment its trainer was set up (the
    ``run folder:`` line), so that kills land in training rather than in Python's start-up."""
    launch = subprocess.Popen(train_command(config, name, resume), cwd=REPO, start_new_session=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    for line in launch.stdout:
        if line.startswith("run folder:"):
            break
    return launch, time.monotonic()


def assert_identical(a: dict, b: dict) -> None:
    for key in ("train_model", "model"):
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), f"{key}.{name}"
    assert a["iteration"] == b["iteration"] and a["epoch"] == b["epoch"]


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_ends_with_the_uninterrupted_weights(config):
    runs = config.parent / "runs"
    launch, started = start_training(config, "straight", None)
    assert launch.wait(timeout=600) == 0
    training_time = time.monotonic() - started  # from the trainer's start to the end
    straight = load_checkpoint(runs / "straight" / "weights" / "last.pt")

    rng = random.Random(2026)
    attempt, kills = 0, []

    def last_of(attempt: int) -> Path:
        return runs / f"killed{attempt}" / "weights" / "last.pt"

    def saved_epoch(last: Path) -> int:
        return load_checkpoint_or_previous(last)[0]["epoch"] if last.exists() or previous_path(last).exists() else 0

    while len(kills) < 5:
        last = last_of(attempt)
        before = saved_epoch(last)
        resume = last if before else None  # killed before any checkpoint: start again, as a user would
        launch, _ = start_training(config, f"killed{attempt}", resume)
        # A random moment of what is left of the training (the epochs not saved yet).
        time.sleep(rng.uniform(0.0, 0.8 * training_time * (EPOCHS - before) / EPOCHS))
        finished = launch.poll() is not None
        os.killpg(launch.pid, signal.SIGKILL)
        launch.wait()
        after = saved_epoch(last)
        assert after >= before  # nothing saved before is lost
        if finished or after == EPOCHS:
            break
        kills.append(after)
        if not after:
            attempt += 1
    last = last_of(attempt)
    if saved_epoch(last) < EPOCHS:
        run_to_end(train_command(config, f"killed{attempt}", last if saved_epoch(last) else None))
    assert_identical(straight, load_checkpoint(last))
    print(f"{len(kills)} kills (-9) with {kills} of {EPOCHS} epochs saved; resumed to the uninterrupted weights")


def test_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path):
    last = tmp_path / "last.pt"
    torch.save({"epoch": 1}, previous_path(last))
    torch.save({"epoch": 2}, last)
    last.write_bytes(last.read_bytes()[:40])
    state, used, why = load_checkpoint_or_previous(last)
    assert state["epoch"] == 1 and used == previous_path(last) and "not a readable checkpoint" in why
    previous_path(last).write_bytes(b"")
    with pytest.raises(
        CheckpointError, match=r"last\.pt: not a readable checkpoint.*the previous one: .*last\.prev\.pt"
    ):
        load_checkpoint_or_previous(last)


@pytest.mark.slow
def test_resume_from_a_truncated_last_checkpoint_uses_the_previous_and_says_so(config):
    runs = config.parent / "runs"
    run_to_end(train_command(config, "truncated"))
    last = runs / "truncated" / "weights" / "last.pt"
    assert load_checkpoint(previous_path(last))["epoch"] == EPOCHS - 1  # the last 2 are kept
    last.write_bytes(last.read_bytes()[:1000])  # a copy cut short
    done = run_to_end(train_command(config, "truncated", last))
    assert "resuming from the previous checkpoint" in done.stdout + done.stderr
    assert load_checkpoint(last)["epoch"] == EPOCHS
    previous_path(last).write_bytes(b"garbage")
    last.write_bytes(b"garbage")
    failed = subprocess.run(train_command(config, "truncated", last), cwd=REPO, capture_output=True, text=True)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert failed.stderr.strip().splitlines()[-1].startswith("error: ")
