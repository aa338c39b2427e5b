"""NaNs on one rank of a distributed run (2 processes, gloo, launched by torchrun): every rank
skips the step together, the ranks stay equal, the log names the rank and its images, and
NaNs in a row stop all ranks with that diagnostic, keeping the checkpoints already written.
(One process: tests/engine/test_trainer.py.)"""

import re
import time
from pathlib import Path

import pytest
import torch
from tool_runs import run, write_shapes_config

from detector.utils.checkpoint import load_checkpoint

SCRIPT = Path(__file__).with_name("ddp_nan_on_rank1.py")


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    # 8 images, 4 per step over 2 processes: 2 iterations per epoch, 4 in the run.
    return write_shapes_config(
        tmp_path_factory.mktemp("nan"), num_train=8, num_val=2, image_size=64, seed=7,
        data={"batch_size": 4, "num_workers": 0},
        train={"epochs": 2, "no_aug_epochs": 0, "eval_interval": 100},
    )  # fmt: skip


def launch(config: Path, name: str, fault: str, iterations: str, out: Path, *overrides: str):
    out.mkdir(parents=True, exist_ok=True)
    env = {"NAN_FAULT": fault, "NAN_ITERATIONS": iterations, "NAN_OUT": str(out)}
    args = [str(config), "--device", "cpu", "--no-progress", "--set", f"train.name={name}", *overrides]
    return run(2, SCRIPT, *args, env=env, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["input", "loss", "gradient"])
def test_a_nan_on_one_rank_skips_the_step_on_all_ranks(config, tmp_path, fault):
    done = launch(config, f"nan_{fault}", fault, "1", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = config.parent / "runs" / f"nan_{fault}"
    state = load_checkpoint(run_dir / "weights" / "last.pt")
    assert state["iteration"] == 4 and state["skipped_steps"] == 1

    # Both ranks skipped the same step: their trained weights are still bitwise equal, finite.
    weights = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for name, value in weights[0].items():
        if "running_" not in name and "num_batches" not in name:  # BatchNorm statistics are per rank
            assert torch.equal(value, weights[1][name]), name
            assert torch.isfinite(value).all(), name

    warnings = [line for line in (run_dir / "train.log").read_text().splitlines() if "step skipped" in line]
    assert len(warnings) == 1, warnings
    if fault == "gradient":
        # After DDP's all-reduce every rank holds the NaN: the step's images of both are named.
        assert re.search(r"iteration 1: non-finite gradients, step skipped \(rank 0 image ids \[\d+(, \d+)*\]; "
                         r"rank 1 image ids \[\d+(, \d+)*\]\)", warnings[0]), warnings[0]  # fmt: skip
    else:
        part = "input images or boxes" if fault == "input" else "iou loss"
        assert re.search(rf"iteration 1: non-finite {part}, step skipped \(rank 1 image ids \[\d+, \d+\]\)$",
                         warnings[0]), warnings[0]  # fmt: skip


@pytest.mark.slow
def test_nans_in_a_row_on_one_rank_stop_all_ranks_with_the_diagnostic(config, tmp_path):
    start = time.monotonic()
    done = launch(config, "nan_stop", "input", "2-", tmp_path, "train.max_bad_steps=2")
    assert done.returncode != 0, done.stderr[-3000:]  # torchrun's own code; the ranks' is 2:
    assert re.search(r"exitcode\s*: 2", done.stderr), done.stderr[-3000:]
    diagnostic = re.compile(
        r"error \(rank [01]\): non-finite input images or boxes for 2 steps in a row "
        r"\(last batch: rank 1 image ids \[\d+, \d+\]\); check these images"
    )
    assert len(diagnostic.findall(done.stderr)) == 2, done.stderr[-3000:]  # each rank says why it stopped
    # A diagnosis, not a crash: no traceback from the ranks (torchrun prints its own summary).
    assert "trainer.py" not in done.stderr, done.stderr[-3000:]
    assert time.monotonic() - start < 240  # no rank waited out the collective timeout
    log = (config.parent / "runs" / "nan_stop" / "train.log").read_text()
    assert "training stopped: non-finite input images or boxes for 2 steps in a row" in log
    # The first epoch's checkpoint (iterations 0 and 1) is intact; epoch 2 never completed.
    state = load_checkpoint(config.parent / "runs" / "nan_stop" / "weights" / "last.pt")
    assert state["epoch"] == 1 and state["iteration"] == 2
