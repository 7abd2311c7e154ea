"""scripts/check_book.py: the checks of the built book that Sphinx does not make."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _module():
    spec = importlib.util.spec_from_file_location("check_book", REPO / "scripts" / "check_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_markup_in_pasted_text_is_found_and_plain_values_pass(tmp_path):
    check = _module()
    page = (
        '<p>From <span class="pasted-text">the shipped students (60 epochs each)</span>, '
        'of <span class="pasted-text">`scratch`: the shipped student</span> and '
        '<span class="pasted-text">a &lt;b&gt; **bold** claim</span>; '
        '<span class="pasted-inline"><code>kd</code></span></p>'
    )
    assert check.markup_in_pasted_text(page) == ["`scratch`: the shipped student", "a <b> **bold** claim"]
    _main_fails_only_on(check, tmp_path, '<span class="pasted-text">85.66</span>', page)
    assert check.main(str(tmp_path / "missing")) == 2


def _main_fails_only_on(check, folder, good, bad):
    """check_book passes a folder with the good page and fails once the bad page is added."""
    (folder / "ok.html").write_text(good)
    assert check.main(str(folder)) == 0
    (folder / "bad.html").write_text(bad)
    assert check.main(str(folder)) == 1


def test_images_without_alt_text_are_found(tmp_path):
    check = _module()
    page = (
        '<img alt="Colab logo" src="../_static/logo.png">'
        '<img alt="../_images/ab12.png" src="../_images/ab12.png" />'
        '<img src="../_images/cd34.png">'
        '<img alt="Bar chart of the teacher&#39;s accuracy per class" src="../_images/ef56.png" />'
    )
    assert check.images_without_alt(page) == ["../_images/ab12.png", "../_images/cd34.png"]
    _main_fails_only_on(check, tmp_path, '<img alt="A heatmap of one flow item" src="x.png">', page)
