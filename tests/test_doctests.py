"""The examples in the library's docstrings give what they say."""

import doctest
import importlib
import pkgutil

import pytest

import dfkd_lib

MODULES = sorted(m.name for m in pkgutil.iter_modules(dfkd_lib.__path__) if not m.name.startswith("_"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"dfkd_lib.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_there_are_examples_to_check():
    finder = doctest.DocTestFinder()
    n = sum(len(t.examples) for name in MODULES for t in finder.find(importlib.import_module(f"dfkd_lib.{name}")))
    assert n >= 2
