"""The book's two protocols: their settings, read from the scripts that run them, and their runs.

A protocol is a fixed set of training runs (methods, labelled fractions, seeds) with one length,
teacher and version of the recipes, run by a script into one folder of run logs:

* the **15-epoch protocol**, ``scripts/run_cpu_protocol.sh`` into ``results/cpu``;
* the **60-epoch protocol**, ``scripts/run_protocol60.sh`` (which sets some values and runs the
  first script) into ``results/cpu60``.

:func:`load` reads a protocol's settings from its scripts and the logs in its folder, and keeps
only the logs a run of the protocol would have written (:meth:`Protocol.accepts`): a log made
with other settings in the same folder is kept apart, never averaged in. The preface and
chapters 6 and 7 read the results through it.

    >>> p = load("60-epoch protocol")                                    # doctest: +SKIP
    >>> p.n_complete, p.n_total, [g.label for g in p.groups]             # doctest: +SKIP
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from . import report
from .report import GroupSummary, RunSummary

__all__ = ["PROTOCOLS", "Protocol", "script_value", "read", "load"]

#: Each protocol's scripts (the one to run first; a wrapper before the script whose defaults fill
#: in the rest) and its folder of run logs, relative to the repository.
PROTOCOLS: dict[str, tuple[tuple[str, ...], str]] = {
    "15-epoch protocol": (("scripts/run_cpu_protocol.sh",), "results/cpu"),
    "60-epoch protocol": (("scripts/run_protocol60.sh", "scripts/run_cpu_protocol.sh"), "results/cpu60"),
}
#: Copies of the scripts' settings, for when the scripts are absent (a test keeps them equal).
SCRIPT_COPIES = {
    "scripts/run_cpu_protocol.sh": 'EPOCHS=${EPOCHS:-15}\nSEEDS=${SEEDS:-"0 1 2"}\nTEACHER=${TEACHER:-resnet26_cifar10}\n'
    'RECIPE=${RECIPE:-1}\nPROBE=${PROBE:-0}\nPROBE_ORDER=${PROBE_ORDER:-first}\nRUNS=${RUNS:-"scratch kd at fsp dense adv adv-dense scratch:0.1 '
    'adv-dense:0.1 kd:0.1"}\n',
    "scripts/run_protocol60.sh": "EPOCHS=60 RECIPE=2 OUT=${OUT:-results/cpu60} TEACHER=${TEACHER:-resnet26_cifar10_e80} "
    'PROBE=1 \\\n  RUNS=${RUNS:-"scratch kd fsp dense adv-dense kd-adv-dense scratch:0.1 kd:0.1 adv-dense:0.1 '
    'kd-adv-dense:0.1"}\n',
}
#: The network and data every protocol run uses (fixed in the script's command line).
STUDENT, DATASET = "resnet8", "cifar10"


def script_value(name: str, text: str) -> str | None:
    """The value a shell script gives ``name``, as ``NAME=${NAME:-value}`` (a default) or
    ``NAME=value``; ``None`` if it sets no ``name`` (comment lines are skipped).

    >>> script_value("SEEDS", 'SEEDS=${SEEDS:-"0 1 2"}'), script_value("EPOCHS", "EPOCHS=60 RECIPE=2 \\\\")
    ('0 1 2', '60')
    """
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    pattern = rf'(?:^|\s){name}=(?:\$\{{{name}:-"?([^"}}]*)"?\}}|"?([^\s"]*)"?)'
    m = re.search(pattern, "\n".join(lines), re.M)
    return None if m is None else next(g for g in m.groups() if g is not None)


@dataclass(eq=False)  # compared and hashed by identity
class Protocol:
    """A protocol's settings and, once :meth:`load`-ed, the runs of its folder that belong to it.

    Attributes:
        name: e.g. ``"60-epoch protocol"``.
        folder: its folder of run logs.
        source: where the settings were read from (the scripts, or :data:`SCRIPT_COPIES`).
        epochs, seeds, teacher: the runs' length, seeds and teacher.
        recipe: the version of the methods' recipes (:data:`dfkd_lib.methods.RECIPE_VERSIONS`).
        probe: whether the protocol measures flow distances: ``scratch`` gets the teacher too,
            as a probe, and every run's distances are measured on the same images.
        specs: ``(method, labelled fraction)`` of each run, in the script's order.
        probe_images, probe_order: those images, where :attr:`probe` is set: how many validation
            images and which (the options of :class:`dfkd_lib.train.TrainConfig`).
        runs: the logs in the folder that a run of the protocol wrote (any state).
        other_runs: the logs in the folder made with other settings.
        groups: the complete runs, summarised by method (:func:`dfkd_lib.report.summarise`).
    """

    name: str
    folder: Path
    source: str
    epochs: int
    seeds: list[int]
    teacher: str
    recipe: int
    probe: bool
    specs: list[tuple[str, float]]
    probe_images: int = 1000
    probe_order: str = "first"
    runs: list[RunSummary] = field(default_factory=list)
    other_runs: list[RunSummary] = field(default_factory=list)
    groups: list[GroupSummary] = field(default_factory=list)

    @property
    def n_total(self) -> int:
        """How many runs the protocol has: each spec with each seed."""
        return len(self.specs) * len(self.seeds)

    @property
    def n_complete(self) -> int:
        """How many of them are complete."""
        return len({(r.method, r.labelled_fraction, r.seed) for r in self.runs if r.complete})

    @property
    def by_group(self) -> dict[tuple[str, float], GroupSummary]:
        """The groups by ``(method, labelled fraction)``."""
        return {(g.method, g.labelled_fraction): g for g in self.groups}

    def paired(self, mine: GroupSummary, theirs: GroupSummary, key: str = "last") -> list[float]:
        """``mine`` minus ``theirs``, seed by seed (in seed order), over the seeds both groups have:
        the differences of a :class:`~dfkd_lib.report.RunSummary` field (``"last"``, ``"best"``,
        ``"val_last"``, ...) between runs that share their seed, so their split and their first
        weights. A seed whose run did not log ``key`` is left out.

        Raises:
            ValueError: a group holds two runs of one seed (two folders for one run).
        """
        by_seed = []
        for g in (mine, theirs):
            runs = [r for r in self.runs if r.path in g.paths]
            seen = {r.seed: getattr(r, key) for r in runs}
            if len(seen) != len(runs):
                twice = sorted(r.path for r in runs if sum(o.seed == r.seed for o in runs) > 1)
                raise ValueError(f"{g.label} has two runs of one seed: {', '.join(twice)}; keep one of them")
            by_seed.append(seen)
        a, b = by_seed
        return [a[s] - b[s] for s in sorted(set(a) & set(b)) if a[s] is not None and b[s] is not None]

    def options(self, method: str, fraction: float, epochs: int | None = None, recipe: int | None = None) -> dict:
        """The options (:func:`dfkd_lib.report.run_options`) of a run of ``method`` at ``fraction``
        of the labels in this protocol; ``epochs`` and ``recipe`` override the protocol's (for the
        short search runs, otherwise runs of the 15-epoch protocol)."""
        from .train import config_for

        teacher = {} if method == "scratch" and not self.probe else {"teacher": self.teacher}
        cfg = config_for(method, recipe=self.recipe if recipe is None else recipe, student=STUDENT, dataset=DATASET,
                         epochs=self.epochs if epochs is None else epochs, labelled_fraction=fraction,
                         **teacher)  # fmt: skip
        return report.run_options(cfg.to_dict())  # tuples as lists, as logged

    def accepts(self, run: RunSummary) -> bool:
        """Whether ``run`` is one of the protocol's: one of its specs and seeds, with its network,
        data, length and teacher and the method's recipe in the version the script runs. In a
        protocol that measures flow distances (:attr:`probe`), a run that logged them must have
        measured them with the protocol's probe (the same validation images), so that its
        distances can be set beside the others'; the probe changes nothing the run trains, but
        a run with another probe is kept apart all the same.

        ``fsp`` runs of the first engine count with what that engine did: their flow-only stage
        inside the epochs at the same learning rate (logged without ``stage1_lr``), and its
        default length spelled out or not.
        """
        if (run.method, run.labelled_fraction) not in self.specs or run.seed not in self.seeds:
            return False
        if self.probe and run.probe is not None and run.probe != (self.probe_images, self.probe_order):
            return False
        expected = self.options(run.method, run.labelled_fraction)
        if run.options.get("two_stage") and "stage1_lr" not in run.options:
            expected.pop("stage1_lr", None)
        if expected.get("two_stage") and expected.get("stage1_epochs") is None:
            if run.options.get("stage1_epochs") not in (None, max(1, self.epochs // 3)):
                return False
            expected["stage1_epochs"] = run.options.get("stage1_epochs")
        return run.options == expected

    def load(self) -> Protocol:
        """Read the folder's logs into :attr:`runs`, :attr:`other_runs` and :attr:`groups`; returns self."""
        found = report.load_runs(self.folder) if self.folder.is_dir() else []
        self.runs = [r for r in found if self.accepts(r)]
        self.other_runs = [r for r in found if not self.accepts(r)]
        self.groups = report.summarise(self.runs)
        return self


