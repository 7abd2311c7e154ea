"""Write the Colab edition of every chapter: the same notebook without Jupyter-Book-only syntax.

Jupyter Book renders MyST Markdown that Colab shows raw: ``{glue:text}`acc:.2f``` roles where
numbers should be, ``{cite:p}`` keys, ``:::{admonition}`` fences and unfolded solutions. This
script rewrites the Markdown of each chapter in ``book/`` for Colab and writes the result to
``colab/book/`` (the path mirrors the book's, because the Colab launch button of a page opens
``<repository.path_to_book>/<page>.ipynb``: ``_config.yml`` sets ``path_to_book: colab``):

- glued values (``{glue:text}``, ``{glue}``, ``{glue:md}`` roles and the ``{glue:md}``
  directive) become the values of the book's last build, read from the executed notebooks'
  ``_build/jupyter_execute/book/<chapter>.glue.json`` files that myst-nb writes. Without a
  build, the values the existing edition already holds are kept; a value never built becomes
  "(see the cell output)" (in Colab, ``dfkd_lib.book.glue`` prints every glued value);
- ``{cite:p}`` and ``{cite:t}`` become author-year text from ``book/references.bib``, and the
  works cited are listed at the end of the notebook;
- ``{doc}`` becomes a link to that chapter's Colab edition;
- admonitions with ``:class: dropdown`` (the exercise solutions) become HTML
  ``<details><summary>``, other admonitions block quotes, other directives plain Markdown;
- code cells are kept as they are, without outputs; those the book folds (``hide-input``) are
  folded Colab's way, with a ``# @title`` line and ``cellView: form``.

Each edition stores the glued values it used in its metadata, so that ``tests/test_colab.py``
can regenerate it from the chapter and check that it is up to date, build or no build.

Usage (from the repository root)::

    python scripts/make_colab.py                 # after `jupyter-book build .`: fresh numbers
    python scripts/make_colab.py --build /tmp/b  # a build made with --path-output /tmp/b
    python scripts/make_colab.py --check         # exit 1 if an edition is out of date
"""

from __future__ import annotations

import argparse
import ast
import copy
import datetime as dt
import html
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
OUT = ROOT / "colab"
FALLBACK = "(see the cell output)"

# --- configuration ---------------------------------------------------------------------------


def repo_info(root: Path = ROOT) -> tuple[str, str]:
    """The repository URL and branch from ``_config.yml``."""
    config = yaml.safe_load((root / "_config.yml").read_text())
    repo = config.get("repository", {})
    return repo["url"].rstrip("/"), repo.get("branch", "main")


def colab_link(path_in_repo: str, root: Path = ROOT) -> str:
    """The Colab URL that opens a notebook of the repository (a path relative to its root)."""
    url, branch = repo_info(root)
    return f"https://colab.research.google.com/github/{url.split('github.com/', 1)[1]}/blob/{branch}/{path_in_repo}"


def chapters(root: Path = ROOT) -> list[Path]:
    """The notebooks of the book, in the order of ``_toc.yml`` (only those pages have a launch button)."""
    toc = (root / "_toc.yml").read_text()
    listed = re.findall(r"^\s*-?\s*(?:file|root):\s*(\S+)", toc, re.M)
    return [root / f"{name}.ipynb" for name in listed if (root / f"{name}.ipynb").exists()]


# --- bibliography ----------------------------------------------------------------------------


def _bib_field(body: str, name: str) -> str:
    """The value of field ``name`` of a BibTeX entry body ("" when absent), as plain text."""
    m = re.search(rf"\b{name}\s*=\s*", body, re.I)
    if m is None:
        return ""
    i = m.end()
    if body[i] == '"':
        value = body[i + 1 : body.index('"', i + 1)]
    elif body[i] == "{":
        depth, j = 0, i
        for j in range(i, len(body)):  # noqa: B007 (j is used after the loop)
            depth += {"{": 1, "}": -1}.get(body[j], 0)
            if depth == 0:
                break
        value = body[i + 1 : j]
    else:  # a bare number or macro
        value = re.match(r"[^,\n}]*", body[i:]).group(0)
    return _latex_to_text(value)


