"""Ship a trained model (a teacher, or a student of the protocol) inside the package: weights,
SHA-256 and a manifest entry.

    python scripts/package_teacher.py runs/teacher-resnet26 --name resnet26_cifar10 \
        --command "OMP_NUM_THREADS=1 python -m dfkd_lib train-teacher --arch resnet26 --epochs 40 --out runs/teacher-resnet26 --resume"

    python scripts/package_teacher.py results/cpu60/adv-dense-lf1.0-s0 --name resnet8_cifar10_adv-dense

A student's command, unless given, is the run's own ``python -m dfkd_lib train`` line as the
protocol script (``scripts/run_protocol60.sh``) issued it, read from its config.

A run trained from a teacher is entered as a student, with its method, teacher, labelled fraction
and seed. Re-evaluates the run's final model on the test and validation sets, writes
``dfkd_lib/weights/<name>.pt`` (a model file: weights and metadata only) and adds the entry
to ``dfkd_lib/weights/manifest.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from dfkd_lib.checkpoint import load_model, save_model
from dfkd_lib.data import get_loaders
from dfkd_lib.methods import RECIPE_VERSIONS, get_method
from dfkd_lib.pretrained import WEIGHTS_DIR, sha256
from dfkd_lib.train import evaluate


def json_ready(d: dict) -> dict:
    """Tuples as lists, as config.json stores them."""
    return json.loads(json.dumps(d))


def train_command(cfg: dict, run: Path) -> str:
    """The ``dfkd_lib train`` command that scripts/run_cpu_protocol.sh issues for a student's run."""
    if not cfg.get("teacher"):
        raise SystemExit("--command is needed for a run without a teacher")
    # the version of the method's recipe whose every setting the run's config holds
    method = get_method(cfg["method"])
    versions = [v for v in RECIPE_VERSIONS if all(cfg.get(k) == x for k, x in json_ready(method.recipe_of(v)).items())]
    if not versions:
        raise SystemExit(f"{run}: its config matches no version of {cfg['method']}'s recipe; pass --command")
    return (
        f"OMP_NUM_THREADS=1 python -m dfkd_lib train --method {cfg['method']} --recipe {versions[-1]} "
        f"--teacher {cfg['teacher']} --student {cfg['student']} --dataset {cfg['dataset']} --epochs {cfg['epochs']} "
        f"--labelled-fraction {cfg['labelled_fraction']} --seed {cfg['seed']} --out {run} --resume"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="run folder with model.pt, config.json and log.jsonl")
    ap.add_argument("--name", required=True)
    ap.add_argument("--command", help="the exact command that trained it (a student's is read from its config)")
    ap.add_argument("--notes", help="anything a reader of the manifest should know (resumes, machines)")
    args = ap.parse_args()
    run = Path(args.run)
    cfg = json.loads((run / "config.json").read_text())
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    model = load_model(run / "model.pt")
    loaders = get_loaders(cfg["dataset"], val_size=cfg["val_size"], split_seed=cfg["split_seed"])
    test = evaluate(model, loaders.test)["acc"]
    val = evaluate(model, loaders.val)["acc"]
    # the training commit: data.json's record of it, else the one at which the run's config was written
    data = json.loads((run / "data.json").read_text()) if (run / "data.json").exists() else {}
    commit = data.get("environment", {}).get("git_commit")
    if not commit:
        first = datetime.fromtimestamp((run / "config.json").stat().st_mtime, timezone.utc)
        commit = subprocess.run(
            ["git", "rev-list", "-1", f"--before={first.isoformat()}", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    command = args.command or train_command(cfg, run)
    WEIGHTS_DIR.mkdir(exist_ok=True)
    path = WEIGHTS_DIR / f"{args.name}.pt"
    save_model(model, path, name=args.name, dataset=cfg["dataset"], test_acc=round(test, 2), val_acc=round(val, 2))
    manifest_path = WEIGHTS_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[args.name] = {
        "file": path.name,
        "sha256": sha256(path),
        "arch": f"resnet{model.depth}",
        "dataset": cfg["dataset"],
        "num_classes": model.num_classes,
        "test_acc": round(test, 2),
        "val_acc": round(val, 2),
        "split": f"{50000 - cfg['val_size']} train / {cfg['val_size']} validation (split_seed {cfg['split_seed']}), official test set",
        "epochs": len(log),
        "train_hours": round(log[-1]["wall_s"] / 3600, 2),
        "command": command,
        "commit": commit,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
    if cfg.get("teacher"):  # a student: what it learnt from, and how
        manifest[args.name].update(
            role="student", method=cfg["method"], teacher=cfg["teacher"],
            labelled_fraction=cfg.get("labelled_fraction", 1.0), seed=cfg["seed"], run=str(run),
        )  # fmt: skip
    if args.notes:
        manifest[args.name]["notes"] = args.notes
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest[args.name], indent=2))


if __name__ == "__main__":
    main()
