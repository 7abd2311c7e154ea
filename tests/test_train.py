import json
import math
import subprocess
import sys

import pytest
import torch

from dfkd_lib.checkpoint import CheckpointError, ConfigMismatchError, load_model, save_model
from dfkd_lib.data import get_loaders
from dfkd_lib.models import cifar_resnet
from dfkd_lib.train import (
    METHODS,
    NonFiniteLossError,
    Run,
    RunFolderBusyError,
    TrainConfig,
    config_for,
    evaluate,
    train,
)

from helpers import ENV, ROOT, Killed, dfkd, stop_after


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    """A small ResNet-14 'teacher' trained for one epoch on generated data."""
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    res = train(
        config_for("scratch", student="resnet14", dataset="synthetic", synthetic_per_class=20, epochs=1, batch_size=50),
        progress=False,
        verbose=False,
    )
    save_model(res.student, path)
    return str(path)


def small(method, teacher, **kw):
    base = dict(student="resnet8", dataset="synthetic", synthetic_per_class=20, epochs=2, batch_size=50, device="cpu")
    return config_for(method, teacher=teacher if method != "scratch" else None, **{**base, **kw})


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_and_logs(method, teacher_file, tmp_path):
    res = train(small(method, teacher_file, out_dir=str(tmp_path)), progress=False, verbose=False)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(log) == res.config.total_epochs and log == res.history
    rec = log[-1]
    for key in ("loss_total", "train_acc", "val_acc", "test_acc", "wall_s", "images_per_s", "lr"):
        assert type(rec[key]) is float and math.isfinite(rec[key]), key  # present, a number, finite
    assert all(0 <= rec[k] <= 100 for k in ("train_acc", "val_acc", "test_acc"))  # percentages
    assert rec["wall_s"] > 0 and rec["images_per_s"] > 0 and rec["lr"] > 0
    if METHODS[method].uses_adv:
        assert {"loss_adv", "loss_disc", "d_acc_real", "d_acc_fake", "d_logit_real", "d_logit_fake"} <= set(rec)
    if "flow" in METHODS[method].terms:  # (fsp: in its first stage)
        assert log[0]["loss_flow"] > 0 and rec["lambda_flow"] > 0
    if method == "fsp":  # a flow-only stage, then the two cross-entropy epochs that scratch trains
        assert [r["stage"] for r in log] == [1, 2, 2] and "loss_flow" in log[0] and "loss_ce" in log[1]
    # every run with a teacher logs each flow item's distance; scratch here has none
    assert ("flow_dist" in rec) == METHODS[method].needs_teacher
    model = load_model(tmp_path / "model.pt")
    assert model.depth == 8 and model.meta["method"] == method
    # data.json says what the data were and where the run ran
    data = json.loads((tmp_path / "data.json").read_text())
    assert data["synthetic"] and data["batches_per_epoch"] >= 1
    env = data["environment"]
    assert env["device"] == "cpu" and env["world_size"] == 1 and env["torch"] == torch.__version__
    assert env["threads"] == torch.get_num_threads()
    assert env["cpu"] and env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_teacher_stays_frozen(teacher_file):
    """The teacher that trains a student, batch norm statistics included, leaves as it came."""
    teacher = load_model(teacher_file).train()  # even handed over in training mode
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    res = train(small("adv-dense", teacher_file, epochs=1), teacher=teacher, progress=False, verbose=False)
    after = teacher.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert res.discriminators is not None and len(res.discriminators) == 6


def test_short_run_beats_chance_on_real_cifar10(cifar):
    """ResNet-8, 80 batches of 128 with cross-entropy: far above the 10 % of chance on the test set."""
    loaders = get_loaders(cifar, batch_size=128, max_train_batches=80, channels_last=True)
    cfg = config_for("scratch", student="resnet8", epochs=1, lr=0.05, device="cpu")
    res = train(cfg, loaders=loaders, progress=False, verbose=False)
    assert res.history[-1]["test_acc"] > 25.0