def _latex_to_text(text: str) -> str:
    """Plain text from a BibTeX value: a few accents, ``--``, no braces, single spaces."""
    accents = {'\\"o': "ö", '\\"u': "ü", '\\"a': "ä", "\\'e": "é", "\\`e": "è", "\\'a": "á", "\\~n": "ñ"}
    text = re.sub(r"\{(\\[\"'`~][a-zA-Z])\}", r"\1", text)
    for k, v in accents.items():
        text = text.replace(k, v)
    text = text.replace("--", "–").replace("{", "").replace("}", "").replace("\\&", "&")
    return re.sub(r"\s+", " ", text).strip()


def load_bib(path: Path) -> dict[str, dict[str, str]]:
    """The entries of a BibTeX file: key -> fields (authors, year, title, venue, doi, url)."""
    text = path.read_text()
    entries: dict[str, dict[str, str]] = {}
    for m in re.finditer(r"^@(\w+)\s*\{\s*([^,\s]+)\s*,", text, re.M):
        end = text.find("\n@", m.end())
        body = text[m.end() : len(text) if end < 0 else end]
        entries[m.group(2)] = {
            "type": m.group(1).lower(),
            "author": _bib_field(body, "author"),
            "year": _bib_field(body, "year"),
            "title": _bib_field(body, "title"),
            "venue": _bib_field(body, "journal") or _bib_field(body, "booktitle") or _bib_field(body, "howpublished"),
            "doi": _bib_field(body, "doi"),
            "url": _bib_field(body, "url"),
        }
    return entries


def author_names(entry: dict[str, str]) -> str:
    """Surnames as an author-year citation gives them: "Hinton et al.", "Zagoruyko and Komodakis"."""
    authors = [a.strip() for a in entry["author"].split(" and ") if a.strip()]
    surnames = [a.split(",")[0].strip() if "," in a else a.split()[-1] for a in authors]
    if not surnames:
        return "Anonymous"
    if len(surnames) == 1:
        return surnames[0]
    if len(surnames) == 2:
        return f"{surnames[0]} and {surnames[1]}"
    return f"{surnames[0]} et al."


def cite_text(keys: list[str], bib: dict[str, dict[str, str]], textual: bool) -> str:
    """A citation as plain text: ``(Hinton et al., 2015; Yim et al., 2017)`` or ``Hinton et al. (2015)``."""
    parts = []
    for key in keys:
        entry = bib.get(key)
        if entry is None:
            parts.append((key, "n.d.") if textual else f"{key}")
            continue
        parts.append((author_names(entry), entry["year"]) if textual else f"{author_names(entry)}, {entry['year']}")
    if textual:
        return "; ".join(f"{names} ({year})" for names, year in parts)
    return "(" + "; ".join(parts) + ")"


def reference_line(entry: dict[str, str]) -> str:
    """One entry of a chapter's reference list, in Markdown."""
    authors = [a.strip() for a in entry["author"].split(" and ") if a.strip()]
    names = [" ".join(reversed([x.strip() for x in a.split(",", 1)])) for a in authors]
    who = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    line = f"{who} ({entry['year']}). *{entry['title']}*."
    if entry["venue"]:
        line += f" {entry['venue']}."
    if entry["doi"]:
        line += f" [doi:{entry['doi']}](https://doi.org/{entry['doi']})"
    elif entry["url"]:
        line += f" <{entry['url']}>"
    return line


# --- glued values ----------------------------------------------------------------------------


def format_plain_text(text: str, fmt_spec: str) -> str:
    """A glued ``text/plain`` value formatted as myst-nb's ``{glue:text}`` formats it."""
    try:
        value: Any = ast.literal_eval(text)
    except (SyntaxError, ValueError):
        value = text
    if fmt_spec == "":
        return str(value)
    kind = fmt_spec[-1]
    if kind == "s":
        value = str(value)
    elif kind in "bcdoxX":
        value = int(value)
    elif kind in "eEfFgGn%":
        value = float(value)
    return format(value, fmt_spec)


