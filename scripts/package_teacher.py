"""Ship a trained model (a teacher, or a student of the protocol) inside the package: weights,
SHA-256 and a manifest entry.

    python scripts/package_teacher.py runs/teacher-resnet26 --name resnet26_cifar10 \
        --command "OMP_NUM_THREADS=1 python -m dfkd_lib train-teacher --arch resnet26 --epochs 40 --out runs/teacher-resnet26 --resume"

    python scripts/package_teacher.py results/cpu60/adv-dense-lf1.0-s0 --name resnet8_cifar10_adv-dense \
        --command "OMP_NUM_THREADS=1 JOBS=2 bash scripts/run_protocol60.sh"

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
from dfkd_lib.pretrained import WEIGHTS_DIR, sha256
from dfkd_lib.train import evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="run folder with model.pt, config.json and log.jsonl")
    ap.add_argument("--name", required=True)
    ap.add_argument("--command", required=True, help="the exact command that trained it")
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
        "command": args.command,
        "commit": commit,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
    if cfg.get("teacher"):  # a student: what it learnt from, and how
        manifest[args.name].update(
            role="student", method=cfg["method"], teacher=cfg["teacher"],
            labelled_fraction=cfg.get("labelled_fraction", 1.0), seed=cfg["seed"], run=str(run),
        )  # fmt: skip
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest[args.name], indent=2))


if __name__ == "__main__":
    main()