def read(name: str, repo: str | Path | None = None, folder: str | Path | None = None) -> Protocol:
    """A protocol's settings (no runs yet: see :meth:`Protocol.load`), each value from the first of
    its scripts (:data:`PROTOCOLS`) that sets it, in ``repo`` (default: :func:`dfkd_lib.book.repository`).
    A script that is not there is read from :data:`SCRIPT_COPIES`. ``folder`` replaces the
    protocol's folder of logs.
    """
    from .train import TrainConfig

    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose one of {sorted(PROTOCOLS)}")
    if repo is None:
        from .book import repository

        repo = repository()
    repo = Path(repo)
    scripts, default_folder = PROTOCOLS[name]
    texts = [(repo / s).read_text() if (repo / s).is_file() else SCRIPT_COPIES[s] for s in scripts]
    found = [s for s in scripts if (repo / s).is_file()]
    source = (
        " and ".join(f"`{s}`" for s in found)
        if len(found) == len(scripts)
        else "a copy of the scripts' settings (the scripts themselves were not found)"
    )

    def value(key: str, default: str | None = None) -> str | None:
        return next((v for t in texts if (v := script_value(key, t)) is not None), default)

    specs = []
    for spec in value("RUNS").split():
        method, _, fraction = spec.partition(":")
        specs.append((method, float(fraction or 1.0)))
    return Protocol(
        name, Path(folder) if folder is not None else repo / default_folder, source, int(value("EPOCHS")),
        [int(s) for s in value("SEEDS").split()], value("TEACHER"), int(value("RECIPE")),
        value("PROBE", "0") != "0", specs, TrainConfig.probe_images, value("PROBE_ORDER", "first"),
    )  # fmt: skip


def load(name: str, repo: str | Path | None = None, folder: str | Path | None = None) -> Protocol:
    """:func:`read` the protocol, then :meth:`Protocol.load` its runs."""
    return read(name, repo, folder).load()
