"""Command line: ``python -m dfkd_lib {train,train-teacher,evaluate,report} ...``.

Examples::

    python -m dfkd_lib train-teacher --arch resnet26 --epochs 30 --out runs/teacher-resnet26
    python -m dfkd_lib train --method adv-dense --teacher resnet26_cifar10 --student resnet8 --epochs 15
    python -m dfkd_lib train --config my_run.yaml --seed 1       # flags override the file
    python -m dfkd_lib train --out runs/x --resume                # continue a killed run
    python -m dfkd_lib evaluate --model runs/x/model.pt --dataset cifar10
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from .checkpoint import ConfigMismatchError
from .methods import METHODS, RECIPE_VERSIONS
from .train import RunFolderBusyError, TrainConfig, check_device, config_for

__all__ = ["make_parser", "build_config", "main"]

HELP = {
    "method": "what to train with (see the list above)",
    "student": "student network, e.g. resnet8, resnet14, resnet20",
    "teacher": "teacher: a model file (model.pt / checkpoint.pt) or a pretrained name such as resnet26_cifar10",
    "dataset": "cifar10, cifar100, or synthetic (small generated data for smoke tests)",
    "data_dir": "folder holding cifar10.npz / cifar100.npz or torchvision's files (default: $DFKD_DATA, then data/)",
    "download": "let torchvision download the data set into data/ if it is not found",
    "epochs": "number of epochs",
    "batch_size": "global batch size",
    "lr": "initial learning rate of the network (SGD)",
    "momentum": "SGD momentum",
    "nesterov": "Nesterov momentum",
    "weight_decay": "weight decay of the network",
    "schedule": "learning-rate schedule: cosine, or step (x0.1 at each milestone)",
    "milestones": "step schedule: fractions of the run at which the rate drops",
    "pairs": "flow items: sparse, chain, dense, or a custom list like '0-1,0-3,2-3' (student tap indices)",
    "pool": "pooling of the larger map in an FSP pair: max or avg",
    "flow_reduction": "flow loss per item: sum (squared Frobenius distance) or mean (over entries)",
    "flow_norm": "balance of the flow items: none, teacher (each example's error relative to the teacher's "
    "matrix) or item (a fixed weight per item, one over the teacher's mean squared norm)",
    "lambda_flow": "weight of the Euclidean flow loss",
    "flow_grad_ratio": "set lambda_flow at the start so that the flow term's gradient is this many times the "
    "supervised terms' gradient (student in train mode, first batches); overrides --lambda-flow",
    "lambda_adv": "weight of the student's adversarial loss",
    "gan_loss": "adversarial loss form: bce (non-saturating), lsgan or hinge",
    "ce_weight": "weight of the cross-entropy",
    "kd_weight": "weight of Hinton's KD loss",
    "temperature": "KD temperature",
    "at_beta": "attention-transfer weight beta (the term is beta/2 * AT)",
    "two_stage": "Yim's two stages: flow terms first, then the --epochs of cross-entropy",
    "stage1_epochs": "two-stage: flow-only epochs before the --epochs of cross-entropy (default a third of --epochs)",
    "stage1_lr": "two-stage: peak learning rate of the flow-only stage",
    "d_lr": "discriminator learning rate (Adam)",
    "d_betas": "discriminator Adam betas",
    "d_hidden": "hidden widths of each discriminator MLP",
    "spectral_norm": "spectral normalisation in the discriminators",
    "d_input": "what the discriminators see: raw flows, scaled (each item over the teacher's RMS norm) or unit "
    "(each matrix over its own norm)",
    "d_noise": "instance noise added to the discriminators' inputs, relative to an item's scale, annealed to 0",
    "d_r1": "R1 gradient penalty weight gamma of the discriminators",
    "d_every": "one discriminator step every this many student steps",
    "probe_images": "validation images on which each flow item's distance is logged every epoch (0: none)",
    "probe_order": "which validation images the flow probe reads: balanced (the classes in turn) or first "
    "(the first in stored order, as the 60-epoch protocol and the method screen did)",
    "labelled_fraction": "fraction of training images whose labels are used (class-balanced)",
    "val_size": "training images held out for validation",
    "split_seed": "seed of the validation split and of the labelled subset",
    "synthetic_per_class": "images per class of the synthetic data set",
    "max_train_batches": "stop each epoch after this many batches (quick runs)",
    "seed": "seed of the run (initialisation, order, augmentation)",
    "deterministic": "deterministic algorithms (slower on GPUs)",
    "device": "auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps",
    "amp": "mixed precision on CUDA",
    "channels_last": "channels-last memory format (faster convolutions)",
    "out_dir": "folder for log.jsonl, checkpoint.pt, model.pt (default runs/<method>-<student>-<dataset>-s<seed>)",
    "resume": "continue the run in --out from its checkpoint (starts afresh if there is none)",
}
TYPES: dict[str, Any] = {
    "teacher": str, "data_dir": str, "out_dir": str, "stage1_epochs": int, "max_train_batches": int, "pairs": str,
    "flow_grad_ratio": float,
}  # fmt: skip


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, naming the culprit
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _add_config_flags(p: argparse.ArgumentParser, skip: set[str] = frozenset()) -> None:
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        names = [flag, "--out"] if f.name == "out_dir" else [flag]
        default = f.default
        kw: dict[str, Any] = {"default": None, "dest": f.name, "help": HELP.get(f.name, "")}
        if isinstance(default, bool):
            kw["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            kw.update(nargs="+", type=_field_type(f)[0])
        else:
            kw["type"] = _field_type(f)
        if f.name == "method":
            kw["choices"] = list(METHODS)
        if default is not None and not isinstance(default, bool):
            kw["help"] += f" (default {default!r}, unless the method's recipe says otherwise)"
        p.add_argument(*names, **kw)


def _parse_pairs(text: Any) -> Any:
    if not isinstance(text, str) or text in ("sparse", "chain", "dense"):
        return text
    try:
        return [[int(v) for v in item.split("-")] for item in text.split(",")]
    except ValueError:
        raise ValueError(f"invalid pairs: {text!r} (use sparse, chain, dense or a list like '0-1,0-3')") from None


def _field_type(f: dataclasses.Field) -> Any:
    """The type a flag of this option takes (a 1-tuple for a list option), as the parser builds it."""
    if isinstance(f.default, bool):
        return bool
    if isinstance(f.default, tuple):
        return (type(f.default[0]) if f.default else float,)
    return TYPES.get(f.name, type(f.default))


def _coerce(name: str, value: Any, kind: Any, path: str) -> Any:
    """A value from the YAML file, converted as its flag's text would be (YAML reads ``1e-3``,
    with no dot, as a string); booleans must be YAML booleans."""
    if value is None or name == "pairs":  # pairs may also be a YAML list of [a, b]
        return value
    many = isinstance(kind, tuple)
    t = kind[0] if many else kind
    items = (value if isinstance(value, list) else [value]) if many else [value]
    try:
        if t is bool and not all(isinstance(v, bool) for v in items):
            raise ValueError
        out = [v if t is bool else t(str(v)) for v in items]  # int("True") fails, as it should
    except ValueError:
        what = f"a list of {t.__name__}" if many else t.__name__
        raise ValueError(f"invalid {name} in {path}: {value!r} (must be {what})") from None
    return tuple(out) if many else out[0]


def _yaml_problem(e: Exception) -> str:
    """YAML's short account of a syntax error, with its line (and where the construct began)."""
    problem = getattr(e, "problem", None)
    mark = getattr(e, "problem_mark", None)
    if not problem or mark is None:
        return " ".join(str(e).split())
    text = f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    context, start = getattr(e, "context", None), getattr(e, "context_mark", None)
    if context and start is not None and start.line != mark.line:
        text += f", {context} begun on line {start.line + 1}"
    return text


