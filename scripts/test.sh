#!/usr/bin/env bash
# Install the library with its test and book tools, check style, run the tests. Extra arguments go
# to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# dev = test + book: the notebook tools let tests/test_results_chapter.py execute chapter 7
python -m pip install -q -e ".[dev]"
ruff check .
ruff format --check .
python -m pytest "$@"
