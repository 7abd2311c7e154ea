import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dfkd_lib.checkpoint import save_model
from dfkd_lib.cli import build_config, main, make_parser
from dfkd_lib.data import get_loaders
from dfkd_lib.models import cifar_resnet
from dfkd_lib.train import evaluate

ROOT = Path(__file__).resolve().parent.parent


def run(*args):
    return subprocess.run([sys.executable, "-m", "dfkd_lib", *args], capture_output=True, text=True, cwd=ROOT)


def test_help_lists_methods():
    out = run("train", "--help").stdout
    assert "adv-dense" in out and "--lambda-flow" in out and "--resume" in out


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "--bogus", "1"], "unrecognized arguments: --bogus"),
        (["train", "--method", "magic"], "invalid choice: 'magic'"),
        (["train", "--method", "kd"], "needs a teacher"),
        (["train", "--lr", "-1"], "invalid lr"),
        (["train", "--epochs", "two"], "argument --epochs: invalid int value"),
        (["train", "--config", "/nonexistent.yaml"], "config file /nonexistent.yaml does not exist"),
        (["evaluate", "--model", "nonexistent_teacher"], "neither a file nor a pretrained name"),
        (["evaluate", "--model", "tests"], "is a folder, not a model file"),
    ],
)
def test_invalid_input_gives_one_line_error(args, needle):
    proc = run(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_yaml_config_and_flag_override(tmp_path):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("method: adv-dense\nteacher: t.pt\nlambda-adv: 0.5\nepochs: 3\npairs: 0-1,0-3\n")
    args = make_parser().parse_args(["train", "--config", str(cfg_file), "--epochs", "7"])
    cfg = build_config(args)
    assert cfg.method == "adv-dense" and cfg.lambda_adv == 0.5 and cfg.epochs == 7
    assert cfg.pairs == [[0, 1], [0, 3]]
    assert cfg.out_dir == "runs/adv-dense-resnet8-cifar10-s0"
    cfg_file.write_text("colour: red\n")
    with pytest.raises(ValueError, match="unknown option"):
        build_config(make_parser().parse_args(["train", "--config", str(cfg_file)]))


def test_yaml_numbers_without_a_dot_and_bad_values(tmp_path):
    """YAML reads 1e-3 as a string; the config file's values get the options' types."""
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("method: adv\nteacher: t.pt\nlr: 1e-3\nlambda_adv: 1e-2\nd_betas: [0.5, 9.99e-1]\nepochs: 3\n")
    cfg = build_config(make_parser().parse_args(["train", "--config", str(cfg_file)]))
    assert cfg.lr == 0.001 and cfg.lambda_adv == 0.01 and cfg.d_betas == (0.5, 0.999) and cfg.epochs == 3
    cfg_file.write_text("epochs: 1.5\n")
    with pytest.raises(ValueError, match=r"invalid epochs in .*run.yaml: 1.5 \(must be int\)"):
        build_config(make_parser().parse_args(["train", "--config", str(cfg_file)]))
    cfg_file.write_text("lr: fast\n")
    proc = run("train", "--config", str(cfg_file))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"python -m dfkd_lib train: error: invalid lr in {cfg_file}: 'fast' (must be float)"
    ]


def test_a_loss_that_blows_up_ends_the_command_with_one_line(tmp_path):
    proc = run("train", "--method", "scratch", "--dataset", "synthetic", "--synthetic-per-class", "20",
               "--epochs", "2", "--batch-size", "50", "--lr", "1e30", "--device", "cpu", "--out", str(tmp_path / "r"))  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 3, proc.stderr
    assert len(lines) == 1 and "stopped: loss term 'ce' became" in lines[0]


def test_train_teacher_command_runs(tmp_path, capsys):
    out = tmp_path / "t"
    rc = main(
        [
            "train-teacher",
            "--arch",
            "resnet8",
            "--dataset",
            "synthetic",
            "--synthetic-per-class",
            "20",
            "--epochs",
            "1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0 and (out / "model.pt").exists()
    assert "epoch 1/1 | ce " in capsys.readouterr().out


def test_train_teacher_respects_the_config_file(tmp_path):
    cfg_file = tmp_path / "teacher.yaml"
    cfg_file.write_text(
        f"student: resnet14\ndataset: synthetic\nsynthetic_per_class: 10\nepochs: 1\nbatch_size: 30\n"
        f"out_dir: {tmp_path / 'tt'}\n"
    )
    assert main(["train-teacher", "--config", str(cfg_file)]) == 0
    from dfkd_lib.checkpoint import load_model

    assert load_model(tmp_path / "tt" / "model.pt").depth == 14


def test_evaluate_prints_the_accuracy_that_evaluate_measures(cifar, tmp_path):
    torch.manual_seed(0)
    model = cifar_resnet(8)
    save_model(model, tmp_path / "m.pt")
    proc = run("evaluate", "--model", str(tmp_path / "m.pt"), "--split", "val", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    want = evaluate(model.eval(), get_loaders(cifar).val)  # the same split of the same data
    assert got["split"] == "val" and got["accuracy"] == round(want["acc"], 2) and got["loss"] == round(want["loss"], 4)
    save_model(cifar_resnet(8, 100), tmp_path / "m100.pt")
    proc = run("evaluate", "--model", str(tmp_path / "m100.pt"), "--device", "cpu")
    assert proc.returncode == 2 and "the model has 100 classes but cifar10 has 10" in proc.stderr
