"""What a pip install carries besides the library: the repository files the chapters read.

After ``pip install`` (Colab) ``dfkd_lib`` runs from site-packages, where there is no checkout:
chapter 7 then reads the run logs, recipes and protocol scripts from the copy a wheel carries in
``dfkd_lib/repository/`` (``setup.py``), through :func:`dfkd_lib.book.repository`.
"""

import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dfkd_lib import book

REPO = Path(__file__).resolve().parent.parent


def _setup_module():
    spec = importlib.util.spec_from_file_location("dfkd_setup", REPO / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines SHIPPED and shipped_files; setup() runs only as __main__
    return module


def _protocol_runs() -> list[str]:
    return sorted(p.parent.name for p in (REPO / "results" / "cpu").glob("*/log.jsonl"))


def test_shipped_files_hold_what_chapter_7_reads_and_nothing_heavy():
    files = {str(p) for p in _setup_module().shipped_files(REPO)}
    runs = _protocol_runs()
    assert len(runs) >= 30
    for run in runs:
        for name in ("config.json", "log.jsonl", "data.json"):
            assert f"results/cpu/{run}/{name}" in files
    assert {"results/cpu/summary.json", "scripts/run_cpu_protocol.sh"} <= files
    assert "recipes/yim-cifar10-resnet26-resnet8/scratch.yaml" in files
    assert any(f.startswith("results/adv-search/") for f in files)
    assert any(f.startswith("results/objective-search/") for f in files)
    assert not any(f.endswith((".pt", ".png", ".log")) or "cpu-d256x128" in f for f in files)


def test_repository_is_the_checkout_when_run_from_one():
    assert book.repository() == REPO and book.is_checkout(REPO)


@pytest.mark.slow
def test_wheel_carries_the_results(tmp_path):
    """Build a wheel from a copy of the sources (about 5 s) and look inside it."""
    if shutil.which("git") is None:
        pytest.skip("needs git to list the sources")
    src = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    wanted = ("dfkd_lib/", "results/", "recipes/", "scripts/")
    for rel in set(tracked.split()) | {"setup.py", "MANIFEST.in"}:
        if (rel.startswith(wanted) or "/" not in rel) and (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO / rel, src / rel)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(tmp_path),
        str(src),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("dfkd_lib-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = "dfkd_lib/repository/"
    for run in _protocol_runs():
        assert f"{shipped}results/cpu/{run}/log.jsonl" in names
    summary = json.loads(zipfile.ZipFile(wheel).read(f"{shipped}results/cpu/summary.json"))
    on_disk = json.loads((REPO / "results" / "cpu" / "summary.json").read_text())
    assert summary == on_disk and len(summary["groups"]) == 10
    assert f"{shipped}scripts/run_cpu_protocol.sh" in names and "dfkd_lib/weights/resnet26_cifar10.pt" in names
