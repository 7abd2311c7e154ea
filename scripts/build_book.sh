#!/usr/bin/env bash
# Install the library with the book's tools and build the whole book, every chapter executed,
# into _build/html. Execution errors and Sphinx warnings fail the build.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[book]"
jupyter-book build . --all -W -n --keep-going "$@"
echo "book built: $(pwd)/_build/html/index.html"
