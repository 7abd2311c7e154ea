"""The Colab editions of the chapters (``colab/``, written by ``scripts/make_colab.py``).

Colab renders plain Markdown: any MyST role or directive left in an edition shows up raw. These
tests check that no edition holds any, that every edition is what the script makes of the
chapter as it is now (so an edited chapter without a regenerated edition fails here), and what
the conversion makes of each construct.
"""

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
REGENERATE = "run `python scripts/make_colab.py` (after `jupyter-book build .` for fresh numbers)"


def _load_make_colab():
    spec = importlib.util.spec_from_file_location("make_colab", REPO / "scripts" / "make_colab.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_colab"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


mc = _load_make_colab()

# What only Jupyter Book renders, looked for in the Markdown of the editions outside code blocks.
MYST_ONLY = {
    "role": re.compile(r"\{[A-Za-z][\w:.+-]*\}`"),
    "directive": re.compile(r"^\s*(`{3,}|~{3,}|:{3,})\s*\{", re.M),
    "colon fence": re.compile(r"^\s{0,3}:{3,}", re.M),
    "directive option": re.compile(r"^\s*:[\w-]+:(\s|$)", re.M),
    "target": re.compile(r"^\([^()\s]+\)=\s*$", re.M),
    "comment": re.compile(r"^%", re.M),
}


def _without_code_blocks(markdown: str) -> str:
    return re.sub(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1\s*$", "", markdown, flags=re.M | re.S)


def _markdown(cell) -> str:
    return "".join(cell["source"])


def test_every_book_page_that_is_a_notebook_has_an_edition_and_nothing_else_does():
    pages = mc.chapters(REPO)
    assert len(pages) >= 8 and pages[0].name == "00_preface.ipynb"
    expected = {mc.edition_path(p.stem) for p in pages}
    assert set((REPO / "colab" / "book").glob("*.ipynb")) == expected, REGENERATE


def test_editions_are_up_to_date_with_the_chapters():
    """Regenerated from today's chapters with the glued values they store, each edition is unchanged."""
    editions = mc.build_editions(build=None)
    stale = [str(p.relative_to(REPO)) for p, text in editions.items() if not p.exists() or p.read_text() != text]
    assert not stale, f"out of date: {stale}; {REGENERATE}"


@pytest.mark.parametrize("page", [p.stem for p in mc.chapters(REPO)])
def test_edition_holds_no_myst_only_syntax(page):
    nb = json.loads(mc.edition_path(page).read_text())
    assert nb["metadata"]["colab_edition"]["source"] == f"book/{page}.ipynb"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
            continue
        text = _without_code_blocks(_markdown(cell))
        for what, pattern in MYST_ONLY.items():
            m = pattern.search(text)
            assert m is None, f"{page}, cell {i}: {what} left: {text[max(m.start() - 40, 0) : m.end() + 40]!r}"


def test_solutions_are_folded_and_citations_are_text():
    """Chapter 3 has exercise solutions and citations: they must read as <details> and author-year."""
    nb = json.loads(mc.edition_path("03_fsp_flow").read_text())
    chapter = json.loads((REPO / "book" / "03_fsp_flow.ipynb").read_text())
    md = "\n".join(_markdown(c) for c in nb["cells"] if c["cell_type"] == "markdown")
    source = "\n".join(_markdown(c) for c in chapter["cells"] if c["cell_type"] == "markdown")
    assert md.count("<details>") == md.count("</details>") == source.count(":class: dropdown") > 0
    assert "Yim et al." in md and "## References" in md


def test_launch_button_opens_the_editions():
    """The Colab button of page P opens <path_to_book>/P.ipynb: the editions must be there."""
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    assert config["repository"]["path_to_book"] == "colab"
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert "colab" in config["exclude_patterns"]  # the editions are not pages of the book


# --- the conversion itself --------------------------------------------------------------------

BIB = {
    "hinton2015distilling": {"author": "Hinton, Geoffrey and Vinyals, Oriol and Dean, Jeff", "year": "2015",
                             "title": "Distilling", "venue": "arXiv", "doi": "", "url": ""},
    "zagoruyko2017paying": {"author": "Zagoruyko, Sergey and Komodakis, Nikos", "year": "2017",
                            "title": "Paying", "venue": "ICLR", "doi": "", "url": ""},
}  # fmt: skip
GLUE = {
    "acc": {"text/plain": "84.40123"},
    "name": {"text/plain": "'quick'"},
    "table": {"text/plain": "<IPython.core.display.Markdown object>", "text/markdown": "| a |\n|---|\n| 1 |"},
}


def convert(text, glue=GLUE):
    ctx = mc.Context(bib=BIB, glue=glue, titles={"03_fsp_flow": "FSP flow"}, root=REPO)
    return mc.convert_markdown(text, ctx)


def test_glued_values_become_numbers_formatted_as_myst_nb_formats_them():
    assert convert("Accuracy {glue:text}`acc:.2f` % in the {glue:text}`name` profile.") == (
        "Accuracy 84.40 % in the quick profile."
    )
    assert convert("{glue}`acc`, {glue:md}`table:myst`") == "84.40123, | a |\n|---|\n| 1 |"
    assert convert("```{glue:md} table\n:format: myst\n```\nafter") == "| a |\n|---|\n| 1 |\nafter"


def test_glued_values_without_a_build_point_at_the_cell_output():
    assert convert("Accuracy {glue:text}`acc:.2f` %.", glue={}) == "Accuracy `acc` (see the cell output) %."


def test_citations_become_author_year_text():
    assert convert("KD {cite:p}`hinton2015distilling`.") == "KD (Hinton et al., 2015)."
    assert convert("{cite:t}`zagoruyko2017paying` showed") == "Zagoruyko and Komodakis (2017) showed"
    assert convert("{cite:p}`hinton2015distilling,zagoruyko2017paying`") == (
        "(Hinton et al., 2015; Zagoruyko and Komodakis, 2017)"
    )


def test_doc_links_open_the_other_chapters_edition():
    assert convert("See {doc}`03_fsp_flow`.") == (
        "See [FSP flow](https://colab.research.google.com/github/dfkd-book/dfkd-book/blob/main/"
        "colab/book/03_fsp_flow.ipynb)."
    )


def test_admonitions_become_details_or_quotes_and_code_is_left_alone():
    src = (
        ":::{admonition} Exercise 1\nWhy?\n:::\n\n"
        ":::{admonition} Solution\n:class: dropdown\nBecause {glue:text}`acc:.1f`:\n"
        "```python\nprint('{glue:text}`acc`')\n:::\n```\n:::\n\nInline `{cite:p}` stays code."
    )
    assert convert(src) == (
        "> **Exercise 1**\n>\n> Why?\n\n"
        "<details>\n<summary><b>Solution</b></summary>\n\nBecause 84.4:\n"
        "```python\nprint('{glue:text}`acc`')\n:::\n```\n\n</details>\n\nInline `{cite:p}` stays code."
    )


def test_glued_values_are_read_from_a_book_build(tmp_path):
    """myst-nb writes each executed page's glued values beside it, in jupyter_execute/."""
    folder = tmp_path / "jupyter_execute" / "book"
    folder.mkdir(parents=True)
    glued = {"acc": {"data": {"text/plain": "84.4"}, "metadata": {"scrapbook": {"name": "acc"}}}}
    (folder / "02_kd.glue.json").write_text(json.dumps(glued))
    values, date = mc.load_build_glue(tmp_path, "02_kd")
    assert values == {"acc": {"text/plain": "84.4"}} and re.fullmatch(r"\d{4}-\d\d-\d\d", date)
    assert mc.load_build_glue(tmp_path, "03_other") is None