def glue_from_outputs(nb: dict) -> dict[str, dict[str, str]]:
    """Glued values of an executed notebook: outputs that ``myst_nb.glue`` marked ``scrapbook``."""
    values = {}
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook")
            if meta:
                n = len(meta.get("mime_prefix", ""))
                values[meta["name"]] = {k[n:]: _text(v) for k, v in out.get("data", {}).items()}
    return values


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def load_build_glue(build: Path, stem: str) -> tuple[dict[str, dict[str, str]], str] | None:
    """The glued values of chapter ``stem`` in a book build, and the build's date; ``None`` if not built.

    myst-nb writes them, executed, to ``<build>/jupyter_execute/book/<stem>.glue.json`` (next to
    the executed notebook, whose outputs no longer hold the values glued with ``display=False``).
    An executed notebook with its glue outputs (``jupyter nbconvert --execute``) is read too.
    """
    folder = build / "jupyter_execute" / "book"
    glue_json = folder / f"{stem}.glue.json"
    if glue_json.exists():
        raw = json.loads(glue_json.read_text())
        values = {k: {m: _text(v) for m, v in out.get("data", {}).items()} for k, out in raw.items()}
        stamp = glue_json.stat().st_mtime
    else:
        executed = folder / f"{stem}.ipynb"
        if not executed.exists():
            return None
        values = glue_from_outputs(json.loads(executed.read_text()))
        if not values:
            return None
        stamp = executed.stat().st_mtime
    return values, dt.datetime.fromtimestamp(stamp, dt.timezone.utc).strftime("%Y-%m-%d")


# --- Markdown conversion ---------------------------------------------------------------------


@dataclass
class Context:
    """What the conversion of one chapter needs, and what it collects."""

    bib: dict[str, dict[str, str]]
    glue: dict[str, dict[str, str]]  # key -> mime type -> text
    titles: dict[str, str]  # chapter stem -> title
    root: Path = ROOT
    cited: list[str] = field(default_factory=list)
    glue_used: set[str] = field(default_factory=set)


FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,}|:{3,})(?P<info>.*)$")
# a code span, with the {name} of a role before it when it is one
INLINE = re.compile(r"(?:\{(?P<role>[A-Za-z][\w:.+-]*)\})?(?P<ticks>`+)(?P<content>.+?)(?P=ticks)", re.S)
ADMONITIONS = {
    "admonition", "note", "tip", "hint", "important", "warning", "caution", "attention", "danger", "error",
    "seealso", "dropdown",
}  # fmt: skip


def _closing(lines: list[str], start: int, fence: str) -> int:
    """Index of the line that closes the fence opened at ``lines[start]`` (``len(lines)`` if none).

    Inside a colon fence, backtick code blocks are skipped, so a ``:::`` in code does not close it.
    """
    char, n = fence[0], len(fence)
    i = start + 1
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m and m.group("fence")[0] == char and len(m.group("fence")) >= n and not m.group("info").strip():
            return i
        if char == ":" and m and m.group("fence")[0] != ":":
            i = _closing(lines, i, m.group("fence"))
        i += 1
    return len(lines)


def _options(body: list[str]) -> tuple[dict[str, str], list[str]]:
    """A directive's ``:key: value`` options (or a leading ``---`` YAML block) and the rest of its body."""
    options: dict[str, str] = {}
    if body and body[0].strip() == "---":
        end = next((i for i in range(1, len(body)) if body[i].strip() == "---"), None)
        if end is not None:
            parsed = yaml.safe_load("\n".join(body[1:end])) or {}
            return {str(k): str(v) for k, v in parsed.items()}, body[end + 1 :]
    i = 0
    while i < len(body):
        m = re.match(r"^\s*:([\w-]+):\s*(.*)$", body[i])
        if not m:
            break
        options[m.group(1)] = m.group(2).strip()
        i += 1
    while i < len(body) and not body[i].strip():
        i += 1
    return options, body[i:]


def glue_value(key: str, ctx: Context, mime: str = "text/plain", fmt: str = "") -> str | None:
    """A glued value as text (``None`` when the build did not glue it)."""
    data = ctx.glue.get(key)
    if data is None or (mime not in data and "text/plain" not in data):
        return None
    ctx.glue_used.add(key)
    if mime == "text/markdown" and mime in data:
        return convert_markdown(data[mime], ctx).strip()
    return format_plain_text(data["text/plain"], fmt)


