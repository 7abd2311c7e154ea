"""Checks of the built book that Sphinx's warnings do not cover; run by ``scripts/build_book.sh``.

``{glue:text}`` pastes a value as plain text, so Markdown inside it (a method name in backticks,
bold) shows up literally on the page: such values must be glued as ``Markdown(...)`` and pasted
with ``{glue:md}``. This script finds every pasted text of the built HTML that still holds Markdown
and exits with 1, naming the page and the text.

It also finds every image whose alt text is only its file name (what Sphinx writes when a figure
has none): a notebook cell that draws a figure gives it alt text, and a caption where it can, in
its ``mystnb`` metadata (``image: alt``, ``figure: caption, name``).

    python scripts/check_book.py [_build/html]
"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

PASTED = re.compile(r'<span class="pasted-text">(.*?)</span>', re.S)
MARKUP = re.compile(r"`|\*\*")
IMAGE = re.compile(r"<img\b[^>]*>", re.S)
ATTR = re.compile(r'(\w+)="([^"]*)"')


def markup_in_pasted_text(page: str) -> list[str]:
    """The pasted texts (``{glue:text}``) of one HTML page that hold Markdown markup."""
    texts = (html.unescape(t) for t in PASTED.findall(page))
    return [t for t in texts if MARKUP.search(t)]


def images_without_alt(page: str) -> list[str]:
    """The ``src`` of every image of one HTML page whose alt text is missing or only its path."""
    out = []
    for tag in IMAGE.findall(page):
        attrs = dict(ATTR.findall(tag))
        src, alt = html.unescape(attrs.get("src", "")), html.unescape(attrs.get("alt", "")).strip()
        if not alt or alt == src or alt.endswith((".png", ".svg", ".jpg", ".jpeg")):
            out.append(src)
    return out


def main(root: str = "_build/html") -> int:
    pages = sorted(Path(root).rglob("*.html"))
    if not pages:
        print(f"check_book: no HTML pages under {root}: build the book first", file=sys.stderr)
        return 2
    bad = [(p, t) for p in pages for t in markup_in_pasted_text(p.read_text(encoding="utf-8"))]
    for page, text in bad:
        print(f"{page}: Markdown in a {{glue:text}} value (glue it as Markdown, paste with {{glue:md}}): {text!r}")
    no_alt = [(p, src) for p in pages for src in images_without_alt(p.read_text(encoding="utf-8"))]
    for page, src in no_alt:
        print(f"{page}: image without alt text (give its cell mystnb: image: alt): {src}")
    print(f"check_book: {len(pages)} pages, {len(bad) + len(no_alt)} problem(s)")
    return 1 if bad or no_alt else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
