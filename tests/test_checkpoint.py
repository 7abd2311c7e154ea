"""Loading a model file or checkpoint never runs code from it (weights_only loading).

Each crafted file holds a pickled ``os.system`` call that would create a marker file; every
loading path must refuse it with one clear message, and the marker must never appear.
"""

import os
import re
from pathlib import Path

import pytest
import torch

import dfkd_lib
from dfkd_lib.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    atomic_save,
    atomic_write_text,
    check_training_checkpoint,
    load_model,
    safe_load,
    save_model,
)
from dfkd_lib.models import cifar_resnet
from dfkd_lib.pretrained import load_pretrained, load_teacher
from dfkd_lib.train import config_for, train

from helpers import dfkd


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
def crafted(tmp_path, crafted_payload):
    """Three crafted files (metadata, state dict, a training checkpoint's RNG state) and the marker."""
    marker = tmp_path / "marker"
    payload = crafted_payload(marker)
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
        proc = dfkd(*args)
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
    with pytest.raises(CheckpointError, match="corrupt, truncated or another format") as err:
        safe_load(bad)
    assert not isinstance(err.value, UnsafeCheckpointError)


NOT_A_CHECKPOINT = "is not a PyTorch checkpoint (corrupt, truncated or another format"  # then torch's reason, if any


def test_a_damaged_file_gets_one_line_and_never_torchs_advice(tmp_path):
    """Random bytes, text, an empty file: one line of ours with torch's reason, never its advice to
    retry with ``weights_only=False``."""
    noise = torch.randint(0, 256, (1000,), generator=torch.Generator().manual_seed(0))
    files = {"garbage.pt": bytes(noise.tolist()), "text.pt": b"epoch 1 of 10\n", "empty.pt": b""}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        for load in (safe_load, load_model, load_teacher):
            with pytest.raises(CheckpointError) as err:
                load(str(tmp_path / name))
            msg = str(err.value)
            assert msg.startswith(f"{tmp_path / name} {NOT_A_CHECKPOINT}") and msg.endswith(
                "re-download or re-train it"
            )
            assert "\n" not in msg and "weights_only" not in msg, msg
            assert not isinstance(err.value, UnsafeCheckpointError)
    proc = dfkd("evaluate", "--model", tmp_path / "garbage.pt")
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"python -m dfkd_lib evaluate: error: {tmp_path / 'garbage.pt'} {NOT_A_CHECKPOINT}")


def _fields(**change) -> dict:
    obj = {"format": "dfkd_lib.model", "version": 1, "arch": "resnet8", "num_classes": 10,
           "state_dict": cifar_resnet(8).state_dict(), "meta": {}}  # fmt: skip
    obj.update(change)
    return {k: v for k, v in obj.items() if v is not ...}  # ... deletes the field


def _checkpoint(tmp_path, **change) -> dict:
    cfg = config_for("scratch", dataset="synthetic", synthetic_per_class=10, epochs=1, batch_size=50, device="cpu",
                     out_dir=str(tmp_path / "run"))  # fmt: skip
    if not (tmp_path / "run" / "checkpoint.pt").exists():
        train(cfg, progress=False, verbose=False)
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    ck.update(change)
    return {k: v for k, v in ck.items() if v is not ...}


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"arch": ..., "num_classes": ..., "state_dict": ..., "meta": ...}, "field 'arch' is missing"),
        ({"arch": "vgg11"}, "field 'arch' names no network dfkd_lib builds: unknown model name 'vgg11'"),
        ({"arch": 8}, "field 'arch' is 8, not a string"),
        ({"num_classes": "10"}, "field 'num_classes' is '10', not an integer"),
        ({"state_dict": None}, "field 'state_dict' is None, not a dict"),
        ({"state_dict": ...}, "field 'state_dict' is missing"),
        ({"meta": [1]}, "field 'meta' is list, not a dict"),
    ],
)
def test_a_model_file_with_a_missing_or_wrong_field_names_it(tmp_path, change, needle):
    torch.save(_fields(**change), tmp_path / "m.pt")
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path / "m.pt")
    assert str(err.value).startswith(f"{tmp_path / 'm.pt'}: {needle}"), err.value
    assert "\n" not in str(err.value)


