#!/usr/bin/env bash
# Carry unfinished protocol runs over to the next working session. A session's machine is fresh
# (its processes and ignored files end with it), and some runs of the 60-epoch protocol take longer
# than a session: without their checkpoints they would start again from epoch 0. This stages, in
# git, the checkpoint.pt of every run in OUT that has not logged all its planned epochs (about
# 0.6 MB for a ResNet-8 with its optimiser), and unstages the checkpoints of runs that are done, so
# the tree holds checkpoints only while runs are under way. Commit afterwards; the protocol script
# then resumes those runs from their last finished epoch. The runs may keep training meanwhile (on a
# machine that outlives the session they gain the time until it goes): checkpoints are written
# atomically, and a log line newer than the checkpoint beside it is dropped on resume.
#
#   bash scripts/carry_checkpoints.sh results/cpu60 && git commit -m "..."
set -euo pipefail
OUT=${1:-"$(dirname "$0")/../results/cpu60"}
python - "$OUT" <<'PY'
import json
import subprocess
import sys
from pathlib import Path

from dfkd_lib.report import planned_epochs

for d in sorted(p for p in Path(sys.argv[1]).iterdir() if (p / "config.json").exists()):
    ck, log = d / "checkpoint.pt", d / "log.jsonl"
    n = len(log.read_text().splitlines()) if log.exists() else 0
    done = n >= planned_epochs(json.loads((d / "config.json").read_text()))
    git = ["git", "-C", str(d)]  # the repository that holds the run, whatever the current folder
    tracked = subprocess.run([*git, "ls-files", "--error-unmatch", ck.name], capture_output=True).returncode == 0
    if done and tracked:
        subprocess.run([*git, "rm", "--cached", "--quiet", ck.name], check=True)
        print(f"{d.name}: done, its checkpoint leaves the tree")
    elif not done and ck.exists():
        files = [f for f in (ck.name, log.name, "config.json", "data.json") if (d / f).exists()]
        subprocess.run([*git, "add", "--force", *files], check=True)
        print(f"{d.name}: {n} epochs logged, checkpoint staged")
PY
