#!/usr/bin/env bash
# Install the library with its test tools, check style, run the tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[test]"
ruff check .
ruff format --check .
python -m pytest "$@"
