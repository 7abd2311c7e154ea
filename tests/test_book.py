"""The chapters' helper: setup without data, and the clear error when data are then asked for."""

import pytest

from dfkd_lib import book
from dfkd_lib.data import DataNotFoundError


def _no_cifar(name="cifar10", root=None, download=False):
    raise DataNotFoundError("no CIFAR-10 here")


def test_setup_without_data_loads_nothing_and_says_so(monkeypatch, capsys):
    monkeypatch.setenv("DFKD_REQUIRE_DATA", "1")  # would raise if it looked for CIFAR-10 and missed
    monkeypatch.setattr(book, "load_cifar", _no_cifar)
    ch = book.setup("quick", data=False)
    assert ch.data is None and not ch.synthetic
    out = capsys.readouterr().out
    assert "no data loaded" in out and "generated" not in out and ch.hardware in out
    with pytest.raises(RuntimeError, match="without data"):
        ch.loaders()
    with pytest.raises(RuntimeError, match="without data"):
        ch.images([0])


def test_setup_falls_back_to_generated_data(monkeypatch):
    monkeypatch.delenv("DFKD_REQUIRE_DATA", raising=False)
    monkeypatch.setattr(book, "load_cifar", _no_cifar)
    ch = book.setup("quick", verbose=False)
    assert ch.synthetic and ch.val_size == 500
    x, y = ch.images([0, 1])
    assert x.shape == (2, 3, 32, 32) and y.shape == (2,)


def test_setup_requiring_data_raises_when_it_is_missing(monkeypatch):
    monkeypatch.setenv("DFKD_REQUIRE_DATA", "1")
    monkeypatch.setattr(book, "load_cifar", _no_cifar)
    with pytest.raises(DataNotFoundError):
        book.setup("quick", verbose=False)
