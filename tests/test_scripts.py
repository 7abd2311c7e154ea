"""The shell scripts that run the protocol and the validation searches, with a stub ``python``.

The stub records every command line of ``python -m ...`` (and the thread count it was given) instead of training,
so these tests check what the scripts would run, which runs they skip, and how they report a
failed run, in well under a second each.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

STUB = """#!/usr/bin/env bash
[ "${1:-}" = - ] && exec "$REAL_PYTHON" "$@"  # the scripts' own bookkeeping (python - <<EOF) runs for real
echo "OMP=${OMP_NUM_THREADS:-unset} $*" >> "$CALLS"
case " $* " in *" --method ${FAIL_METHOD:-none} "*) exit 1 ;; esac
exit 0
"""

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run_script(tmp_path, script, timeout=60, **env):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "python"
    stub.write_text(STUB)
    stub.chmod(0o755)
    calls = tmp_path / "calls.txt"
    calls.write_text("")
    full_env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    full_env.update(
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", CALLS=str(calls), REAL_PYTHON=sys.executable, **env
    )
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / script)], env=full_env, capture_output=True, text=True, timeout=timeout
    )
    return proc, calls.read_text().splitlines()


def trains(calls):
    return [c for c in calls if " -m dfkd_lib train " in f" {c} "]


def test_protocol_runs_each_spec_with_the_right_options(tmp_path):
    out = tmp_path / "out"
    proc, calls = run_script(
        tmp_path, "run_cpu_protocol.sh", OUT=str(out), SEEDS="0", RUNS="scratch kd:0.1", EPOCHS="2"
    )
    assert proc.returncode == 0, proc.stderr
    runs = trains(calls)
    assert len(runs) == 2
    scratch, kd = runs
    assert "--method scratch" in scratch and "--teacher" not in scratch
    assert f"--out {out}/scratch-lf1.0-s0" in scratch and "--labelled-fraction 1.0" in scratch
    assert "--method kd --recipe 1 --teacher resnet26_cifar10" in kd and "--labelled-fraction 0.1" in kd
    assert "--epochs 2" in kd and "--seed 0" in kd and "--resume" in kd
    # both protocols' logs probed the first validation images in stored order; the default keeps that
    assert all(" --probe-order first " in c for c in runs)
    assert calls[-1].endswith(f"-m dfkd_lib report --runs {out}")  # the table is rebuilt at the end


def test_protocol_skips_complete_runs_and_respects_until(tmp_path):
    out = tmp_path / "out"
    done = out / "scratch-lf1.0-s0"
    done.mkdir(parents=True)
    (done / "config.json").write_text(json.dumps({"method": "scratch", "epochs": 2}))
    (done / "log.jsonl").write_text("{}\n{}\n")  # both epochs logged: complete
    proc, calls = run_script(tmp_path, "run_cpu_protocol.sh", OUT=str(out), SEEDS="0", RUNS="scratch", EPOCHS="2")
    assert proc.returncode == 0 and "done already" in proc.stdout and not trains(calls)
    assert "| scratch-lf1.0-s0 | 2 / 2 | done |" in (out / "STATUS.md").read_text()
    proc, calls = run_script(
        tmp_path, "run_cpu_protocol.sh", OUT=str(out), SEEDS="1", RUNS="scratch", EPOCHS="2", UNTIL="2000-01-01 00:00"
    )
    assert proc.returncode == 0 and "past UNTIL" in proc.stdout and not trains(calls)


def test_protocol_counts_a_two_stage_runs_flow_only_epochs(tmp_path):
    """fsp's flow-only stage comes on top of ``epochs``: a log with ``epochs`` lines is not done yet."""
    out = tmp_path / "out"
    run = out / "fsp-lf1.0-s0"
    run.mkdir(parents=True)
    cfg = {"method": "fsp", "epochs": 2, "two_stage": True, "stage1_epochs": 1, "stage1_lr": 0.01}
    (run / "config.json").write_text(json.dumps(cfg))
    (run / "log.jsonl").write_text("{}\n{}\n")
    proc, calls = run_script(tmp_path, "run_cpu_protocol.sh", OUT=str(out), SEEDS="0 1", RUNS="fsp", EPOCHS="2")
    assert proc.returncode == 0, proc.stderr  # the stub trains nothing: the runs stay unfinished
    assert [c.split("--out ")[1].split()[0] for c in trains(calls)] == [str(run), str(out / "fsp-lf1.0-s1")]
    status = (out / "STATUS.md").read_text()
    assert "0 of 2 runs done" in status and "| fsp-lf1.0-s0 | 2 / 3 | running or cut off |" in status
    assert "| fsp-lf1.0-s1 | - | not started |" in status


