"""The protocols' settings as their scripts give them, and which logs count as their runs."""

import dataclasses
import json
from pathlib import Path

import pytest

from dfkd_lib import protocols
from dfkd_lib.cli import main

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ("epochs", "seeds", "teacher", "recipe", "probe", "specs", "probe_images", "probe_order")

# The logs committed in results/cpu and results/cpu60: all 30 runs of each protocol, complete.
COMMITTED = {"15-epoch protocol": ("results/cpu", 30, 30), "60-epoch protocol": ("results/cpu60", 30, 30)}


def test_script_value_reads_defaults_and_plain_values_and_skips_comments():
    text = '# EPOCHS=99\nEPOCHS=${EPOCHS:-15}\nSEEDS=${SEEDS:-"0 1 2"}\nOUT=results/cpu60 PROBE=1 \\\n'
    assert protocols.script_value("EPOCHS", text) == "15"
    assert protocols.script_value("SEEDS", text) == "0 1 2"
    assert protocols.script_value("PROBE", text) == "1"
    assert protocols.script_value("OUT", text) == "results/cpu60"
    assert protocols.script_value("TEACHER", text) is None


@pytest.mark.parametrize("name", list(protocols.PROTOCOLS))
def test_the_copies_of_the_scripts_settings_match_the_scripts(name, tmp_path):
    """Without the scripts (a package built without them) the settings come from SCRIPT_COPIES."""
    real, copy = protocols.read(name, ROOT), protocols.read(name, tmp_path)
    assert {k: getattr(real, k) for k in SETTINGS} == {k: getattr(copy, k) for k in SETTINGS}
    assert real.source.startswith("`scripts/") and "copy" in copy.source
    assert real.n_total == 30 and real.folder == ROOT / COMMITTED[name][0] and real.folder.is_dir()
    assert copy.folder == tmp_path / COMMITTED[name][0]  # the folder is relative to the repository given


def test_the_60_epoch_protocol_is_what_its_script_says():
    p = protocols.read("60-epoch protocol", ROOT)
    assert (p.epochs, p.seeds, p.teacher, p.recipe, p.probe) == (60, [0, 1, 2], "resnet26_cifar10_e80", 2, True)
    assert (p.probe_images, p.probe_order) == (1000, "first")
    assert ("kd-adv-dense", 0.1) in p.specs and ("at", 1.0) not in p.specs


@pytest.mark.parametrize("name", list(protocols.PROTOCOLS))
def test_every_committed_log_in_a_protocol_s_folder_counts_as_its_run(name):
    """The committed logs were all made by the protocols' scripts (the 15-epoch fsp by the first
    engine, with its flow-only stage inside the epochs): none is kept apart, and none is missing."""
    folder, n_runs, n_complete = COMMITTED[name]
    p = protocols.load(name, ROOT)
    assert p.folder == ROOT / folder and p.folder.is_dir()
    assert len(list(p.folder.glob("*/log.jsonl"))) >= n_runs
    assert not p.other_runs
    assert n_runs <= len(p.runs) <= p.n_total
    assert n_complete <= p.n_complete <= p.n_total


@pytest.mark.parametrize("name", list(protocols.PROTOCOLS))
def test_the_report_command_rebuilds_the_committed_table_from_the_logs(name, tmp_path, monkeypatch):
    """Each protocol's ``table.md`` and ``summary.json`` were written by ``python -m dfkd_lib report
    --runs <folder> --out <folder>`` from the repository's root: the logs alone give them again."""
    folder = COMMITTED[name][0]
    monkeypatch.chdir(ROOT)  # the summary names the runs by their paths, relative to the root
    assert main(["report", "--runs", folder, "--out", str(tmp_path)]) == 0
    for made in ("table.md", "summary.json"):
        assert (tmp_path / made).read_text() == (ROOT / folder / made).read_text(), made
    assert "Incomplete runs left out" not in (tmp_path / "table.md").read_text()
    assert (tmp_path / "accuracy.png").is_file() and (tmp_path / "curves.png").is_file()


def test_a_log_with_other_settings_is_kept_apart():
    p = protocols.load("60-epoch protocol", ROOT)
    assert p.runs, f"no 60-epoch logs found in {p.folder}"
    run = next(r for r in p.runs if r.method == "kd")
    assert p.accepts(run)
    assert not p.accepts(dataclasses.replace(run, options={**run.options, "lr": 0.05}))
    assert not p.accepts(dataclasses.replace(run, method="at"))  # not one of the protocol's runs
    assert not p.accepts(dataclasses.replace(run, labelled_fraction=0.5))
    assert not p.accepts(dataclasses.replace(run, seed=3))  # not one of its seeds
    # a 15-epoch run (the first recipes, the first teacher) does not count in the 60-epoch protocol
    p15 = protocols.load("15-epoch protocol", ROOT)
    assert p15.runs and not any(p.accepts(r) for r in p15.runs)
    # scratch is a probe in the 60-epoch protocol: it has the teacher, so a scratch log without one is not its
    scratch = next(r for r in p.runs if r.method == "scratch")
    assert scratch.options.get("teacher") == p.teacher
    alone = {k: v for k, v in scratch.options.items() if k != "teacher"}
    assert not p.accepts(dataclasses.replace(scratch, options=alone))