def test_a_training_checkpoint_with_a_missing_or_wrong_field_names_it(tmp_path):
    for change, needle in [({"config": ...}, "field 'config' is missing"),
                           ({"config": {"epochs": 1}}, "field 'config.student' is missing"),
                           ({"student": None}, "field 'student' is None, not a dict"),
                           ({"epoch": -1}, "field 'epoch' is -1, not an integer of at least 0")]:  # fmt: skip
        torch.save(_checkpoint(tmp_path, **change), tmp_path / "ck.pt")
        with pytest.raises(CheckpointError, match="^" + re.escape(f"{tmp_path / 'ck.pt'}: {needle}")):
            load_model(tmp_path / "ck.pt")
        with pytest.raises(CheckpointError, match=re.escape(needle)):
            check_training_checkpoint(safe_load(tmp_path / "ck.pt"), tmp_path / "ck.pt")
    # what resuming reads besides (loading the student alone does not need it)
    for change, needle in [
        ({"scaler": ...}, "field 'scaler' is missing"),
        ({"opt_d": 3}, "field 'opt_d' is 3, not a dict"),
    ]:
        with pytest.raises(CheckpointError, match=re.escape(needle)):
            check_training_checkpoint(_checkpoint(tmp_path, **change), tmp_path / "ck.pt")
    check_training_checkpoint(_checkpoint(tmp_path), tmp_path / "ck.pt")  # a whole one passes
    with pytest.raises(CheckpointError, match="is not a training checkpoint"):
        check_training_checkpoint(_fields(), tmp_path / "m.pt")
    proc = dfkd("evaluate", "--model", tmp_path / "ck.pt")
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and "field 'epoch'" in proc.stderr


@pytest.mark.parametrize("wrapped", [False, True])
def test_a_plain_state_dict_is_refused_with_a_conversion_that_works(tmp_path, monkeypatch, wrapped):
    state = cifar_resnet(14, 100).state_dict()
    torch.save({"state_dict": state} if wrapped else state, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="is not a dfkd_lib model or training checkpoint") as err:
        load_model(tmp_path / "plain.pt")
    msg = str(err.value)
    assert "model_from_name('resnet14', 100)" in msg and "weights_only=False" not in msg
    code = msg.split("Convert it with: ", 1)[1]
    monkeypatch.chdir(tmp_path)
    exec(code, {"dfkd_lib": dfkd_lib, "torch": torch})  # the advice, followed as written
    converted = load_model(tmp_path / "model.pt")
    assert converted.depth == 14 and all(torch.equal(v, state[k]) for k, v in converted.state_dict().items())
    torch.save({"epoch": 3, "note": "x"}, tmp_path / "other.pt")  # a dict, but no weights
    with pytest.raises(CheckpointError, match="no 'format' field; its keys: epoch, note"):
        load_model(tmp_path / "other.pt")
    # weights saved from a wrapped model, and weights of another network: no conversion that would fail
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "ddp.pt")
    with pytest.raises(CheckpointError, match="keys start with 'module.'.*strip that prefix") as err:
        load_model(tmp_path / "ddp.pt")
    assert "Convert it with" not in str(err.value)
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "linear.pt")
    with pytest.raises(CheckpointError, match="not one of dfkd_lib's CIFAR ResNets") as err:
        load_model(tmp_path / "linear.pt")
    assert "Convert it with" not in str(err.value)


