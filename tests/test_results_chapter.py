"""Chapter 7 as it will read once the 60-epoch protocol leads.

The chapter switches from the 15-epoch protocol to the 60-epoch one by itself, when the latter has
three complete seeds of each method its questions involve (it has since December 2026, so the book
build executes this branch too). This test executes it on the committed logs with the seed
requirement lowered to one, so that the page is checked however many runs a checkout has.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SWITCH = "NEEDED, MIN_SEEDS = report.LEAD_METHODS, 3"


def _texts(nb):
    """Every stream and Markdown output of the executed notebook, and its glued values by name."""
    out, glued = [], {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            data = o.get("data", {})
            text = o.get("text") or data.get("text/markdown") or data.get("text/plain") or ""
            if name:
                glued[name] = next((v for k, v in data.items() if k.endswith(("markdown", "plain"))), "")
            else:
                out.append(text)
    return "\n".join(out), glued


def test_chapter_7_leads_with_the_60_epoch_protocol_when_it_has_the_seeds(monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("myst_nb")  # its glue is what the page's values are read from
    if not (ROOT / "results" / "cpu60").is_dir():
        pytest.skip("no 60-epoch logs in this checkout")
    nb = nbformat.read(ROOT / "book" / "07_results.ipynb", as_version=4)
    cells = [c for c in nb.cells if SWITCH in c.source]
    assert len(cells) == 1, "the chapter's switch between the protocols has changed: update this test"
    cells[0].source = cells[0].source.replace(SWITCH, "NEEDED, MIN_SEEDS = report.LEAD_METHODS, 1")
    monkeypatch.setenv("DFKD_PROFILE", "quick")
    nbclient.NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(ROOT / "book")}}).execute()
    text, glued = _texts(nb)
    assert "Verdict of the 60-epoch protocol on this build" in text
    assert "60-epoch protocol" in glued["lead"]
    assert "criteria" in glued["verdict_short"] and "60-epoch" in glued["why_name"]
    # the explanation from the logs, and the summary's copy of its first sentence
    assert "times `scratch`'s distance" in text and glued["why_short"]
    # every glue name the page's Markdown uses was glued
    used = {m.group(1) for c in nb.cells if c.cell_type == "markdown"
            for m in re.finditer(r"\{glue:\w+\}`(\w+)", c.source)}  # fmt: skip
    assert used <= set(glued), sorted(used - set(glued))