def test_labelled_fraction_uses_only_labelled_images_for_ce(teacher_file):
    """2 labels a class are kept, the rest are -1; a step's cross-entropy is the mean over the
    labelled images of its batch only."""
    import copy

    import torch.nn.functional as F

    from dfkd_lib.train import Run

    cfg = small("adv-dense", teacher_file, epochs=1, labelled_fraction=0.1)
    run = Run(cfg, None, load_model(teacher_file), progress=False)
    run.calibrate()
    assert run.loaders.num_labelled == 20  # 10 % of the 18 training images of each class, rounded: 2 a class
    y_all = run.loaders.train.labels  # every training image's label (an epoch drops the last partial batch)
    assert len(y_all) == 180 and int((y_all >= 0).sum()) == 20
    assert torch.bincount(y_all[y_all >= 0], minlength=10).tolist() == [2] * 10
    x, y = next((x, y) for x, y in run.loaders.train if 0 < int((y >= 0).sum()) < len(y))  # labelled and not
    with torch.no_grad():
        logits = copy.deepcopy(run.student).train()(x)
    terms, _ = run.train_step(x, y, run.flags(run.stage(0)))
    want = cfg.ce_weight * F.cross_entropy(logits[y >= 0], y[y >= 0])
    assert float(terms["ce"]) == pytest.approx(float(want), rel=1e-5)
    assert float(want) != pytest.approx(float(cfg.ce_weight * F.cross_entropy(logits, y.clamp(min=0))), rel=1e-3)


def test_unlabelled_images_feed_the_flow_and_adversarial_terms_only(teacher_file):
    """A batch without labels (-1): no cross-entropy, but flow and adversarial terms as usual."""
    from dfkd_lib.train import Run

    torch.manual_seed(0)
    run = Run(small("adv-dense", teacher_file, epochs=1), None, load_model(teacher_file), progress=False)
    run.calibrate()  # the recipe's lambda_flow is measured at the start, as train() does
    x = torch.randn(8, 3, 32, 32).to(memory_format=torch.channels_last)
    terms, _ = run.train_step(x, torch.full((8,), -1), run.flags(0))
    assert float(terms["ce"]) == 0.0 and float(terms["flow"]) > 0 and float(terms["adv"]) > 0


def test_non_finite_loss_stops_with_the_term_named(teacher_file, tmp_path):
    cfg = small("dense", teacher_file, lambda_flow=1e30, lr=10.0, epochs=3, out_dir=str(tmp_path))
    with pytest.raises(NonFiniteLossError, match=r"loss term '(flow|ce)' became (nan|inf).*epoch \d+, step \d+"):
        train(cfg, progress=False, verbose=False)
    stop = json.loads((tmp_path / "stopped.json").read_text())
    assert stop["error"] == "NonFiniteLossError" and stop["message"].startswith("loss term ")
    assert stop["epochs_logged"] == len((tmp_path / "log.jsonl").read_text().splitlines())
    assert f"epoch {stop['epoch']}, step {stop['step']}" in stop["message"]


