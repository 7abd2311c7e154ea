#!/usr/bin/env bash
# Install the library with the book's tools and build the whole book, every chapter executed,
# into _build/html. Execution errors, Sphinx warnings and the checks of scripts/check_book.py fail
# the build.
# Chapters run in the quick profile, also on a GPU (where they would otherwise pick the gpu
# profile), so that every build shows the same profile's numbers; full (paper scale, hours) would
# be far beyond the build's limit of 900 s per cell (_config.yml).
set -euo pipefail
cd "$(dirname "$0")/.."
export DFKD_PROFILE=${DFKD_PROFILE:-quick}
python -m pip install -q -e ".[book]"
jupyter-book build . --all -W -n --keep-going "$@"
python scripts/check_book.py _build/html   # Markdown pasted as plain text, images without alt text
echo "book built: $(pwd)/_build/html/index.html"
