"""The examples in the library's docstrings give what they say."""

import doctest
import importlib
import pkgutil

import pytest

import dfkd_lib

MODULES = sorted(m.name for m in pkgutil.iter_modules(dfkd_lib.__path__) if not m.name.startswith("_"))
FINDER = doctest.DocTestFinder()


def n_examples(name: str) -> int:
    return sum(len(t.examples) for t in FINDER.find(importlib.import_module(f"dfkd_lib.{name}")))


WITH_EXAMPLES = [name for name in MODULES if n_examples(name)]


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name):
    module = importlib.import_module(f"dfkd_lib.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_the_modules_with_examples_keep_them():
    """Removing a module's examples would silently drop it from the test above."""
    assert {"book", "flow", "protocols", "report"} <= set(WITH_EXAMPLES)
