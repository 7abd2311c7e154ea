"""The chapters' helper: setup without data, and the clear error when data are then asked for."""

import pytest
import torch

from dfkd_lib import book
from dfkd_lib.data import DataNotFoundError, get_loaders
from dfkd_lib.models import cifar_resnet, count_macs
from dfkd_lib.train import config_for


def _no_cifar(name="cifar10", root=None, download=False):
    raise DataNotFoundError("no CIFAR-10 here")


def test_setup_without_data_loads_nothing_and_says_so(monkeypatch, capsys):
    monkeypatch.setenv("DFKD_REQUIRE_DATA", "1")  # would raise if it looked for CIFAR-10 and missed
    monkeypatch.setattr(book, "load_cifar", _no_cifar)
    ch = book.setup("quick", data=False)
    assert ch.data is None and not ch.synthetic
    out = capsys.readouterr().out
    assert "no data loaded" in out and "generated" not in out and ch.hardware in out
    with pytest.raises(RuntimeError, match="without data"):
        ch.loaders()
    with pytest.raises(RuntimeError, match="without data"):
        ch.images([0])


def test_setup_falls_back_to_generated_data(monkeypatch):
    monkeypatch.delenv("DFKD_REQUIRE_DATA", raising=False)
    monkeypatch.setattr(book, "load_cifar", _no_cifar)
    ch = book.setup("quick", verbose=False)
    assert ch.synthetic and ch.val_size == 500
    x, y = ch.images([0, 1])
    assert x.shape == (2, 3, 32, 32) and y.shape == (2,)
    # normalised exactly as the loaders' batches: the test loader keeps the stored order
    xl, yl = next(iter(get_loaders(ch.data, eval_batch_size=2, val_size=0).test))
    assert torch.equal(x, xl.to(x.device)) and torch.equal(y, yl.to(y.device))


def test_setup_requiring_data_raises_when_it_is_missing(monkeypatch):
    monkeypatch.setenv("DFKD_REQUIRE_DATA", "1")
    monkeypatch.setattr(book, "load_cifar", _no_cifar)
    with pytest.raises(DataNotFoundError):
        book.setup("quick", verbose=False)


def test_setup_downloads_only_in_colab_unless_asked(monkeypatch):
    """Colab has no copy of CIFAR-10: there setup downloads it; elsewhere only when asked."""
    monkeypatch.delenv("DFKD_REQUIRE_DATA", raising=False)
    asked = []

    def record(name="cifar10", root=None, download=False):
        asked.append(download)
        raise DataNotFoundError("no CIFAR-10 here")

    monkeypatch.setattr(book, "load_cifar", record)
    book.setup("quick", verbose=False)
    book.setup("quick", verbose=False, download=True)
    monkeypatch.setattr(book, "in_colab", lambda: True)
    book.setup("quick", verbose=False)
    book.setup("quick", verbose=False, download=False)
    assert asked == [False, True, True, False]


def test_glue_without_myst_nb_shows_every_value(monkeypatch, capsys):
    """In Colab the prose cannot show glued values, so the Colab editions point at the cell output."""
    import sys

    monkeypatch.setitem(sys.modules, "myst_nb", None)  # import fails, as in Colab
    book.glue("hidden", 1.5, display=False)
    book.glue("shown", "a value")
    book.glue("accuracy", 9.179999351501465, display=False)  # a float32 read back: 4 digits
    book.glue("count", 5265, display=False)
    book.glue("speed", 12345.6, display=False)  # not 1.235e+04
    assert capsys.readouterr().out == "hidden: 1.5\na value\naccuracy: 9.18\ncount: 5265\nspeed: 12346\n"


def test_chapters_import_nothing_that_colab_lacks():
    """In Colab a chapter installs only dfkd_lib: its code must not import the book's build tools."""
    import json
    from pathlib import Path

    chapters = sorted((Path(__file__).resolve().parent.parent / "book").glob("*.ipynb"))
    assert len(chapters) >= 8
    for path in chapters:
        code = "\n".join(
            "".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"
        )
        for tool in ("myst_nb", "jupyter_book", "sphinx"):
            assert f"import {tool}" not in code and f"from {tool}" not in code, (path.name, tool)


