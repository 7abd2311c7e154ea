"""What several test files share: the checkout, the command line in a subprocess, a run stopped
between epochs. (The test folder is on ``sys.path`` while pytest runs: ``from helpers import ...``.)"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: A subprocess's environment: the library of this checkout, one thread.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def dfkd(*args: str | os.PathLike, **kwargs: Any) -> subprocess.CompletedProcess:
    """``python -m dfkd_lib *args`` in a subprocess (in :data:`ROOT`, with :data:`ENV`), its output
    captured as text; ``kwargs`` go to :func:`subprocess.run`."""
    kwargs = {"env": ENV, "cwd": ROOT, "capture_output": True, "text": True, **kwargs}
    return subprocess.run([sys.executable, "-m", "dfkd_lib", *map(str, args)], **kwargs)


class Killed(Exception):
    """Raised by :func:`stop_after`'s callback: the run stops between epochs, as if killed there."""


def stop_after(epoch: int | None = None) -> Callable[[dict, Any], None]:
    """A ``callback`` for :func:`dfkd_lib.train.train` that raises :class:`Killed` once ``epoch``
    is logged (``None``: the first epoch the run logs)."""

    def die(rec: dict, run: Any) -> None:
        if epoch is None or rec["epoch"] == epoch:
            raise Killed

    return die