def _load_yaml(path: str) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"cannot parse {path}: {_yaml_problem(e)}") from None
    except UnicodeDecodeError:
        raise ValueError(f"cannot parse {path}: it is not a text file (a YAML file of options is expected)") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of options")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(data) - set(fields))
    if bad:
        raise ValueError(f"unknown option(s) in {path}: {bad}")
    return {k: _coerce(k, v, _field_type(fields[k]), path) for k, v in data.items()}


def build_config(args: argparse.Namespace, fixed: dict[str, Any] | None = None) -> TrainConfig:
    """Recipe defaults < YAML file < flags; ``fixed`` (from a sub-command) on top."""
    values = _load_yaml(args.config) if getattr(args, "config", None) else {}
    for f in dataclasses.fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    values.update(fixed or {})
    method = values.pop("method", "scratch")
    recipe = getattr(args, "recipe", None) or RECIPE_VERSIONS[-1]  # a flag only: not an option of a YAML file
    if "pairs" in values:
        values["pairs"] = _parse_pairs(values["pairs"])
    for k in ("milestones", "d_betas", "d_hidden"):
        if k in values:
            values[k] = tuple(values[k])
    cfg = config_for(method, recipe=int(recipe), **values)
    if cfg.out_dir is None:
        cfg.out_dir = f"runs/{cfg.method}-{cfg.student}-{cfg.dataset}-s{cfg.seed}"
    cfg.validate()
    return cfg


