import contextlib
import os
import subprocess
import sys

import pytest
import torch

torch.set_num_threads(1)  # tests are small; one thread avoids oversubscribing a 2-core machine


@pytest.fixture(scope="session")
def cifar():
    """The real CIFAR-10 if a copy is found, else skip (CI has it: DFKD_REQUIRE_DATA=1 makes absence a failure)."""
    from dfkd_lib.data import DataNotFoundError, load_cifar

    try:
        return load_cifar("cifar10")
    except DataNotFoundError:
        if os.environ.get("DFKD_REQUIRE_DATA") == "1":
            raise
        pytest.skip("CIFAR-10 not found (set DFKD_DATA)")


@pytest.fixture
def folder_held():
    """``with folder_held(path):`` another process holds ``path/.lock`` as a second training run in
    that folder would; it holds it until the block ends, however slow the machine (it waits on its
    stdin, not on a clock)."""

    @contextlib.contextmanager
    def hold(folder):
        holder = subprocess.Popen(
            [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a'); "
             "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()", str(folder / ".lock")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert holder.stdout.readline().strip() == "held"
            yield
        finally:
            holder.kill()
            holder.wait()

    return hold


@pytest.fixture(scope="session")
def synthetic():
    from dfkd_lib.data import make_synthetic

    return make_synthetic(10, train_per_class=60, test_per_class=20, seed=0)


class _SystemCall:
    """Unpickling this calls ``os.system(command)``: what an untrusted file may hold."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.fixture
def crafted_payload():
    """``crafted_payload(marker)``: an object whose unpickling creates the file ``marker``."""
    return lambda marker: _SystemCall(f"touch {marker}")