def test_a_log_whose_flow_distances_were_measured_on_other_images_is_kept_apart(tmp_path):
    """A 60-epoch run made with the balanced probe trains the same but measures its flow distances
    on other images: the protocol keeps it apart. The protocol's committed runs logged the probe of
    the first 1,000 images (the first 24 without naming the order, which the engine reads as first);
    the 15-epoch protocol measures no flow distances, so no probe is asked of its runs."""
    src = ROOT / "results" / "cpu60" / "kd-lf1.0-s0"
    cfg = json.loads((src / "config.json").read_text())
    assert "probe_order" not in cfg and cfg["probe_images"] == 1000  # made before the option existed
    for name, change in [("same", {}), ("balanced", {"probe_order": "balanced"}), ("fewer", {"probe_images": 200})]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({**cfg, **change}))
        (tmp_path / name / "log.jsonl").write_text((src / "log.jsonl").read_text())
    p = protocols.load("60-epoch protocol", ROOT, folder=tmp_path)
    assert [Path(r.path).name for r in p.runs] == ["same"] and p.runs[0].probe == (1000, "first")
    assert sorted((Path(r.path).name, r.probe) for r in p.other_runs) == [
        ("balanced", (1000, "balanced")), ("fewer", (200, "first"))
    ]  # fmt: skip
    # the 15-epoch protocol measures no flow distances (its runs logged none): any probe will do
    p15 = protocols.load("15-epoch protocol", ROOT)
    assert not p15.probe and p15.runs and all(r.probe is None for r in p15.runs)
    kd15 = next(r for r in p15.runs if r.method == "kd")
    assert p15.accepts(dataclasses.replace(kd15, probe=(1000, "balanced")))


def test_fsp_logs_of_the_first_engine_count_and_only_with_the_default_stage_length():
    p15 = protocols.load("15-epoch protocol", ROOT)
    fsp = [r for r in p15.runs if r.method == "fsp"]
    assert len(fsp) == 3, "the three committed 15-epoch fsp logs (seeds 0, 1, 2)"
    legacy = fsp[0]
    assert "stage1_lr" not in legacy.options  # the first engine did not log it
    assert p15.accepts(legacy)
    assert p15.accepts(dataclasses.replace(legacy, options={**legacy.options, "stage1_epochs": 15 // 3}))
    assert not p15.accepts(dataclasses.replace(legacy, options={**legacy.options, "stage1_epochs": 7}))


def test_an_unknown_protocol_is_named_in_the_error():
    with pytest.raises(ValueError, match="unknown protocol 'cpu30'"):
        protocols.read("cpu30", ROOT)


def test_a_missing_folder_gives_a_protocol_without_runs(tmp_path):
    p = protocols.load("60-epoch protocol", ROOT, folder=tmp_path / "none")
    assert p.runs == [] and p.groups == [] and p.n_complete == 0 and p.n_total == 30


def test_paired_differences_are_taken_seed_by_seed_from_the_logs():
    """kd minus scratch of the committed 15-epoch runs, against the last lines of their logs."""
    p = protocols.load("15-epoch protocol", ROOT)
    assert p.folder.is_dir(), f"the committed logs of {p.folder} are missing"
    kd, scratch = p.by_group[("kd", 1.0)], p.by_group[("scratch", 1.0)]

    def last(method, seed, key="test_acc"):
        lines = (p.folder / f"{method}-lf1.0-s{seed}" / "log.jsonl").read_text().splitlines()
        return json.loads(lines[-1])[key]

    seeds = sorted(set(kd.seeds) & set(scratch.seeds))
    assert len(seeds) == 3
    assert p.paired(kd, scratch) == pytest.approx([last("kd", s) - last("scratch", s) for s in seeds])
    assert p.paired(kd, scratch, "val_last") == pytest.approx(
        [last("kd", s, "val_acc") - last("scratch", s, "val_acc") for s in seeds]
    )
    assert p.paired(scratch, kd) == pytest.approx([-d for d in p.paired(kd, scratch)])
    # a group with fewer seeds pairs over the seeds both have
    one = dataclasses.replace(kd, seeds=kd.seeds[:1], paths=kd.paths[:1], n=1)
    assert len(p.paired(one, scratch)) == 1
    # two folders of one seed in a group (a copy left below the protocol's folder): said, not guessed
    twin = dataclasses.replace(p.runs[[r.path for r in p.runs].index(kd.paths[0])], path=kd.paths[0] + "-copy")
    p.runs.append(twin)
    with pytest.raises(ValueError, match="kd has two runs of one seed: .*kd-lf1.0-s0, .*kd-lf1.0-s0-copy"):
        p.paired(dataclasses.replace(kd, paths=[*kd.paths, twin.path]), scratch)
