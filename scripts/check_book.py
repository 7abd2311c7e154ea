"""Checks of the built book that Sphinx's warnings do not cover; run by ``scripts/build_book.sh``.

``{glue:text}`` pastes a value as plain text, so Markdown inside it (a method name in backticks,
bold) shows up literally on the page: such values must be glued as ``Markdown(...)`` and pasted
with ``{glue:md}``. This script finds every pasted text of the built HTML that still holds Markdown
and exits with 1, naming the page and the text.

    python scripts/check_book.py [_build/html]
"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

PASTED = re.compile(r'<span class="pasted-text">(.*?)</span>', re.S)
MARKUP = re.compile(r"`|\*\*")


def markup_in_pasted_text(page: str) -> list[str]:
    """The pasted texts (``{glue:text}``) of one HTML page that hold Markdown markup."""
    texts = (html.unescape(t) for t in PASTED.findall(page))
    return [t for t in texts if MARKUP.search(t)]


def main(root: str = "_build/html") -> int:
    pages = sorted(Path(root).rglob("*.html"))
    if not pages:
        print(f"check_book: no HTML pages under {root}: build the book first", file=sys.stderr)
        return 2
    bad = [(p, t) for p in pages for t in markup_in_pasted_text(p.read_text(encoding="utf-8"))]
    for page, text in bad:
        print(f"{page}: Markdown in a {{glue:text}} value (glue it as Markdown, paste with {{glue:md}}): {text!r}")
    print(f"check_book: {len(pages)} pages, {len(bad)} problem(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