def test_every_chapter_installs_the_library_in_colab_before_it_first_imports_it():
    """In Colab nothing is installed: the ``google.colab`` guard that installs dfkd_lib must come before
    the chapter's first import of it (the preface's answer cell and the method-decisions page once
    imported it without)."""
    import json
    import re
    from pathlib import Path

    chapters = sorted((Path(__file__).resolve().parent.parent / "book").glob("*.ipynb"))
    assert len(chapters) >= 8
    for path in chapters:
        code = "\n".join(
            "".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"
        )
        guard = re.search(r'if "google\.colab" in sys\.modules:.*\n\s+%pip install [^\n]*dfkd_lib', code)
        imports = re.search(r"^(from dfkd_lib|import dfkd_lib)", code, re.M)
        assert imports, path.name
        assert guard and guard.start() < imports.start(), path.name


def test_a_gpu_picks_the_gpu_profile_and_full_only_when_asked(monkeypatch, capsys):
    """On a GPU the default runs chapters in minutes; the paper-scale profile is opt-in."""
    monkeypatch.delenv("DFKD_PROFILE", raising=False)
    monkeypatch.setattr(book, "pick_device", lambda name="auto": torch.device("cuda"))
    ch = book.setup(data=False)
    assert ch.profile == "gpu" and ch.epochs == 15 and ch.max_train_batches is None and ch.seeds == (0,)
    assert book.setup("full", data=False).epochs == 182
    monkeypatch.setenv("DFKD_PROFILE", "full")
    assert book.setup(data=False).profile == "full"


