import json
import shutil

import pytest

from dfkd_lib import pretrained
from dfkd_lib.checkpoint import CheckpointError
from dfkd_lib.data import get_loaders
from dfkd_lib.train import evaluate

SHIPPED = pretrained.available()
TEACHERS = ["resnet26_cifar10", "resnet26_cifar10_e80"]
STUDENT_METHODS = ["scratch", "kd", "fsp", "dense", "adv-dense", "kd-adv-dense"]


def test_the_manifest_lists_the_shipped_teachers_and_students():
    """The tests below run once per manifest entry, so a broken manifest would leave them with nothing
    to check: the two teachers and the six ResNet-8 students of the 60-epoch protocol must be listed."""
    expected = TEACHERS + [f"resnet8_cifar10_{m}" for m in STUDENT_METHODS]
    missing = sorted(set(expected) - set(SHIPPED))
    assert not missing, f"not in the manifest: {missing}"
    entries = pretrained.manifest()
    assert all(entries[t]["arch"] == "resnet26" and entries[t].get("role") != "student" for t in TEACHERS)
    assert {m: f"resnet8_cifar10_{m}" for m in STUDENT_METHODS}.items() <= pretrained.students().items()
    for m in STUDENT_METHODS:
        assert (pretrained.WEIGHTS_DIR / entries[f"resnet8_cifar10_{m}"]["file"]).is_file(), m


@pytest.mark.parametrize("name", SHIPPED)
def test_manifest_is_complete(name):
    entry = pretrained.manifest()[name]
    for key in ("file", "sha256", "test_acc", "command", "commit", "arch"):
        assert entry[key], key
    assert "dfkd_lib train" in entry["command"]
    assert pretrained.sha256(pretrained.WEIGHTS_DIR / entry["file"]) == entry["sha256"]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_reaches_its_stated_accuracy(cifar, name):
    """Every model of the manifest (teachers and, once shipped, students) re-evaluates on the
    CIFAR-10 test set within 0.1 point of the accuracy its manifest states."""
    model = pretrained.load_pretrained(name)
    stated = pretrained.manifest()[name]["test_acc"]
    acc = evaluate(model, get_loaders(cifar).test)["acc"]
    assert abs(acc - stated) <= 0.1, f"{name}: measured {acc:.2f} %, manifest says {stated} %"


def test_checksum_mismatch_is_reported(tmp_path, monkeypatch):
    entry = pretrained.manifest()["resnet26_cifar10"]
    shutil.copy(pretrained.WEIGHTS_DIR / "manifest.json", tmp_path / "manifest.json")
    data = bytearray((pretrained.WEIGHTS_DIR / entry["file"]).read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / entry["file"]).write_bytes(bytes(data))
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        pretrained.load_pretrained("resnet26_cifar10")


def test_unknown_name_lists_available(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"a_model": {"file": "a.pt", "sha256": "0"}}))
    with pytest.raises(KeyError, match="a_model"):
        pretrained.load_pretrained("resnet1000")
    with pytest.raises(CheckpointError, match="missing"):
        pretrained.load_pretrained("a_model")
    with pytest.raises(FileNotFoundError, match="neither a file nor a pretrained name"):
        pretrained.load_teacher("resnet1000")


def test_students_are_found_by_method(tmp_path, monkeypatch):
    from dfkd_lib.checkpoint import save_model
    from dfkd_lib.models import cifar_resnet

    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    model = cifar_resnet(8)
    save_model(model, tmp_path / "s.pt")
    common = {"arch": "resnet8", "dataset": "cifar10", "role": "student", "teacher": "resnet26_cifar10_e80"}
    entries = {
        "resnet8_cifar10_kd": {"file": "s.pt", "method": "kd", "labelled_fraction": 1.0, **common},
        "resnet8_cifar10_kd_lf0.1": {"file": "s.pt", "method": "kd", "labelled_fraction": 0.1, **common},
        "resnet26_cifar10": {"file": "s.pt", "arch": "resnet26", "dataset": "cifar10"},  # a teacher
    }
    for e in entries.values():
        e["sha256"] = pretrained.sha256(tmp_path / "s.pt")
    (tmp_path / "manifest.json").write_text(json.dumps(entries))
    assert pretrained.students() == {"kd": "resnet8_cifar10_kd"}
    assert pretrained.students(labelled_fraction=0.1) == {"kd": "resnet8_cifar10_kd_lf0.1"}
    student = pretrained.load_student("kd")
    assert student.meta["method"] == "kd" and student.depth == 8
    with pytest.raises(KeyError, match=r"of method 'fsp'.*shipped: \['kd'\]"):
        pretrained.load_student("fsp")
    with pytest.raises(KeyError, match=r"shipped for: cifar10 at 0.1, cifar10 at 1"):
        pretrained.load_student("kd", dataset="CIFAR-10")  # not the data set's name in the manifest


@pytest.mark.parametrize("name", [n for n in SHIPPED if pretrained.manifest()[n].get("role") == "student"])
def test_a_shipped_student_says_how_it_was_trained(name):
    entry = pretrained.manifest()[name]
    for key in ("method", "teacher", "labelled_fraction", "seed", "run"):
        assert key in entry, key
    assert entry["teacher"] in SHIPPED  # its teacher ships too
    cfg = json.loads((pretrained.WEIGHTS_DIR.parent.parent / entry["run"] / "config.json").read_text())
    assert (cfg["method"], cfg["seed"], cfg["teacher"]) == (entry["method"], entry["seed"], entry["teacher"])
    assert pretrained.students(entry["dataset"], entry["labelled_fraction"])[entry["method"]] == name
