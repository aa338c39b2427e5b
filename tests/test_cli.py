"""The ``detector`` command: subcommand dispatch, one-line errors, ``detector config``."""

import subprocess
import sys
from pathlib import Path

import yaml

from detector.cli import main
from detector.commands import COMMANDS
from detector.config import load_config

REPO = Path(__file__).resolve().parents[1]
TOOLS = {"check-data": "check_dataset", "browse": "browse_dataset"}


def test_help_lists_every_subcommand(capsys):
    assert main([]) == 0
    shown = capsys.readouterr().out
    for name in COMMANDS:
        assert f"\n  {name} " in shown
    assert set(COMMANDS) == {
        "train", "eval", "predict", "track", "export", "align", "prune", "quantize", "summary", "check-data", "browse",
        "eval-mot", "make-synthetic", "config",
    }  # fmt: skip


def test_every_tool_script_is_a_shim_onto_its_subcommand():
    for name, (module, _) in COMMANDS.items():
        if name == "config":
            continue
        script = REPO / "tools" / f"{TOOLS.get(name, module)}.py"
        assert f"from detector.commands.{module} import main" in script.read_text(), script


def test_unknown_command_suggests(capsys):
    assert main(["trian"]) == 2
    assert capsys.readouterr().err == "error: unknown command 'trian'; did you mean 'train'?\n"


def test_config_prints_the_full_config_that_loads_back(capsys, tmp_path):
    assert main(["config", "yolox_nano_shapes", "--set", "train.epochs=3"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == load_config("yolox_nano_shapes", ["train.epochs=3"])
    assert printed["train"]["epochs"] == 3 and printed["train"]["max_bad_steps"] == 10  # a default, filled in
    assert main(["config", "--describe"]) == 0
    table = capsys.readouterr().out
    assert "| train.epochs | an integer | 100 | training epochs |" in table


def test_config_typo_is_one_line_exit_2(capsys):
    assert main(["config", "yolox_nano_shapes", "--set", "train.epoch=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "did you mean 'train.epochs'?" in err


def test_train_typo_stops_before_any_data_is_read(tmp_path):
    """In an empty folder the configured data do not exist: the typo must be the error."""
    done = subprocess.run(
        [sys.executable, "-m", "detector", "train", "yolox_nano_shapes", "--set", "train.epoch=3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().endswith("train.epoch: unknown key; did you mean 'train.epochs'?")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_set_is_repeatable(capsys):
    """``--set A --set B C``: every override counts (argparse alone keeps only the last --set)."""
    assert main(["config", "yolox_nano_shapes", "--set", "train.epochs=3", "--set", "train.seed=7",
                 "distill.weight_schedule=cosine"]) == 0  # fmt: skip
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert (cfg["train"]["epochs"], cfg["train"]["seed"], cfg["distill"]["weight_schedule"]) == (3, 7, "cosine")