def test_protocol60_plans_ten_runs_a_seed_with_the_teacher_for_all(tmp_path):
    out = tmp_path / "out"
    proc, calls = run_script(tmp_path, "run_protocol60.sh", OUT=str(out), SEEDS="0", timeout=180)
    assert proc.returncode == 0, proc.stderr
    runs = trains(calls)
    assert len(runs) == 10 and all("--epochs 60" in c and "--teacher resnet26_cifar10_e80" in c for c in runs)
    assert all("--recipe 2 " in c for c in runs)  # the current recipes (the 15-epoch protocol: --recipe 1)
    assert all(" --probe-order first " in c for c in runs)  # as its committed runs were probed
    assert [c.split("--method ")[1].split()[0] for c in runs if "--labelled-fraction 0.1" in c] == [
        "scratch", "kd", "adv-dense", "kd-adv-dense"]  # fmt: skip
    assert "0 of 10 runs done" in (out / "STATUS.md").read_text()
    assert 'SEEDS=${SEEDS:-"0 1 2"}' in (REPO / "scripts" / "run_cpu_protocol.sh").read_text()  # 30 runs by default


def test_protocol_resumes_cut_off_runs_then_starts_those_named_in_first_and_keeps_the_plans_order_in_status(
    tmp_path,
):
    out = tmp_path / "out"
    cut = out / "scratch-lf1.0-s1"  # cut off part-way: it resumes before anything else starts
    cut.mkdir(parents=True)
    (cut / "config.json").write_text(json.dumps({"method": "scratch", "epochs": 2}))
    (cut / "log.jsonl").write_text("{}\n")
    (cut / "checkpoint.pt").write_bytes(b"")
    proc, calls = run_script(
        tmp_path, "run_cpu_protocol.sh", OUT=str(out), SEEDS="0 1", RUNS="scratch kd", EPOCHS="2",
        FIRST="kd-lf1.0-s1 scratch-lf1.0-s1 not-planned-s9",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    order = [c.split("--out ")[1].split()[0].rsplit("/", 1)[1] for c in trains(calls)]
    assert order == ["scratch-lf1.0-s1", "kd-lf1.0-s1", "scratch-lf1.0-s0", "kd-lf1.0-s0"]
    status = (out / "STATUS.md").read_text()
    rows = [line.split(" | ")[0][2:] for line in status.splitlines() if line.startswith("| ") and "-lf" in line]
    assert rows == ["scratch-lf1.0-s0", "kd-lf1.0-s0", "scratch-lf1.0-s1", "kd-lf1.0-s1"]


def test_protocol60_starts_the_runs_the_chapters_lead_with(tmp_path):
    """Chapter 7 and the preface lead with the 60-epoch protocol once report.LEAD_METHODS have 3
    seeds each (all labels): those runs come first."""
    from dfkd_lib import report

    text = (REPO / "scripts" / "run_protocol60.sh").read_text()
    first = text.split('FIRST=${FIRST:-"')[1].split('"')[0].split()
    assert {name.split("-lf")[0] for name in first} == set(report.LEAD_METHODS)
    assert all(name.endswith(("-s1", "-s2")) and "-lf1.0-" in name for name in first)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_protocol_reports_a_failed_run_and_still_runs_the_others(tmp_path, jobs):
    out = tmp_path / "out"
    proc, calls = run_script(
        tmp_path, "run_cpu_protocol.sh", OUT=str(out), SEEDS="0", RUNS="kd fsp dense", EPOCHS="2", JOBS=jobs,
        FAIL_METHOD="kd",
    )  # fmt: skip
    assert proc.returncode == 1
    assert sorted(c.split("--method ")[1].split()[0] for c in trains(calls)) == ["dense", "fsp", "kd"]
    if jobs == "2":  # two at a time on this machine's cores: one thread each on 2 cores
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
        threads = max(1, cores // 2)  # what the script computes from `nproc`
        assert all(c.startswith(f"OMP={threads} ") for c in trains(calls))
        assert (out / "kd-lf1.0-s0" / "console.log").exists()


def test_objective_search_settings(tmp_path):
    out = tmp_path / "search"
    proc, calls = run_script(tmp_path, "objective_search.sh", OUT=str(out), SETTINGS="scratch dense-sparse")
    assert proc.returncode == 0, proc.stderr
    scratch, sparse = trains(calls)
    assert "--method scratch" in scratch and "--teacher" not in scratch
    assert "--recipe 1 --method dense --pairs sparse --lambda-flow 1e-3 --teacher resnet26_cifar10" in sparse
    # the searches' committed logs probed the first validation images in stored order
    assert f"--epochs 4 --seed 0 --probe-order first --out {out}/dense-sparse --resume" in sparse


def test_search_rejects_an_unknown_setting(tmp_path):
    proc, calls = run_script(tmp_path, "adv_search.sh", OUT=str(tmp_path / "s"), SETTINGS="dense no-such-setting")
    assert proc.returncode == 2 and "unknown setting: no-such-setting" in proc.stderr
    assert not trains(calls)  # every name is checked before anything runs


def test_method_screen_runs_its_settings_on_the_first_recipes_with_the_teacher(tmp_path):
    out = tmp_path / "screen"
    done = out / "fsp-v2-s0"  # a two-stage setting is done only with its flow-only epochs logged too
    done.mkdir(parents=True)
    (done / "log.jsonl").write_text("{}\n" * 10)
    proc, calls = run_script(tmp_path, "method_screen.sh", OUT=str(out), SEEDS="0",
                             SETTINGS="scratch dense-v1 fsp-v2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    runs = trains(calls)
    assert len(runs) == 2 and "done already" in proc.stdout
    assert all(c.split("train ")[1].startswith("--recipe 1 --method ") for c in runs)
    assert all("--teacher resnet26_cifar10 " in c for c in runs)  # scratch too: the flow probe
    assert all(" --probe-order first " in c for c in runs)  # as the committed screens were probed
    assert "--lambda-flow 5e-4 --flow-norm none" in runs[1]


def test_status_only_writes_the_status_and_trains_nothing(tmp_path):
    out = tmp_path / "out"
    run = out / "scratch-lf1.0-s0"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"method": "scratch", "epochs": 60}))
    (run / "log.jsonl").write_text("{}\n" * 7)
    proc, calls = run_script(tmp_path, "run_protocol60.sh", OUT=str(out), SEEDS="0", STATUS_ONLY="1")
    assert proc.returncode == 0, proc.stderr
    assert not trains(calls) and "0 of 10 runs done" in proc.stdout
    assert "| scratch-lf1.0-s0 | 7 / 60 | running or cut off |" in (out / "STATUS.md").read_text()