def test_files_that_do_not_fit_are_refused_with_what_is_wrong(tmp_path):
    # weights of a ResNet-14 under a ResNet-8's name
    obj = {"format": "dfkd_lib.model", "version": 1, "arch": "resnet8", "num_classes": 10,
           "state_dict": cifar_resnet(14).state_dict(), "meta": {}}  # fmt: skip
    torch.save(obj, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="weights do not fit a resnet8 with 10 classes"):
        load_model(tmp_path / "wrong.pt")
    torch.save({"state_dict": cifar_resnet(8).state_dict()}, tmp_path / "bare.pt")  # no format
    with pytest.raises(CheckpointError, match="not a dfkd_lib model"):
        load_model(tmp_path / "bare.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")  # readable, but not a dict
    with pytest.raises(CheckpointError, match="found Tensor"):
        safe_load(tmp_path / "tensor.pt")
    save_model(cifar_resnet(8), tmp_path / "m.pt")
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])  # a real file, cut short
    with pytest.raises(CheckpointError, match="corrupt, truncated or another format"):
        load_model(tmp_path / "half.pt")


def test_a_training_checkpoint_loads_as_its_student_and_a_model_file_is_no_checkpoint(tmp_path):
    cfg = config_for("scratch", dataset="synthetic", synthetic_per_class=10, batch_size=50, epochs=1,
                     device="cpu", student="resnet8", out_dir=str(tmp_path / "run"))  # fmt: skip
    res = train(cfg, progress=False, verbose=False)
    m = load_model(tmp_path / "run" / "checkpoint.pt")
    assert m.meta == {"epoch": 0}
    assert all(torch.equal(v, res.student.state_dict()[k]) for k, v in m.state_dict().items())
    save_model(cifar_resnet(8), tmp_path / "other" / "checkpoint.pt")  # a model file where a checkpoint goes
    with pytest.raises(CheckpointError, match="is not a training checkpoint"):
        train(config_for(**{**cfg.to_dict(), "out_dir": str(tmp_path / "other"), "resume": True}), progress=False,
              verbose=False)  # fmt: skip


def test_an_interrupted_save_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    atomic_save({"epoch": 1, "w": torch.arange(4.0)}, path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # the usual mode, not mkstemp's private one

    def dies_half_way(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"epoch": 2, "w": torch.zeros(4)}, path)
    monkeypatch.undo()
    old = safe_load(path)
    assert old["epoch"] == 1 and torch.equal(old["w"], torch.arange(4.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]  # no temporary file left behind


def test_text_files_of_a_run_are_replaced_whole(tmp_path):
    """config.json, data.json and the log rewritten on resume go through atomic_write_text (the
    same temporary-file-and-rename as atomic_save): a kill while writing leaves the old file."""
    from dfkd_lib import checkpoint

    path = tmp_path / "log.jsonl"
    atomic_write_text('{"epoch": 1}\n', path)
    assert path.read_text() == '{"epoch": 1}\n'

    def dies_half_way(f):
        f.write(b'{"epoch": 1}\n{"ep')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checkpoint._atomic_write(path, dies_half_way)
    assert path.read_text() == '{"epoch": 1}\n' and sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl"]


def test_a_network_of_other_widths_saves_and_loads_with_them(tmp_path):
    """``CifarResNet(widths=...)`` is public: its file records the widths (a standard network's
    file does not, so the shipped ones are unchanged), and a bad widths field is named."""
    from dfkd_lib.models import CifarResNet

    torch.manual_seed(0)
    narrow = CifarResNet(8, 10, (8, 16, 32))
    save_model(narrow, tmp_path / "narrow.pt")
    back = load_model(tmp_path / "narrow.pt")
    assert back.widths == (8, 16, 32)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(back.eval()(x), narrow.eval()(x), rtol=0, atol=0)
    save_model(CifarResNet(8), tmp_path / "usual.pt")
    assert "widths" not in torch.load(tmp_path / "usual.pt", weights_only=True)
    obj = torch.load(tmp_path / "narrow.pt", weights_only=True)
    obj["widths"] = [8, 16]
    torch.save(obj, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"bad.pt: field 'widths' must be three positive channel counts"):
        load_model(tmp_path / "bad.pt")