def _fallback(key: str) -> str:
    return f"`{key}` {FALLBACK}"


def _role(name: str, content: str, ctx: Context) -> str:
    """The plain Markdown of one MyST role, ``{name}`content```."""
    content = content.strip()
    title, target = content, content
    explicit = re.match(r"^(.*?)\s*<([^<>]+)>$", content, re.S)
    if explicit:
        title, target = explicit.group(1).strip(), explicit.group(2).strip()
    if name.startswith("glue"):
        content = content.split("::")[-1]  # "doc::key": a value glued in another page (not used here)
    if name in ("glue", "glue:", "glue:any", "glue:text"):
        key, _, fmt = content.rpartition(":") if ":" in content else (content, "", "")
        value = glue_value(key, ctx, fmt=fmt)
        return value if value is not None else _fallback(key)
    if name == "glue:md":
        key = content.rsplit(":", 1)[0] if ":" in content else content
        value = glue_value(key, ctx, mime="text/markdown")
        return value if value is not None else _fallback(key)
    if name.startswith("cite"):
        keys = [k.strip() for k in target.split(",") if k.strip()]
        for k in keys:
            if k not in ctx.cited:
                ctx.cited.append(k)
        if name in ("cite:author", "cite:authors"):
            return "; ".join(author_names(ctx.bib[k]) if k in ctx.bib else k for k in keys)
        if name == "cite:year":
            return "; ".join(ctx.bib.get(k, {}).get("year", k) for k in keys)
        return cite_text(keys, ctx.bib, textual=name in ("cite:t", "cite:ts", "cite:ct"))
    if name == "doc":
        stem = Path(target).name.removesuffix(".ipynb").removesuffix(".md")
        text = title if explicit else ctx.titles.get(stem, stem)
        if (ctx.root / "book" / f"{stem}.ipynb").exists():
            return f"[{text}]({colab_link(f'colab/book/{stem}.ipynb', ctx.root)})"
        url, branch = repo_info(ctx.root)
        return f"[{text}]({url}/blob/{branch}/book/{stem}.md)"
    if name == "math":
        return f"${content}$"
    if name == "eq":
        return f"({target})"
    if name in ("sub", "sup"):
        return f"<{name}>{content}</{name}>"
    if name == "abbr":
        return re.sub(r"\s*\(.*\)$", "", content)
    if name in ("code", "literal", "file", "command", "kbd", "samp"):
        return f"`{content}`"
    return title  # ref, numref, term, download and any other role: its text


def convert_inline(text: str, ctx: Context) -> str:
    """Roles replaced by plain Markdown; code spans left as they are."""

    text = INLINE.sub(lambda m: _role(m["role"], m["content"], ctx) if m["role"] else m[0], text)
    text = re.sub(r"^\(([^()\s]+)\)=\s*$\n?", "", text, flags=re.M)  # targets: (label)=
    text = re.sub(r"^%.*$\n?", "", text, flags=re.M)  # MyST comments
    return re.sub(r"^(\s*\$\$)\s*\([^()\s]+\)\s*$", r"\1", text, flags=re.M)  # $$ (label)


def _summary(title: str) -> str:
    """An admonition title as HTML for ``<summary>`` (where Markdown is not rendered)."""
    parts = re.split(r"(`[^`]+`)", title)
    out = []
    for p in parts:
        if p.startswith("`") and p.endswith("`") and len(p) > 1:
            out.append(f"<code>{html.escape(p[1:-1])}</code>")
        else:
            p = html.escape(p, quote=False)
            out.append(
                re.sub(
                    r"\*\*(.+?)\*\*|\*(.+?)\*",
                    lambda m: f"<i>{m.group(2)}</i>" if m.group(2) else f"<b>{m.group(1)}</b>",
                    p,
                )
            )
    return "".join(out)