def test_resume_after_kill_matches_uninterrupted_run(teacher_file, tmp_path):
    killed, full = tmp_path / "killed", tmp_path / "full"
    script = ROOT / "tests" / "scripts" / "killed_run.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(killed), teacher_file, "1"], env=ENV, capture_output=True, text=True
    )
    assert proc.returncode == 137, proc.stderr
    assert len((killed / "log.jsonl").read_text().splitlines()) == 1
    # continue with the command line, as a user would
    proc = dfkd("train", "--method", "adv-dense", "--teacher", teacher_file, "--student", "resnet8", "--dataset",
                "synthetic", "--synthetic-per-class", "30", "--epochs", "3", "--batch-size", "50", "--device", "cpu",
                "--out", killed, "--resume")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # the same run, never interrupted
    proc = subprocess.run(
        [sys.executable, str(script), str(full), teacher_file, "99"], env=ENV, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    a = [json.loads(x) for x in (killed / "log.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (full / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in a] == [1, 2, 3]
    timing = {"wall_s", "train_time_s", "images_per_s"}
    for ra, rb in zip(a, b):
        assert {k: v for k, v in ra.items() if k not in timing} == {k: v for k, v in rb.items() if k not in timing}
    wa, wb = load_model(killed / "model.pt").state_dict(), load_model(full / "model.pt").state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("method", ["adv-dense", "fsp"])  # fsp: two stages, the head unused in stage 1
def test_two_process_gloo_ranks_end_identical(method, teacher_file, tmp_path):
    port = {"adv-dense": 29517, "fsp": 29518}[method]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
           str(ROOT / "tests" / "scripts" / "ddp_run.py"), str(tmp_path), teacher_file, method]  # fmt: skip
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for part in ("student", "disc"):
        for k in r0[part]:
            assert torch.equal(r0[part][k], r1[part][k]), f"{part}.{k} differs between ranks"
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == {"adv-dense": 2, "fsp": 3}[method]  # fsp: a flow-only epoch, then scratch's two
    # every rank logs the same numbers, and they are those of the whole data (both ranks' steps)
    timing = {"wall_s", "train_time_s", "images_per_s"}
    same = [{k: v for k, v in rec.items() if k not in timing} for rec in r0["history"]]
    assert same == [{k: v for k, v in rec.items() if k not in timing} for rec in r1["history"]]
    steps = r0["steps"] + r1["steps"]
    for rec in log:
        mine = [s for s in steps if s["epoch"] == rec["epoch"]]
        per_rank = [sum(s["epoch"] == rec["epoch"] for s in r["steps"]) for r in (r0, r1)]
        assert per_rank[0] == per_rank[1] > 0 and sum(per_rank) == len(mine)
        assert rec["train_acc"] == pytest.approx(
            100 * sum(s["correct"] for s in mine) / sum(s["labelled"] for s in mine)
        )
        terms = {k for s in mine for k in s} - {"epoch", "n", "correct", "labelled"}
        assert terms >= (
            {"ce", "flow", "adv", "d_loss"} if method == "adv-dense" else {"flow" if rec["stage"] == 1 else "ce"}
        )
        for term in terms:  # a term is averaged over the steps that have it (d_every skips critic steps)
            has = [s for s in mine if term in s]
            key = "loss_disc" if term == "d_loss" else term if term.startswith("d_") else f"loss_{term}"
            scale = 100 if term.startswith("d_acc") else 1
            want = scale * sum(s[term] * s["n"] for s in has) / sum(s["n"] for s in has)
            assert rec[key] == pytest.approx(want, rel=1e-5), term


def test_a_non_finite_loss_in_one_process_stops_every_process(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29519",
           str(ROOT / "tests" / "scripts" / "ddp_nan.py"), str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "loss term 'ce' became inf at epoch 1, step 3" in proc.stderr  # rank 1
    assert "a loss term became non-finite in another process at epoch 1, step 3" in proc.stderr  # rank 0


def test_a_log_line_written_after_the_last_checkpoint_is_dropped_on_resume(tmp_path):
    """A kill between the log line and the checkpoint leaves a line the checkpoint does not know:
    the resumed run trains that epoch again and logs it once."""

    with pytest.raises(Killed):
        train(small("scratch", None, out_dir=str(tmp_path)), progress=False, verbose=False, callback=stop_after())
    log = tmp_path / "log.jsonl"
    with open(log, "a") as f:
        f.write(json.dumps({"epoch": 2, "test_acc": -1.0}) + "\n")  # an epoch 2 the checkpoint never saw
    res = train(small("scratch", None, out_dir=str(tmp_path), resume=True), progress=False, verbose=False)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2] and lines[1]["test_acc"] >= 0
    assert lines == json.loads(json.dumps(res.history))


def test_a_checkpoint_written_before_probe_order_existed_resumes_with_the_first_images(tmp_path):
    """Checkpoints without ``probe_order`` (the protocols' runs) probed the first validation
    images: they resume with ``probe_order="first"`` and refuse ``"balanced"``, naming it."""

    opts = dict(out_dir=str(tmp_path), probe_order="first")
    with pytest.raises(Killed):
        train(small("scratch", None, **opts), progress=False, verbose=False, callback=stop_after())
    path = tmp_path / "checkpoint.pt"
    ck = torch.load(path, weights_only=True)
    del ck["config"]["probe_order"]
    torch.save(ck, path)
    with pytest.raises(ConfigMismatchError, match=r"probe_order.*\('first', 'balanced'\)"):
        train(
            small("scratch", None, out_dir=str(tmp_path), resume=True, probe_order="balanced"),
            progress=False,
            verbose=False,
        )
    res = train(small("scratch", None, **opts, resume=True), progress=False, verbose=False)
    assert [r["epoch"] for r in res.history] == [1, 2]


def test_existing_run_needs_resume(tmp_path):
    cfg = small("scratch", None, epochs=1, out_dir=str(tmp_path))
    train(cfg, progress=False, verbose=False)
    with pytest.raises(FileExistsError, match="resume"):
        train(cfg, progress=False, verbose=False)
    cfg2 = small("scratch", None, epochs=2, out_dir=str(tmp_path), resume=True, lr=0.5)
    with pytest.raises(CheckpointError, match="lr"):
        train(cfg2, progress=False, verbose=False)


def test_a_run_folder_in_use_by_another_process_is_refused(tmp_path, folder_held):
    cfg = small("scratch", None, epochs=1, out_dir=str(tmp_path), resume=True)
    with folder_held(tmp_path):  # as a second copy of a protocol script would
        with pytest.raises(RunFolderBusyError, match="in use by another training process"):
            train(cfg, progress=False, verbose=False)
        assert not (tmp_path / "log.jsonl").exists()  # nothing was written
    # the lock goes with its process: the folder is free again, and is freed after a run
    train(cfg, progress=False, verbose=False)
    train(cfg, progress=False, verbose=False)  # resumes a finished run: nothing left to do
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 1


def test_a_teacher_model_given_to_train_needs_no_name_in_the_config():
    """``train(cfg, teacher=model)`` uses the model, as documented, even when ``cfg.teacher`` is
    empty; a given teacher for another number of classes is refused."""
    torch.manual_seed(0)
    teacher = cifar_resnet(8)
    res = train(small("kd", None, epochs=1), teacher=teacher, progress=False, verbose=False)
    assert res.history[0]["loss_kd"] > 0 and len(res.history[0]["flow_dist"]) == 6  # it was used
    assert all(not p.requires_grad for p in teacher.parameters()) and not teacher.training  # frozen
    with pytest.raises(ValueError, match="the teacher given has 100 classes but the data set has 10"):
        train(small("kd", None, epochs=1), teacher=cifar_resnet(8, num_classes=100), progress=False, verbose=False)
    with pytest.raises(ValueError, match="needs a teacher"):
        train(small("kd", None, epochs=1), progress=False, verbose=False)


def test_kd_takes_any_network_as_its_teacher_without_the_flow_probe():
    """KD reads only the teacher's logits: a teacher that is not a CifarResNet (no taps) trains,
    with a warning that there is no flow probe."""
    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    with pytest.warns(UserWarning, match="no flow probe.*not Sequential"):
        res = train(small("kd", None, epochs=1), teacher=teacher, progress=False, verbose=False)
    assert res.history[0]["loss_kd"] > 0 and "flow_dist" not in res.history[0]


def test_mixed_precision_is_bfloat16_where_the_gpu_has_it_else_float16_and_none_off_the_gpu(monkeypatch):
    """What training and ``python -m dfkd_lib evaluate`` run in (the CLI had bfloat16 on every GPU).
    A T4 only emulates bfloat16, which PyTorch counts as support unless asked not to."""
    from dfkd_lib.train import amp_dtype_for

    assert amp_dtype_for(torch.device("cpu")) is None

    def t4(including_emulation=True):  # what torch.cuda.is_bf16_supported says on a T4
        return including_emulation

    for gpu, want in ((lambda including_emulation=True: True, torch.bfloat16), (t4, torch.float16)):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", gpu)
        assert amp_dtype_for(torch.device("cuda", 0)) == want


def test_bad_configs_raise_clear_errors(teacher_file):
    with pytest.raises(ValueError, match="unknown method"):
        config_for("magic")
    with pytest.raises(ValueError, match="unknown option"):
        config_for("kd", colour="red")
    with pytest.raises(ValueError, match="needs a teacher"):
        TrainConfig(method="kd").validate()
    with pytest.raises(ValueError, match="invalid gan_loss"):
        config_for("adv", teacher="x", gan_loss="wgan").validate()
    with pytest.raises(ValueError, match="invalid pairs: 'everything'"):
        train(small("dense", teacher_file, pairs="everything"), progress=False, verbose=False)


@pytest.mark.parametrize(
    "method, options, needle",
    [
        ("scratch", {"momentum": 7.0}, "invalid momentum: 7.0"),
        ("scratch", {"weight_decay": -1.0}, "invalid weight_decay"),
        ("scratch", {"val_size": -3}, "invalid val_size"),
        ("scratch", {"milestones": (5.0,)}, "invalid milestones"),
        ("adv", {"d_betas": (0.5,)}, "invalid d_betas"),
        ("adv", {"d_hidden": (0,)}, "invalid d_hidden"),
        ("adv", {"d_lr": 0.0}, "invalid d_lr"),
        ("kd", {"temperature": 0.0}, "invalid temperature"),
        ("scratch", {"two_stage": True, "epochs": 3}, "invalid two_stage: method 'scratch'"),
        ("fsp", {"stage1_epochs": 0}, r"invalid stage1_epochs: 0 \(must be at least 1\)"),
        ("fsp", {"stage1_lr": 0.0}, "invalid stage1_lr"),
        ("dense", {"flow_norm": "l1"}, "invalid flow_norm: 'l1'"),
        ("dense", {"flow_norm": "item", "flow_reduction": "mean"}, "invalid flow_reduction: 'mean' .*flow_norm 'item'"),
        ("dense", {"flow_grad_ratio": -1.0}, "invalid flow_grad_ratio"),
        ("adv", {"d_input": "whitened"}, "invalid d_input"),
        ("adv", {"d_every": 0}, "invalid d_every"),
        ("adv", {"d_r1": -1.0}, r"invalid d_r1: -1.0 \(must be non-negative\)"),  # the field's own value
        ("adv", {"d_noise": -0.1}, "invalid d_noise: -0.1"),
        ("adv", {"lambda_adv": -1.0}, "invalid lambda_adv: -1.0"),
        ("kd", {"kd_weight": -1.0}, "invalid kd_weight: -1.0"),
        ("at", {"at_beta": -5.0}, "invalid at_beta: -5.0"),
        ("scratch", {"ce_weight": 0.0}, r"every term of method 'scratch' \(ce\) has weight 0"),
        ("kd", {"ce_weight": 0.0, "kd_weight": 0.0}, "every term of method 'kd'"),
        ("fsp", {"ce_weight": 0.0}, "invalid two_stage: method 'fsp' with these weights has no term for stage 2"),
        ("scratch", {"max_train_batches": 0}, "invalid max_train_batches: 0"),
        ("scratch", {"epochs": "3"}, r"invalid epochs: '3' \(must be a number, not str\)"),
        ("scratch", {"lr": "0.1"}, "invalid lr: '0.1'"),
        ("scratch", {"amp": True, "epochs": True}, "invalid epochs: True .*not bool"),
        ("dense", {"pairs": 5}, r"invalid pairs: 5 \(must be one of \('sparse', 'chain', 'dense'\) or a list"),
        ("dense", {"pairs": [[0, 1, 2]]}, "invalid pairs"),
        ("scratch", {"device": "cuda:zero"}, r"invalid device: 'cuda:zero' \(must be auto, cpu, cuda, cuda:N or mps\)"),
        ("scratch", {"device": "gpu"}, "invalid device: 'gpu'"),
    ],
)
def test_invalid_options_are_named_before_anything_runs(method, options, needle):
    teacher = {} if method == "scratch" else {"teacher": "t.pt"}
    with pytest.raises(ValueError, match=needle):
        config_for(method, **teacher, **options).validate()


def test_a_batch_larger_than_the_training_set_is_refused():
    with pytest.raises(ValueError, match=r"invalid batch_size: 5000 \(larger than the \d+ training images"):
        train(small("scratch", None, batch_size=5000), progress=False, verbose=False)


def test_resume_with_another_number_of_epochs_is_refused(tmp_path):
    """The schedule is laid out over the epochs: a resumed run with other epochs would be neither run."""
    train(small("scratch", None, epochs=1, out_dir=str(tmp_path)), progress=False, verbose=False)
    with pytest.raises(CheckpointError, match=r"'epochs': \(1, 2\)"):
        train(small("scratch", None, epochs=2, out_dir=str(tmp_path), resume=True), progress=False, verbose=False)


def test_teacher_student_class_mismatch(teacher_file, tmp_path):
    t100 = tmp_path / "t100.pt"
    save_model(cifar_resnet(8, 100), t100)
    with pytest.raises(ValueError, match="100 classes"):
        train(small("kd", str(t100)), progress=False, verbose=False)


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(bad)
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "absent.pt")


def test_evaluate_counts_correctly(synthetic):
    """A model that always answers class 3 with fixed logits: its accuracy is the share of class 3
    among the test labels, and its loss the cross-entropy of those logits, exactly."""
    loaders = get_loaders(synthetic, val_size=60, batch_size=7)  # the last batch is partial
    fixed = torch.linspace(-1, 1, 10).roll(-6)  # the largest logit at index 3

    class Constant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return fixed.expand(len(x), 10) + self.w

    labels = loaders.test.labels
    res = evaluate(Constant(), loaders.test)
    assert res["acc"] == pytest.approx(100.0 * float((labels == 3).float().mean()))
    expected = torch.nn.functional.cross_entropy(fixed.expand(len(labels), 10), labels.cpu())
    assert res["loss"] == pytest.approx(float(expected), rel=1e-5)
    model = cifar_resnet(8).train()
    evaluate(model, loaders.test)
    assert model.training  # the mode it had is given back
    with pytest.raises(TypeError, match="one loader"):
        evaluate(model, loaders)
    # a model made for another data set is refused, not scored: by the loader's class count ...
    with pytest.raises(ValueError, match="100 outputs but the data set has 10 classes"):
        evaluate(cifar_resnet(8, num_classes=100), loaders.test)
    # ... and, for a plain iterable of batches, by a label the model has no output for
    batches = [(x, torch.full((len(x),), 4)) for x, _ in list(loaders.test)[:1]]
    with pytest.raises(ValueError, match="a label is 4 but the model has only 3 outputs"):
        evaluate(cifar_resnet(8, num_classes=3), batches)
    assert evaluate(cifar_resnet(8, num_classes=100), batches)["acc"] >= 0  # labels fit: no class count to check


def test_the_log_says_once_how_to_read_its_lines(teacher_file, tmp_path, capsys):
    sys.modules["dfkd_lib.train"]._LEGENDS_SHOWN.clear()  # (dfkd_lib.train is also the function)
    cfg = small("adv-dense", teacher_file, epochs=1, probe_images=10)
    train(cfg, progress=False)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "how to read each line:"
    legend = "\n".join(out[: out.index(next(line for line in out if line.startswith("epoch 1/1")))])
    assert "ce flow adv: the epoch's mean loss terms, each times its weight" in legend
    assert "D real/fake:" in legend and "on 10 validation images" in legend
    assert "disc: the discriminators' own loss" in legend  # it is on the line, but not in the sum
    assert "train val test: accuracy (%)" in legend
    train(cfg, progress=False)  # the same kind of log again: no second legend
    again = capsys.readouterr().out
    assert "how to read" not in again and "epoch 1/1" in again
    train(small("scratch", None, epochs=1), progress=False)  # another kind: its own legend, no flows
    other = capsys.readouterr().out
    assert other.startswith("how to read each line:\n  ce: ") and "flow dist" not in other


class _OverflowingScaler:
    """A float16 GradScaler whose first steps overflow: it skips the optimiser, as a real one does."""

    def is_enabled(self):
        return True

    def scale(self, loss):
        return loss

    def step(self, optimizer):
        pass  # gradients were not finite: no optimiser step

    def update(self):
        pass


def test_a_skipped_float16_step_advances_the_schedule_without_pytorch_s_warning():
    """On a T4 (float16) the scaler often skips the first step; the schedule still advances, and
    the reader is not shown PyTorch's warning that the scheduler stepped before the optimiser."""
    import warnings

    run = Run(small("scratch", None, epochs=1), None, None, progress=False)
    run.scaler = _OverflowingScaler()
    x, y = next(iter(run.loaders.train))
    before = [p.detach().clone() for p in run.student.parameters()]
    lr0 = run.sched.get_last_lr()[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        run.train_step(x, y, run.flags(0))
    assert all(torch.equal(a, b) for a, b in zip(before, run.student.parameters()))  # the step was skipped
    assert run.sched.get_last_lr()[0] != lr0  # and the schedule advanced
    # the warning that was silenced is PyTorch's, which a plain scheduler step shows here
    fresh = Run(small("scratch", None, epochs=1), None, None, progress=False)
    with pytest.warns(UserWarning, match="before `optimizer.step"):
        fresh.sched.step()


def test_resume_restores_the_gradient_scalers_and_the_cuda_generators(tmp_path, monkeypatch):
    """What a float16 run on a GPU saves comes back on resume: both gradient scalers' states
    (scale and growth tracker) and every CUDA generator's state. Checked on a CPU with CPU
    scalers and a stand-in for ``torch.cuda.set_rng_state_all``; tests/test_gpu.py checks on a GPU
    that they are saved."""
    run_dir = tmp_path / "run"
    train(small("scratch", None, epochs=1, out_dir=str(run_dir)), progress=False, verbose=False)
    ck = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    saved = {"scaler": (512.0, 7), "scaler_d": (64.0, 3)}
    for key, (scale, tracker) in saved.items():
        state = torch.amp.GradScaler("cpu", init_scale=scale).state_dict()
        ck[key] = {**state, "_growth_tracker": tracker}
    cuda_states = [torch.arange(16, dtype=torch.uint8), torch.arange(16, 32, dtype=torch.uint8)]
    ck["rng"]["cuda"] = cuda_states
    torch.save(ck, run_dir / "checkpoint.pt")

    run = Run(small("scratch", None, epochs=1, out_dir=str(run_dir), resume=True), None, None, progress=False)
    run.scaler, run.scaler_d = torch.amp.GradScaler("cpu"), torch.amp.GradScaler("cpu")  # as fp16 would have
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    run.try_resume()
    for key, (scale, tracker) in saved.items():
        state = getattr(run, key).state_dict()
        assert (state["scale"], state["_growth_tracker"]) == (scale, tracker), key
    assert len(restored) == 1 and all(torch.equal(a, b) for a, b in zip(restored[0], cuda_states, strict=True))


def test_resuming_from_a_checkpoint_without_its_fields_names_them(tmp_path):
    run_dir = tmp_path / "run"
    train(small("scratch", None, epochs=1, out_dir=str(run_dir)), progress=False, verbose=False)
    ck = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    del ck["config"]
    torch.save(ck, run_dir / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=r"checkpoint.pt.*'config'"):
        train(small("scratch", None, epochs=2, out_dir=str(run_dir), resume=True), progress=False, verbose=False)


def test_numpy_numbers_and_pairs_given_as_arrays_become_python_s_and_the_run_logs_and_resumes(teacher_file, tmp_path):
    """A config built from NumPy values (a sweep over np.linspace, pairs as an array) holds
    Python's, so config.json and the log can be written; a run made with pairs given as tuples
    resumes with the same pairs given as an array (checkpoints and config.json store lists)."""
    import numpy as np

    cfg = config_for("dense", teacher="t.pt", epochs=np.int64(2), lr=np.float64(0.05), pairs=np.array([[0, 1], [1, 3]]))
    cfg.validate()
    assert type(cfg.epochs) is int and type(cfg.lr) is float and cfg.pairs == [[0, 1], [1, 3]]
    cfg = config_for("dense", teacher="t.pt", pairs=[np.array([0, 1])], milestones=(np.float64(0.5),))
    cfg.validate()
    assert cfg.pairs == [[0, 1]] and cfg.milestones == (0.5,) and type(cfg.milestones[0]) is float

    opts = dict(out_dir=str(tmp_path), lr=np.float64(0.05), weight_decay=np.float32(0.0))
    train(
        small("dense", teacher_file, epochs=np.int64(1), pairs=[(0, 1), (1, 3)], **opts), progress=False, verbose=False
    )
    assert json.loads((tmp_path / "config.json").read_text())["pairs"] == [[0, 1], [1, 3]]
    assert json.loads((tmp_path / "log.jsonl").read_text())["lr"] == 0.05
    again = small("dense", teacher_file, epochs=1, pairs=np.array([[0, 1], [1, 3]]), resume=True, **opts)
    assert len(train(again, progress=False, verbose=False).history) == 1  # the same config: nothing left


def test_pick_device_names_a_device_this_machine_cannot_use():
    from dfkd_lib.train import pick_device

    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device 'tpu': unknown device; use auto, cpu, cuda, cuda:N or mps"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda': no CUDA device is available here"):
            pick_device("cuda")
