import os
import pickle

import pytest
import torch

from detector.errors import CheckpointError
from detector.utils.checkpoint import load_checkpoint, save_checkpoint


def test_round_trip_and_no_temp_left(tmp_path):
    state = {"model": {"w": torch.arange(4.0)}, "epoch": 3, "names": ["a", "b"]}
    path = save_checkpoint(state, tmp_path / "weights" / "last.pt")
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and loaded["epoch"] == 3
    assert os.listdir(path.parent) == ["last.pt"]


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = save_checkpoint({"epoch": 1}, tmp_path / "last.pt")

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]


def test_truncated_file_is_reported(tmp_path):
    path = save_checkpoint({"model": {"w": torch.zeros(1000)}}, tmp_path / "last.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"last.pt: not a readable checkpoint"):
        load_checkpoint(path)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with path.open("wb") as f:
        pickle.dump({"model": Payload()}, f)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)