def test_carry_checkpoints_stages_unfinished_runs_and_drops_finished_ones(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("needs git")
    repo = tmp_path / "repo"
    out = repo / "results" / "cpu60"

    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout

    for name, logged in (("kd-lf1.0-s0", 7), ("scratch-lf1.0-s0", 60), ("fsp-lf1.0-s0", 3)):
        run = out / name
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"method": name.split("-")[0], "epochs": 60}))
        (run / "log.jsonl").write_text("{}\n" * logged)
        if name != "fsp-lf1.0-s0":  # fsp: cut off before its first checkpoint
            (run / "checkpoint.pt").write_bytes(b"weights")
    (repo / ".gitignore").write_text("checkpoint.pt\n")
    git("init", "-q")
    git("add", "--force", "results/cpu60/scratch-lf1.0-s0/checkpoint.pt")  # carried while it ran
    proc = subprocess.run(["bash", str(REPO / "scripts" / "carry_checkpoints.sh"), str(out)],
                          capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    staged = set(git("diff", "--cached", "--name-only").split()) | set(git("ls-files").split())
    assert "results/cpu60/kd-lf1.0-s0/checkpoint.pt" in staged
    assert "results/cpu60/kd-lf1.0-s0/log.jsonl" in staged
    assert "results/cpu60/scratch-lf1.0-s0/checkpoint.pt" not in staged  # done: it leaves the tree
    assert not any(p.startswith("results/cpu60/fsp") for p in staged)
    assert "kd-lf1.0-s0: 7 epochs logged, checkpoint staged" in proc.stdout