def test_expect_prints_the_rule_s_estimate(monkeypatch, capsys):
    monkeypatch.delenv("DFKD_REQUIRE_DATA", raising=False)
    monkeypatch.setattr(book, "load_cifar", _no_cifar)
    ch = book.setup("quick", verbose=False)  # generated data: 5,000 training images, 500 held out
    capsys.readouterr()
    seconds = ch.expect("scratch", repeat=2)
    steps = ch.epochs * min(ch.max_train_batches, 4500 // ch.batch_size)  # 3 x 35
    flops, _, _ = book.device_throughput(ch.device)
    one = book.estimate_seconds("scratch", steps, 128, 2 * 12_239_488, 0.0, 3 * (500 + 1000), flops)
    assert seconds == pytest.approx(2 * one)
    out = capsys.readouterr().out
    assert out.startswith("expected time: about ") and " in all for scratch (3 epochs x 35 batches), 2 times" in out
    ch.expect("scratch")
    assert " in all" not in capsys.readouterr().out  # one run: its own time
    ch.expect("scratch", "kd")
    assert "in all for scratch (3 epochs x 35 batches) and kd (" in capsys.readouterr().out


def test_estimate_rule_counts_teacher_and_student_passes():
    """3 student passes and 1 teacher pass per image: kd on ResNet-26 -> ResNet-8, 1,000 images at 1 GFLOP/s."""
    s, t = 24.5e6, 109.4e6
    assert book.estimate_seconds("scratch", 10, 100, s, t, 0, 1e9) == pytest.approx(1000 * 3 * s / 1e9)
    assert book.estimate_seconds("kd", 10, 100, s, t, 0, 1e9) == pytest.approx(1000 * (3 * s + t) / 1e9)
    adv = book.estimate_seconds("adv-dense", 10, 100, s, t, 0, 1e9, step_overhead_s=0.01)
    assert adv == pytest.approx(1.25 * 1000 * (3 * s + t) / 1e9 + 0.1)


def test_profile_run_seconds_is_the_rule_on_the_profile_s_run():
    """The gpu profile: 15 epochs of 351 batches, 5,000 + 10,000 images evaluated after each, on a T4;
    fsp's flow-only stage comes on top of its epochs; quick is 3 epochs of 40 batches and 2,000 test images."""
    s, t = 2 * count_macs(cifar_resnet(8)), 2 * count_macs(cifar_resnet(26))
    t4 = book.GPU_EFFICIENCY * book.GPU_FP32_PEAK["T4"]
    kd = book.estimate_seconds("kd", 15 * 351, 128, s, t, 15 * 15_000, t4, book.gpu_step_overhead("kd"), True)
    assert book.profile_run_seconds("kd") == pytest.approx(kd)
    epochs = config_for("fsp", epochs=15).total_epochs
    assert epochs > 15
    fsp = book.estimate_seconds("fsp", epochs * 351, 128, s, t, epochs * 15_000, t4, book.gpu_step_overhead("fsp"),
                                True)  # fmt: skip
    assert book.profile_run_seconds("fsp") == pytest.approx(fsp)
    quick = book.estimate_seconds("scratch", 3 * 40, 128, s, 0.0, 3 * 7_000, t4, book.gpu_step_overhead("scratch"),
                                  True)  # fmt: skip
    assert book.profile_run_seconds("scratch", "quick") == pytest.approx(quick)
    assert book.profile_run_seconds("kd", gpu="A100") < book.profile_run_seconds("kd")
    with pytest.raises(ValueError, match="profile"):
        book.profile_run_seconds("kd", "slow")
    with pytest.raises(ValueError, match="GPU"):
        book.profile_run_seconds("kd", gpu="K80")


def test_the_gpu_rule_gives_the_h200_s_measured_steps_and_adds_arithmetic_on_a_t4():
    """On an H200 one step of each method takes what it measured (GPU_STEP_MS_H200); a T4 adds only
    the time of the step's FLOPs at its lower peak; a CPU adds nothing per step. A new combination
    counts as the longest measured method its name contains."""
    s, t = 2 * count_macs(cifar_resnet(8)), 2 * count_macs(cifar_resnet(26))
    h200, t4 = (book.GPU_EFFICIENCY * book.GPU_FP32_PEAK[g] for g in ("H200", "T4"))
    for method, ms in book.GPU_STEP_MS_H200.items():
        teacher = 0.0 if method == "scratch" else t
        step = book.estimate_seconds(method, 1, 128, s, teacher, 0, h200, book.gpu_step_overhead(method), True)
        assert step * 1e3 == pytest.approx(ms)
        slower = book.estimate_seconds(method, 1, 128, s, teacher, 0, t4, book.gpu_step_overhead(method), True)
        # only the arithmetic, without the CPU's factor for small kernels (the GPU's step holds them)
        arithmetic = 128 * (3 * s + teacher)
        assert slower - step == pytest.approx(arithmetic / t4 - arithmetic / h200)
    assert book.gpu_step_overhead("kd-adv-dense-v3") == book.gpu_step_overhead("kd-adv-dense")
    assert book.gpu_step_overhead("adv-fsp") == book.gpu_step_overhead("adv")  # a tie: the slower
    assert book.gpu_step_overhead("adv-dense") > 4 * book.gpu_step_overhead("kd")  # launch-bound discriminators
    _, overhead, _ = book.device_throughput(torch.device("cpu"))
    assert overhead("adv-dense") == 0.0


def test_student_loads_the_shipped_one_and_trains_one_when_none_is_or_when_asked(monkeypatch, tmp_path):
    import json

    from dfkd_lib import pretrained
    from dfkd_lib.checkpoint import save_model
    from dfkd_lib.models import cifar_resnet

    monkeypatch.delenv("DFKD_REQUIRE_DATA", raising=False)
    monkeypatch.delenv("DFKD_TRAIN_STUDENTS", raising=False)
    monkeypatch.setattr(book, "load_cifar", _no_cifar)
    # a manifest with one student, of method scratch
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    torch.manual_seed(0)
    save_model(cifar_resnet(8), tmp_path / "s.pt")
    entry = {"file": "s.pt", "sha256": pretrained.sha256(tmp_path / "s.pt"), "arch": "resnet8", "dataset": "cifar10",
             "role": "student", "method": "scratch", "labelled_fraction": 1.0, "teacher": "resnet26_cifar10_e80"}  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps({"resnet8_cifar10_scratch": entry}))
    ch = book.setup("quick", verbose=False)
    ch.epochs, ch.max_train_batches = 1, 2  # a tiny training run
    shipped = ch.student("scratch")
    assert shipped.meta["source"] == "shipped" and shipped.meta["teacher"] == "resnet26_cifar10_e80"
    assert not shipped.training
    trained = ch.student("scratch", train=True)
    assert trained.meta == {"source": "trained here", "method": "scratch", "epochs": 1, "teacher": None}
    assert not torch.equal(trained.fc.weight.cpu(), shipped.fc.weight.cpu())
    monkeypatch.setenv("DFKD_TRAIN_STUDENTS", "1")
    assert ch.student("scratch").meta["source"] == "trained here"
    with pytest.raises(KeyError, match="no shipped student of method 'kd'"):
        ch.student("kd", train=False)