def _directive(name: str, arg: str, options: dict[str, str], body: list[str], ctx: Context) -> list[str]:
    """The plain Markdown lines of one directive."""
    if name.startswith("glue"):
        key = arg.strip()
        # a glued figure or equation cannot be written as text: the cell output shows it
        value = None if name in ("glue:figure", "glue:math") else glue_value(key, ctx, mime="text/markdown")
        return (value if value is not None else _fallback(key)).splitlines()
    if name in ADMONITIONS:
        title = arg.strip() or name.capitalize()
        if name != "admonition" and arg.strip():
            title = f"{name.capitalize()}: {arg.strip()}"
        title = convert_inline(title, ctx)
        inner = convert_lines(body, ctx)
        if name == "dropdown" or "dropdown" in options.get("class", "").split():
            return ["<details>", f"<summary><b>{_summary(title)}</b></summary>", "", *inner, "", "</details>"]
        return [f"> **{title}**", ">", *[f"> {line}" if line.strip() else ">" for line in inner]]
    if name in ("code-block", "code", "sourcecode", "code-cell"):
        return [f"```{arg.strip()}", *body, "```"]
    if name == "math":
        return ["$$", *body, "$$"]
    if name in ("figure", "image"):
        url, branch = repo_info(ctx.root)
        src = arg.strip()
        if not re.match(r"^[a-z]+://", src):
            src = f"{url.replace('github.com', 'raw.githubusercontent.com')}/{branch}/book/{src}"
        caption = " ".join(line.strip() for line in convert_lines(body, ctx) if line.strip())
        alt = options.get("alt", caption or Path(src).stem)
        lines = [f"![{alt}]({src})"]
        return lines + (["", f"*{caption}*"] if caption else [])
    if name in ("tableofcontents", "bibliography", "toctree"):
        return []
    return convert_lines(body, ctx)  # any other directive: its content as plain Markdown


def convert_lines(lines: list[str], ctx: Context) -> list[str]:
    """Markdown lines converted: fences and directives block by block, roles in the text between."""
    out: list[str] = []
    text: list[str] = []

    def flush() -> None:
        if text:
            out.extend(convert_inline("\n".join(text), ctx).split("\n"))
            text.clear()

    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            text.append(lines[i])
            i += 1
            continue
        flush()
        fence, info = m.group("fence"), m.group("info").strip()
        end = _closing(lines, i, fence)
        body = lines[i + 1 : end]
        directive = re.match(r"^\{([^}]+)\}\s*(.*)$", info)
        if directive:
            options, content = _options(body)
            out.extend(_directive(directive.group(1).strip(), directive.group(2), options, content, ctx))
        else:
            out.extend(lines[i : min(end + 1, len(lines))])  # a code block, verbatim
        i = end + 1
    flush()
    return out


def convert_markdown(source: str, ctx: Context) -> str:
    """MyST Markdown as Markdown that Colab renders."""
    lines = convert_lines(source.split("\n"), ctx)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


# --- notebooks -------------------------------------------------------------------------------


