"""Loading a model file or checkpoint never runs code from it (weights_only loading).

Each crafted file holds a pickled ``os.system`` call that would create a marker file; every
loading path must refuse it with one clear message, and the marker must never appear.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dfkd_lib.checkpoint import CheckpointError, UnsafeCheckpointError, load_model, safe_load, save_model
from dfkd_lib.models import cifar_resnet
from dfkd_lib.pretrained import load_pretrained, load_teacher
from dfkd_lib.train import config_for, train

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


class _Payload:
    """Unpickling this calls ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _model_file(path: Path, **extra) -> None:
    state = {k: v for k, v in cifar_resnet(8).state_dict().items()}
    obj = {"format": "dfkd_lib.model", "version": 1, "arch": "resnet8", "num_classes": 10, "state_dict": state,
           "meta": {}}  # fmt: skip
    for where, value in extra.items():
        if where == "meta":
            obj["meta"] = {"note": value}
        else:
            obj["state_dict"]["conv1.weight"] = value
    torch.save(obj, path)


@pytest.fixture
def crafted(tmp_path):
    """Three crafted files (metadata, state dict, a training checkpoint's RNG state) and the marker."""
    marker = tmp_path / "marker"
    payload = _Payload(f"touch {marker}")
    _model_file(tmp_path / "meta.pt", meta=payload)
    _model_file(tmp_path / "state.pt", state=payload)
    # a real training checkpoint, then its RNG state replaced by the payload
    run = tmp_path / "run"
    cfg = config_for("scratch", dataset="synthetic", synthetic_per_class=10, epochs=1, batch_size=50, device="cpu",
                     out_dir=str(run))  # fmt: skip
    train(cfg, progress=False, verbose=False)
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    ck["rng"]["numpy"] = payload
    torch.save(ck, run / "checkpoint.pt")
    return {"meta": tmp_path / "meta.pt", "state": tmp_path / "state.pt", "run": run, "marker": marker, "cfg": cfg}


def test_a_crafted_file_runs_nothing_through_any_python_loading_path(crafted):
    files = [crafted["meta"], crafted["state"], crafted["run"] / "checkpoint.pt"]
    for path in files:
        for load in (safe_load, load_model, load_teacher):
            with pytest.raises(UnsafeCheckpointError, match="may be unsafe") as err:
                load(str(path))
            assert str(path) in str(err.value)
            assert isinstance(err.value, CheckpointError)  # callers that catch CheckpointError still do
    # resuming the run whose checkpoint's RNG state was replaced
    with pytest.raises(UnsafeCheckpointError, match="may be unsafe"):
        train(config_for(**{**crafted["cfg"].to_dict(), "resume": True}), progress=False, verbose=False)
    # and as a teacher
    cfg = config_for("kd", teacher=str(crafted["meta"]), dataset="synthetic", synthetic_per_class=10, epochs=1,
                     batch_size=50, device="cpu")  # fmt: skip
    with pytest.raises(UnsafeCheckpointError):
        train(cfg, progress=False, verbose=False)
    assert not crafted["marker"].exists()


def test_the_command_line_refuses_a_crafted_file_in_one_line(crafted, tmp_path):
    commands = [
        ["evaluate", "--model", str(crafted["meta"]), "--dataset", "cifar10"],
        ["train", "--method", "kd", "--teacher", str(crafted["state"]), "--dataset", "synthetic", "--epochs", "1",
         "--out", str(tmp_path / "kd")],
        ["train", "--method", "scratch", "--dataset", "synthetic", "--synthetic-per-class", "10", "--epochs", "1",
         "--batch-size", "50", "--device", "cpu", "--out", str(crafted["run"]), "--resume"],
    ]  # fmt: skip
    for args in commands:
        proc = subprocess.run([sys.executable, "-m", "dfkd_lib", *args], env=ENV, capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "may be unsafe" in lines[0], proc.stderr
    assert not crafted["marker"].exists()


def test_the_projects_own_files_still_load(tmp_path):
    teacher = load_pretrained("resnet26_cifar10")
    assert teacher.depth == 26 and teacher.meta["test_acc"] > 80
    save_model(cifar_resnet(8), tmp_path / "m.pt", note="plain metadata", numbers=[1, 2.5], nested={"a": None})
    m = load_model(tmp_path / "m.pt")
    assert m.meta == {"note": "plain metadata", "numbers": [1, 2.5], "nested": {"a": None}}


def test_a_file_that_is_not_a_checkpoint_is_still_called_corrupt(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match="corrupt or truncated") as err:
        safe_load(bad)
    assert not isinstance(err.value, UnsafeCheckpointError)