def test_students_note_never_passes_off_a_page_s_training_as_shipped():
    from dfkd_lib.models import cifar_resnet

    shipped, here = cifar_resnet(8), cifar_resnet(8)
    shipped.meta, here.meta = {"source": "shipped", "epochs": 60}, {"source": "trained here", "epochs": 3}
    note = book.Chapter.students_note
    assert note({"scratch": shipped, "kd": shipped}) == "the shipped students (60 epochs each)"
    assert note({"scratch": here, "kd": here}) == (
        "students trained on this page (3 epochs each; none is shipped, or they were asked for)"
    )
    mixed = note({"scratch": shipped, "kd": here})
    assert mixed == ("`scratch`: the shipped student (60 epochs); "
                     "`kd`: trained on this page (3 epochs; none is shipped, or it was asked for)")  # fmt: skip


def test_teacher_of_is_the_teacher_the_students_learnt_from(monkeypatch):
    from dfkd_lib import pretrained
    from dfkd_lib.models import cifar_resnet

    monkeypatch.delenv("DFKD_REQUIRE_DATA", raising=False)
    monkeypatch.setattr(book, "load_cifar", _no_cifar)
    ch = book.setup("quick", verbose=False)
    page_teacher = cifar_resnet(14).eval()
    ch._teacher, ch._teacher_spec = page_teacher, "page-teacher"
    scratch, kd, other = cifar_resnet(8), cifar_resnet(8), cifar_resnet(8)
    scratch.meta, kd.meta = (
        {"source": "trained here", "teacher": None},
        {"source": "trained here", "teacher": "page-teacher"},
    )
    assert ch.teacher_of({"scratch": scratch, "kd": kd}) == ("page-teacher", page_teacher)
    assert ch.teacher_of({"scratch": scratch})[1] is page_teacher  # no teacher named: the page's
    # shipped students name theirs: it is loaded once, frozen, in eval mode
    loaded = []
    monkeypatch.setattr(pretrained, "load_teacher", lambda name: loaded.append(name) or cifar_resnet(14))
    kd.meta = other.meta = {"source": "shipped", "teacher": "resnet26_cifar10_e80"}
    name, net = ch.teacher_of({"scratch": scratch, "kd": kd})
    assert name == "resnet26_cifar10_e80" and not net.training
    assert not any(p.requires_grad for p in net.parameters())
    assert ch.teacher_of({"kd": other})[1] is net and loaded == ["resnet26_cifar10_e80"]
    other.meta = {"source": "shipped", "teacher": "resnet26_cifar10"}
    with pytest.raises(ValueError, match="different teachers"):
        ch.teacher_of({"kd": kd, "other": other})


def test_students_for_a_comparison_are_all_shipped_or_all_trained_here(monkeypatch, tmp_path):
    import json

    from dfkd_lib import pretrained
    from dfkd_lib.checkpoint import save_model
    from dfkd_lib.models import cifar_resnet

    monkeypatch.delenv("DFKD_REQUIRE_DATA", raising=False)
    monkeypatch.delenv("DFKD_TRAIN_STUDENTS", raising=False)
    monkeypatch.setattr(book, "load_cifar", _no_cifar)
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    save_model(cifar_resnet(8), tmp_path / "s.pt")
    entry = {"file": "s.pt", "sha256": pretrained.sha256(tmp_path / "s.pt"), "arch": "resnet8", "dataset": "cifar10",
             "role": "student", "method": "scratch", "labelled_fraction": 1.0, "teacher": "resnet26_cifar10_e80"}  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps({"resnet8_cifar10_scratch": entry}))
    ch = book.setup("quick", verbose=False)
    ch.epochs, ch.max_train_batches = 1, 2
    assert ch.students(["scratch"])["scratch"].meta["source"] == "shipped"
    ch._teacher, ch._teacher_spec = cifar_resnet(14).eval(), "a-teacher"  # no shipped teacher here
    # kd is not shipped: both are trained here, with the same budget
    both = ch.students(["scratch", "kd"])
    assert {m: s.meta["source"] for m, s in both.items()} == {"scratch": "trained here", "kd": "trained here"}


def test_every_glue_role_in_the_chapters_is_closed():
    """A role such as {glue:text}`name:.0f} (a missing backtick) swallows the prose up to the next
    backtick; the build would then miss a key with a confusing message. Names have no spaces."""
    import json
    import re
    from pathlib import Path

    bad = []
    for page in sorted((Path(__file__).resolve().parent.parent / "book").glob("*.ipynb")):
        for cell in json.loads(page.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                text = "".join(cell["source"])
                bad += [f"{page.name}: {m[:40]!r}" for m in re.findall(r"\{glue:\w+\}`([^`]*)`", text)
                        if re.search(r"[\s{}]", m)]  # fmt: skip
    assert not bad, bad
