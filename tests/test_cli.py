import json

import pytest
import torch

from dfkd_lib.checkpoint import load_model, save_model
from dfkd_lib.cli import build_config, main, make_parser
from dfkd_lib.data import get_loaders
from dfkd_lib.models import cifar_resnet
from dfkd_lib.train import evaluate

from helpers import dfkd


def test_a_run_folder_in_use_is_an_error_message_not_a_traceback(tmp_path, capsys, folder_held):
    with folder_held(tmp_path):
        code = main(["train", "--method", "scratch", "--dataset", "synthetic", "--synthetic-per-class", "10",
                     "--epochs", "1", "--batch-size", "50", "--device", "cpu", "--out", str(tmp_path), "--resume"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and f"train: error: {tmp_path} is in use by another training process" in err
    assert "Traceback" not in err


def test_help_lists_methods():
    out = dfkd("train", "--help").stdout
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
        (
            ["evaluate", "--model", "nonexistent_teacher"],
            "--model 'nonexistent_teacher' is neither a file nor a pretrained",
        ),
        (["evaluate", "--model", "tests"], "--model 'tests' is a folder, not a model file"),
        (["evaluate", "--model", "resnet26_cifar10", "--device", "tpu"], "--device tpu: unknown device; use auto, cpu"),
        (["evaluate", "--model", "resnet26_cifar10", "--device", "cuda:x"], "--device cuda:x: unknown device"),
        (["train", "--device", "cuda:x"], "--device cuda:x: unknown device; use auto, cpu, cuda, cuda:N or mps"),
    ],
)
def test_invalid_input_gives_one_line_error(args, needle):
    proc = dfkd(*args)
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
    proc = dfkd("train", "--config", str(cfg_file))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"python -m dfkd_lib train: error: invalid lr in {cfg_file}: 'fast' (must be float)"
    ]


def test_a_loss_that_blows_up_ends_the_command_with_one_line(tmp_path):
    proc = dfkd("train", "--method", "scratch", "--dataset", "synthetic", "--synthetic-per-class", "20",
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
    model = load_model(out / "model.pt")  # --arch was used: not the default resnet26
    assert model.depth == 8 and json.loads((out / "config.json").read_text())["method"] == "scratch"


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
    proc = dfkd("evaluate", "--model", str(tmp_path / "m.pt"), "--split", "val", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    want = evaluate(model.eval(), get_loaders(cifar).val)  # the same split of the same data
    assert got["split"] == "val" and got["accuracy"] == round(want["acc"], 2) and got["loss"] == round(want["loss"], 4)
    save_model(cifar_resnet(8, 100), tmp_path / "m100.pt")
    proc = dfkd("evaluate", "--model", str(tmp_path / "m100.pt"), "--device", "cpu")
    assert proc.returncode == 2 and "the model has 100 classes but cifar10 has 10" in proc.stderr


@pytest.mark.parametrize("command", [["evaluate", "--model", "resnet26_cifar10"], ["train"], ["train-teacher"]])
def test_a_cuda_device_that_is_not_there_is_a_one_line_error(command, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main([*command, "--device", "cuda"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"python -m dfkd_lib {command[0]}: error: --device cuda: no CUDA device is available here; "
        "use --device auto or cpu"
    ]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main([*command, "--device", "cuda:3"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda:3: this machine has 1 CUDA device(s), cuda:0 to cuda:0" in err and len(err.splitlines()) == 1


def test_a_device_from_the_config_file_is_checked_too(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("device: cuda\ndataset: synthetic\n")
    assert main(["train", "--config", str(cfg_file), "--out", str(tmp_path / "r")]) == 2
    assert f"error: device 'cuda' in {cfg_file}: no CUDA device is available here" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_malformed_yaml_is_one_line_naming_the_file_and_line(tmp_path, capsys):
    cfg_file = tmp_path / "bad.yaml"
    cfg_file.write_text("method: kd\nepochs: [1\n")
    assert main(["train", "--config", str(cfg_file)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"python -m dfkd_lib train: error: cannot parse {cfg_file}: expected ',' or ']', but got '<stream end>' "
        "(line 3, column 1), while parsing a flow sequence begun on line 2"
    ]
    cfg_file.write_text("epochs: 1\nlr: a: b\n")
    with pytest.raises(ValueError, match=r"cannot parse .*bad.yaml: mapping values are not allowed here \(line 2, "):
        build_config(make_parser().parse_args(["train", "--config", str(cfg_file)]))


def test_resume_says_how_and_says_when_nothing_is_left(tmp_path, capsys):
    out = tmp_path / "x"
    flags = ["--method", "scratch", "--student", "resnet8", "--dataset", "synthetic", "--synthetic-per-class", "10",
             "--epochs", "1", "--batch-size", "50", "--device", "cpu"]  # fmt: skip
    assert main(["train", *flags, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume"]) == 2  # the original flags not repeated
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"cannot resume {out / 'checkpoint.pt'}: its config differs in" in err[0]
    assert err[0].endswith(
        f"; to resume, repeat the run's original flags or pass --config {out / 'config.json'} --resume"
    )
    for again in (["--config", str(out / "config.json")], flags):  # both ways the message offers
        assert main(["train", *again, "--out", str(out), "--resume"]) == 0
        assert capsys.readouterr().out.splitlines() == ["run already complete (1/1 epochs): nothing to do"]


def test_evaluate_documents_its_flags_and_offers_only_those_it_has(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--dataset {cifar10,cifar100} the data set (default cifar10)" in text  # not synthetic: no file to test on
    assert "--data-dir DATA_DIR folder holding cifar10.npz" in text
    assert "--device DEVICE auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps (default auto)" in text
    assert "--download let torchvision download the data set" in text
    save_model(cifar_resnet(8), tmp_path / "m.pt")
    monkeypatch.setattr("dfkd_lib.data.candidate_dirs", lambda root=None: [tmp_path / "empty"])
    assert main(["evaluate", "--model", str(tmp_path / "m.pt"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "cifar10 not found" in err[0], err
    assert err[0].endswith("or pass download=True (--download) when online.")  # a flag evaluate has


def test_ctrl_c_says_whether_there_is_a_checkpoint_to_resume_from(tmp_path, monkeypatch, capsys):
    import dfkd_lib.cli as cli

    def interrupted(args, cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run_training", interrupted)
    out = tmp_path / "run"
    args = ["train", "--method", "scratch", "--dataset", "synthetic", "--epochs", "1", "--out", str(out)]
    assert main(args) == 130
    assert "no epoch had finished in a run folder: nothing to resume" in capsys.readouterr().err
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"")  # what a finished epoch leaves
    assert main(args) == 130
    err = capsys.readouterr().err
    assert f"the last finished epoch is in {out / 'checkpoint.pt'}" in err and "--resume" in err