def title_of(nb: dict) -> str:
    """The first level-1 heading of a notebook."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            m = re.search(r"^#\s+(.+)$", _text(cell["source"]), re.M)
            if m:
                return m.group(1).strip()
    return ""


def _cell(kind: str, source: str, metadata: dict | None = None) -> dict:
    cell = {"cell_type": kind, "metadata": metadata or {}, "source": source.splitlines(keepends=True)}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def convert_notebook(
    nb: dict, stem: str, bib: dict, glue: dict, titles: dict[str, str], glue_from: str, root: Path = ROOT
) -> dict:
    """The Colab edition of one chapter notebook (a new notebook; ``nb`` is not changed).

    Args:
        nb: the chapter, as ``json.load`` reads it.
        stem: its file name without ``.ipynb``.
        bib: :func:`load_bib` of ``book/references.bib``.
        glue: glued values, key -> mime type -> text (empty: none known).
        titles: chapter stem -> title, for ``{doc}`` links.
        glue_from: where the values come from, for the banner ("the build of 2026-01-02").
    """
    ctx = Context(bib=bib, glue=glue, titles=titles, root=root)
    cells = []
    for cell in nb["cells"]:
        source = _text(cell["source"])
        if cell["cell_type"] == "markdown":
            cells.append(_cell("markdown", convert_markdown(source, ctx)))
        elif cell["cell_type"] == "code":
            tags = cell.get("metadata", {}).get("tags", [])
            meta = {"tags": list(tags)} if tags else {}
            if {"hide-input", "remove-input", "hide-cell", "remove-cell"} & set(tags):
                source = "# @title Show the code\n" + source
                meta["cellView"] = "form"
            cells.append(_cell("code", source, meta))
        else:
            cells.append(copy.deepcopy(cell))
    source_path = f"book/{stem}.ipynb"
    if ctx.glue_used:
        numbers = (
            f"The numbers in the text are those of {glue_from} (profile `quick`, on a CPU); when you "
            "run the cells, they print the numbers of your own run."
        )
    else:
        numbers = (
            f"Where the book's text shows a number computed by the code, this edition says "
            f"{FALLBACK!r}: the code cells print every such value when you run them."
        )
    banner = (
        f"*Colab edition of the chapter `{source_path}` of the book "
        "**Adversarial dense flow** (generated by `scripts/make_colab.py`; edit the chapter, not "
        f"this file). {numbers} A GPU runtime (Runtime → Change runtime type) makes the training "
        "cells fast.*"
    )
    cells.insert(0, _cell("markdown", banner))
    if ctx.cited:
        refs = "\n".join(f"- {reference_line(bib[k])}" for k in ctx.cited if k in bib)
        cells.append(_cell("markdown", "## References\n\n" + refs))
    glue_kept = {k: glue[k] for k in sorted(ctx.glue_used)}
    metadata = {
        "accelerator": "GPU",
        "colab": {"gpuType": "T4", "provenance": [], "toc_visible": True},
        "colab_edition": {"source": source_path, "glue_from": glue_from, "glue": glue_kept},
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    return {"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}


def dumps(nb: dict) -> str:
    """A notebook as the file text this script writes (stable, so that editions diff well)."""
    for i, cell in enumerate(nb["cells"]):
        cell["id"] = f"cell-{i}"
    return json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def edition_path(stem: str, out: Path = OUT) -> Path:
    return out / "book" / f"{stem}.ipynb"


def build_editions(
    build: Path | None, out: Path = OUT, root: Path = ROOT, keep_previous: bool = True
) -> dict[Path, str]:
    """Every chapter's edition as file text, by path (nothing is written).

    The glued values of a chapter come from ``build`` when it holds that chapter, else (with
    ``keep_previous``) from the edition already in ``out``, else there are none.
    """
    bib = load_bib(root / "book" / "references.bib")
    notebooks = {p.stem: json.loads(p.read_text()) for p in chapters(root)}
    titles = {stem: title_of(nb) for stem, nb in notebooks.items()}
    editions = {}
    for stem, nb in notebooks.items():
        path = edition_path(stem, out)
        built = load_build_glue(build, stem) if build is not None else None
        if built is not None:
            glue, glue_from = built[0], f"the book's build of {built[1]}"
        elif keep_previous and path.exists():
            previous = json.loads(path.read_text())["metadata"].get("colab_edition", {})
            glue, glue_from = previous.get("glue", {}), previous.get("glue_from", "")
        else:
            glue, glue_from = {}, ""
        editions[path] = dumps(convert_notebook(nb, stem, bib, glue, titles, glue_from, root))
    return editions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", type=Path, default=ROOT / "_build", help="the book's _build folder")
    parser.add_argument("--out", type=Path, default=OUT, help="where the editions go (default: colab/)")
    parser.add_argument("--fresh", action="store_true", help="ignore the values stored in existing editions")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if an edition would change")
    args = parser.parse_args(argv)
    editions = build_editions(args.build, args.out, keep_previous=not args.fresh)
    stale = [p for p, text in editions.items() if not p.exists() or p.read_text() != text]
    extra = sorted(set((args.out / "book").glob("*.ipynb")) - set(editions))
    if args.check:
        for p in stale + extra:
            print(f"out of date: {p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}")
        return 1 if stale or extra else 0
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(editions[p])
    for p in extra:
        p.unlink()
    print(f"{len(editions)} Colab editions in {args.out}: {len(stale)} written, {len(extra)} removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
