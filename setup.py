"""Packaging: everything is in pyproject.toml except one build step, defined here.

The chapters read files of the repository that are not Python modules: chapter 7 the committed
run logs (``results/``), the full-scale recipes (``recipes/``) and the protocol scripts
(``scripts/*.sh``); chapters 2, 5 and 6 the protocol's ``summary.json``. A wheel carries a copy of
them in ``dfkd_lib/repository/`` (copied at build time, so it can never be out of date), and
:func:`dfkd_lib.book.repository` finds it when dfkd_lib is not run from a checkout: chapter 7
then shows the same results after ``pip install``. ``MANIFEST.in`` puts the same files in an
sdist, so that a wheel built from the sdist has them too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent

#: Folders and files of the repository that the package carries, and the kinds of file kept from
#: the folders (run logs and their configs, reports, recipes, scripts; never weights, checkpoints
#: or figures).
SHIPPED = [
    "results/cpu", "results/cpu60", "results/method-screen", "results/method-pilots", "results/adv-search",
    "results/objective-search", "results/full", "recipes",
    "scripts/run_cpu_protocol.sh", "scripts/run_protocol60.sh", "scripts/adv_search.sh",
    "scripts/objective_search.sh", "scripts/_search.sh",
]  # fmt: skip
PATTERNS = ("*.json", "*.jsonl", "*.md", "*.yaml", "*.sh")


def shipped_files(root: Path = ROOT) -> list[Path]:
    """The files of :data:`SHIPPED` under ``root`` (paths relative to it), sorted."""
    found: set[Path] = set()
    for name in SHIPPED:
        path = root / name
        if path.is_file():
            found.add(path)
        elif path.is_dir():
            found.update(f for pattern in PATTERNS for f in path.rglob(pattern) if f.is_file())
    return sorted(f.relative_to(root) for f in found)


class BuildPyWithRepositoryFiles(build_py):
    """``build_py``, then the files of :data:`SHIPPED` copied into ``dfkd_lib/repository/``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install runs from the checkout, which has the files themselves
        target = Path(self.build_lib) / "dfkd_lib" / "repository"
        shutil.rmtree(target, ignore_errors=True)
        for rel in shipped_files():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / rel, target / rel)


if __name__ == "__main__":  # as the build backend runs it (importing it, say in a test, builds nothing)
    setup(cmdclass={"build_py": BuildPyWithRepositoryFiles})