def _run_training(args: argparse.Namespace, cfg: TrainConfig) -> None:
    """Train ``cfg`` from the command line: check a device that the config file set, add how to
    resume to a refused resume, and say so when a resumed run had nothing left to do."""
    from .train import train

    if args.device is None and cfg.device != "auto":  # a flag was checked before; this came from --config
        check_device(cfg.device, f"device {cfg.device!r} in {args.config}")
    seen: dict[str, Any] = {}

    def on_start(run: Any) -> None:  # records where the run starts; changes nothing
        seen.update(done=len(run.history), total=run.cfg.total_epochs, main=run.main)

    try:
        train(cfg, progress=sys.stderr.isatty(), on_start=on_start)
    except ConfigMismatchError as e:
        saved = Path(cfg.out_dir) / "config.json"
        how = f" or pass --config {saved} --resume" if saved.is_file() else ""
        raise ConfigMismatchError(f"{e}; to resume, repeat the run's original flags{how}") from None
    if cfg.resume and seen.get("main") and seen["done"] >= seen["total"]:
        print(f"run already complete ({seen['done']}/{seen['total']} epochs): nothing to do", flush=True)


def make_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m dfkd_lib``: sub-commands train, train-teacher, evaluate, report."""
    p = _Parser(prog="python -m dfkd_lib", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser(
        "train",
        help="train a student with one of the methods",
        description="Train a student with one of these methods (each sets its recipe's options; flags override):\n"
        + "\n".join(
            f"  {m.name:13s} {m.summary}\n  {'':13s} recipe: {m.recipe or 'the defaults'}"
            + (f"\n  {'':13s} first version (--recipe 1): {m.first}" if m.first is not None else "")
            for m in METHODS.values()
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("--config", help="YAML file of options (flags override it)")
    t.add_argument(
        "--recipe",
        type=int,
        choices=RECIPE_VERSIONS,
        default=None,
        help=f"version of the method's recipe to start from (default {RECIPE_VERSIONS[-1]}, the current one; "
        "1: the first, with which the 15-epoch protocol of results/cpu ran)",
    )
    _add_config_flags(t)

    tt = sub.add_parser("train-teacher", help="train a teacher with cross-entropy (method scratch)")
    tt.add_argument("--config", help="YAML file of options (flags override it)")
    tt.add_argument("--arch", default=None, help="teacher network (default: the config file's student, else resnet26)")
    _add_config_flags(tt, skip={"method", "student", "teacher", "pairs", "pool", "flow_reduction", "lambda_flow", "lambda_adv",
                                 "gan_loss", "kd_weight", "temperature", "at_beta", "two_stage", "stage1_epochs", "d_lr",
                                 "d_betas", "d_hidden", "spectral_norm", "labelled_fraction", "ce_weight", "flow_norm",
                                 "flow_grad_ratio", "stage1_lr", "d_input", "d_noise", "d_r1", "d_every",
                                 "probe_images", "probe_order"})  # fmt: skip

    e = sub.add_parser("evaluate", help="test accuracy of a model file or pretrained teacher")
    e.add_argument("--model", required=True, help="model file, training checkpoint, or pretrained name")
    e.add_argument(
        "--dataset", default="cifar10", choices=("cifar10", "cifar100"), help="the data set (default cifar10)"
    )
    e.add_argument("--data-dir", dest="data_dir", default=None, help=HELP["data_dir"])
    e.add_argument("--split", choices=("test", "val"), default="test", help="test images, or the validation split")
    e.add_argument("--device", default="auto", help=HELP["device"] + " (default auto)")
    e.add_argument("--download", action="store_true", help=HELP["download"])

    r = sub.add_parser("report", help="the results table and plots from committed run logs")
    r.add_argument("--runs", default="results/cpu", help="folder of run folders (each with config.json, log.jsonl)")
    r.add_argument("--out", default=None, help="where to write table.md and plots (default: the runs folder)")
    r.add_argument("--screen", action="store_true",
                   help="a screen's table instead: validation accuracy only, by setting (folders <setting>-s<seed>), "
                   "written to screen.md")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; returns the exit status (0 done, 2 bad input, 3 a loss became NaN or
    infinite, 130 interrupted), with a one-line message on standard error for 2 and 3."""
    from .train import NonFiniteLossError

    parser = make_parser()
    args = parser.parse_args(argv)
    out_dir = None  # the run folder of train and train-teacher, for the message on Ctrl-C
    try:
        if args.command in ("train", "train-teacher") and args.device is not None:
            check_device(args.device)  # before the config, whose check of devices is coarser
        if args.command == "train":
            cfg = build_config(args)
            out_dir = cfg.out_dir
            _run_training(args, cfg)
        elif args.command == "train-teacher":
            file_values = _load_yaml(args.config) if args.config else {}
            arch = args.arch or file_values.get("student") or "resnet26"
            default_out = args.out_dir is None and "out_dir" not in file_values
            train_cfg = build_config(args, {"method": "scratch", "student": arch})
            if default_out:
                train_cfg.out_dir = f"runs/teacher-{arch}-{train_cfg.dataset}-s{train_cfg.seed}"
            out_dir = train_cfg.out_dir
            _run_training(args, train_cfg)
        elif args.command == "evaluate":
            from .data import get_loaders
            from .pretrained import load_teacher
            from .train import amp_dtype_for, evaluate, pick_device

            check_device(args.device)
            device = pick_device(args.device)
            model = load_teacher(args.model, what="--model").to(device)
            loaders = get_loaders(args.dataset, root=args.data_dir, device=device, download=args.download)
            if loaders.num_classes != model.num_classes:
                raise ValueError(
                    f"the model has {model.num_classes} classes but {args.dataset} has {loaders.num_classes}"
                )
            loader = loaders.test if args.split == "test" else loaders.val
            res = evaluate(model, loader, amp_dtype_for(device))
            print(
                json.dumps(
                    {
                        "model": args.model,
                        "dataset": args.dataset,
                        "split": args.split,
                        "accuracy": round(res["acc"], 2),
                        "loss": round(res["loss"], 4),
                    }
                )
            )
        elif args.command == "report":
            from .report import make_report, screen_markdown, screen_rows

            if args.screen:
                rows = screen_rows(args.runs)
                if not rows:
                    raise FileNotFoundError(f"no complete run with validation accuracy below {args.runs}")
                text = screen_markdown(rows)
                Path(args.out or args.runs).mkdir(parents=True, exist_ok=True)
                (Path(args.out or args.runs) / "screen.md").write_text(text)
                print(text)
            else:
                make_report(args.runs, args.out)
    except (ValueError, FileNotFoundError, IsADirectoryError, FileExistsError, PermissionError, KeyError,
            RunFolderBusyError) as e:  # fmt: skip
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"python -m dfkd_lib {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"python -m dfkd_lib {args.command}: stopped: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        checkpoint = Path(out_dir) / "checkpoint.pt" if out_dir else None
        if checkpoint is not None and checkpoint.exists():
            msg = f"the last finished epoch is in {checkpoint} (continue: the same command with --resume)"
        elif args.command in ("train", "train-teacher"):
            msg = "no epoch had finished in a run folder: nothing to resume"
        else:
            msg = "nothing was written"
        print(f"interrupted; {msg}", file=sys.stderr)
        return 130
    return 0
