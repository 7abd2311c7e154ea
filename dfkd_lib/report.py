"""The results table and plots, made from committed run logs alone.

A *run folder* holds ``config.json`` and ``log.jsonl`` as :func:`dfkd_lib.train.train` writes
them. Runs are grouped by method, labelled fraction, teacher, student and data set, and by every
other option that changes what is trained (:func:`run_options`), so that runs made with
different settings are never averaged together; each group gives the mean and standard
deviation over seeds of the test accuracy

* at the last epoch,
* at the best epoch (an optimistic number: it peeks at the test set), and
* at the epoch with the best *validation* accuracy (the honest model-selection number).

    python -m dfkd_lib report --runs results/cpu --out results/cpu
"""

from __future__ import annotations

import json
import statistics
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .methods import ADDED_LATER, METHODS

__all__ = [
    "RunSummary",
    "GroupSummary",
    "run_options",
    "load_runs",
    "summarise",
    "table_markdown",
    "beyond_spread",
    "comparisons",
    "Comparison",
    "QUESTIONS",
    "FEW_LABEL_QUESTIONS",
    "make_report",
    "headline",
    "LEAD_METHODS",
    "YIM_FSP_MARGIN",
    "stopped_runs",
    "read_log",
    "planned_epochs",
    "ScreenRow",
    "screen_rows",
    "screen_markdown",
]

#: Yim et al.'s gain of FSP over the student trained alone on CIFAR-10, ResNet-26 -> ResNet-8
#: (88.70 - 87.91 %, their network minimisation table): the margin adv-dense is asked to beat scratch by.
YIM_FSP_MARGIN = 0.79
#: The all-label methods a protocol needs with enough complete seeds before its verdict is quoted
#: (the preface and chapter 7): the full method and the three it is compared with.
LEAD_METHODS = ("adv-dense", "scratch", "kd", "fsp")

# Options that say where or how a run was made, or what it logs, not what it trains
_BOOKKEEPING = {"seed", "out_dir", "resume", "device", "data_dir", "download", "probe_images", "probe_order"}
# Options that only matter while their term is switched on: (the term's weight, its options)
_TERM_OPTIONS = (
    ("kd_weight", ("temperature",)),
    ("lambda_adv", ("gan_loss", "d_lr", "d_betas", "d_hidden", "spectral_norm", "d_input", "d_noise", "d_r1",
                    "d_every")),
    ("two_stage", ("stage1_epochs", "stage1_lr")),
)  # fmt: skip
_FLOW_OPTIONS = ("pairs", "pool", "flow_reduction")  # used by the flow and the adversarial terms
_FLOW_TERM_OPTIONS = ("flow_norm", "flow_grad_ratio")  # used by the flow term only


def run_options(config: dict[str, Any]) -> dict[str, Any]:
    """The options of a run's ``config.json`` that change what it trains.

    Leaves out the seed and the bookkeeping (output folder, device, data folder), and the options
    of terms that are switched off (the discriminators' settings when ``lambda_adv`` is 0, the
    KD temperature when ``kd_weight`` is 0, the pair set when neither flow nor adversarial term
    is on, the size of generated data for CIFAR). An option the engine learnt after the run was
    made takes the value that does what the engine did then. Two runs with equal options differ only
    in their seed, so their results may be averaged.
    """
    opts = {k: v for k, v in {**ADDED_LATER, **config}.items() if k not in _BOOKKEEPING}
    for weight, keys in _TERM_OPTIONS:
        if not opts.get(weight):
            for k in keys:
                opts.pop(k, None)
    flow_on = bool(opts.get("lambda_flow") or opts.get("flow_grad_ratio"))
    if opts.get("flow_grad_ratio"):  # the rule sets the weight; the configured one is not used
        opts.pop("lambda_flow", None)
    if not flow_on:
        for k in _FLOW_TERM_OPTIONS:
            opts.pop(k, None)
    if not flow_on and not opts.get("lambda_adv"):
        for k in _FLOW_OPTIONS:
            opts.pop(k, None)
    if opts.get("dataset") != "synthetic":
        opts.pop("synthetic_per_class", None)
    return opts


@dataclass
class RunSummary:
    """One run's numbers."""

    path: str
    method: str
    labelled_fraction: float
    teacher: str | None
    student: str
    dataset: str
    seed: int
    epochs_done: int
    epochs_planned: int
    last: float
    best: float
    chosen_on_val: float | None
    curve: list[float]
    options: dict[str, Any] = field(default_factory=dict)  # run_options of its config
    val_last: float | None = None  # validation accuracy at the last epoch
    val_best: float | None = None  # best validation accuracy of any epoch
    #: the flow probe, ``(probe_images, probe_order)``, if the run logged flow distances (None: it
    #: logged none); ``probe_images`` is None in a config without it (the engine always writes it)
    probe: tuple[int | None, str] | None = None

    @property
    def complete(self) -> bool:
        """Whether the log has a line for every planned epoch."""
        return self.epochs_done >= self.epochs_planned


@dataclass
class GroupSummary:
    """Mean and standard deviation (over seeds) of a group of runs."""

    label: str
    method: str
    labelled_fraction: float
    n: int
    seeds: list[int]
    last_mean: float
    last_std: float
    best_mean: float
    best_std: float
    val_mean: float | None
    val_std: float | None
    setting: str = ""
    paths: list[str] = field(default_factory=list)  # the run folders averaged
    val_last_mean: float | None = None  # validation accuracy at the last epoch, mean and std over seeds
    val_last_std: float | None = None


_FIX = "fix the file or move its run folder out of the folder the report reads"
_CONFIG_KEYS = ("method", "student", "dataset", "seed", "epochs")  # what a summary of a run needs


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not text ({e}); {_FIX}") from e


def _read_object(path: Path) -> dict[str, Any]:
    """A JSON file that holds one object (``config.json``, ``stopped.json``); a file that does not
    parse is named with the line where it breaks."""
    try:
        obj = json.loads(_text(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}, line {e.lineno}: {e.msg} (column {e.colno}); {_FIX}") from e
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: holds a JSON {type(obj).__name__}, not an object; {_FIX}")
    return obj


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of a run's ``log.jsonl``, one per finished epoch (blank lines skipped).

    A last line that does not parse was cut short (the run was stopped while writing it, so that
    epoch did not finish): it is left out, with a warning that names the file.

    Raises:
        ValueError: any other line that is not a JSON object with ``test_acc``; the message names
            the file and the line.
    """
    path = Path(path)
    lines = [(i, line) for i, line in enumerate(_text(path).splitlines(), 1) if line.strip()]
    records = []
    for k, (i, line) in enumerate(lines):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if k == len(lines) - 1:
                warnings.warn(
                    f"{path}, line {i}: cut short (the run stopped while writing it); that epoch is left out",
                    stacklevel=2,
                )
                break
            raise ValueError(f"{path}, line {i}: {e.msg} (column {e.colno}); {_FIX}") from e
        if not isinstance(rec, dict) or "test_acc" not in rec:
            raise ValueError(f"{path}, line {i}: not an epoch's record (a JSON object with test_acc); {_FIX}")
        records.append(rec)
    return records


def stopped_runs(root: str | Path) -> dict[str, dict[str, Any]]:
    """The run folders below ``root`` that a non-finite loss stopped: folder -> what the engine
    wrote into its ``stopped.json`` (``message``, ``epoch``, ``step``, ``epochs_logged``)."""
    from .train import STOPPED_FILE

    return {str(p.parent): _read_object(p) for p in sorted(Path(root).rglob(STOPPED_FILE))}


def load_runs(root: str | Path) -> list[RunSummary]:
    """Every run folder below ``root`` (searched recursively), its log read by :func:`read_log`.

    Raises:
        ValueError: a ``config.json`` or ``log.jsonl`` that cannot be read, or a config without
            the method, student, data set, seed or epochs; the message names the file.
    """
    return [run for run, _ in _runs_and_logs(root)]


def _runs_and_logs(root: str | Path) -> list[tuple[RunSummary, list[dict[str, Any]]]]:
    """:func:`load_runs`, each run with its log's records."""
    runs = []
    for cfg_path in sorted(Path(root).rglob("config.json")):
        log_path = cfg_path.with_name("log.jsonl")
        if not log_path.exists():
            continue
        cfg = _read_object(cfg_path)
        missing = [k for k in _CONFIG_KEYS if k not in cfg]
        if missing:
            raise ValueError(f"{cfg_path}: lacks {', '.join(missing)}; {_FIX}")
        log = read_log(log_path)
        if not log:
            continue
        test = [r["test_acc"] for r in log]
        chosen = val_last = val_best = None
        if all("val_acc" in r for r in log):
            best_val = max(range(len(log)), key=lambda i: (log[i]["val_acc"], i))
            chosen = test[best_val]
            val_last, val_best = log[-1]["val_acc"], log[best_val]["val_acc"]
        probe = None
        if any("flow_dist" in r for r in log):
            probe = (cfg.get("probe_images"), cfg.get("probe_order", ADDED_LATER["probe_order"]))
        run = RunSummary(
            str(cfg_path.parent), cfg["method"], cfg.get("labelled_fraction", 1.0), cfg.get("teacher"),
            cfg["student"], cfg["dataset"], cfg["seed"], len(log), planned_epochs(cfg), test[-1], max(test), chosen,
            test, run_options(cfg), val_last, val_best, probe,
        )  # fmt: skip
        runs.append((run, log))
    return runs


def planned_epochs(config: dict[str, Any]) -> int:
    """Every epoch a run's ``config.json`` plans. Since the engine learnt equal budgets (its configs
    have ``stage1_lr``), a two-stage run's flow-only stage comes on top of ``epochs``; before, it
    was a third of them."""
    if config.get("two_stage") and "stage1_lr" in config:
        stage1 = config.get("stage1_epochs") or max(1, config["epochs"] // 3)
        return config["epochs"] + stage1
    return config["epochs"]


def _label(method: str, fraction: float) -> str:
    return method if fraction >= 1 else f"{method} ({fraction:.0%} labels)"


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _setting(r: RunSummary) -> str:
    """Student, data set and epochs of cross-entropy: a two-stage run's flow-only stage on top of its
    epochs (fsp since the equal budgets) leaves it in the setting of the one-stage runs it is
    compared with."""
    return f"{r.student}, {r.dataset}, {r.options.get('epochs', r.epochs_planned)} epochs"


def summarise(runs: list[RunSummary], complete_only: bool = True) -> list[GroupSummary]:
    """Group runs by method, labelled fraction, teacher, setting (student, data set, epochs) and
    the rest of their options (:func:`run_options`).

    ``scratch`` runs have no teacher and share the setting of the other runs of their student,
    data set and length, so they are compared with them. When runs of one method and fraction
    were made with different options, each group's label names the options that set it apart
    (for example ``adv-dense [d_hidden=[256, 128]]``), so that they are never averaged together.
    """
    groups: dict[tuple[str, float, str, str, str], list[RunSummary]] = {}
    for r in runs:
        if r.complete or not complete_only:
            opts = json.dumps(r.options, sort_keys=True)
            groups.setdefault((r.method, r.labelled_fraction, _setting(r), str(r.teacher), opts), []).append(r)
    variants: dict[tuple, list[dict[str, Any]]] = {}
    for key, rs in groups.items():
        variants.setdefault(key[:4], []).append(rs[0].options)
    out = []
    for key, rs in groups.items():
        method, frac, setting = key[:3]
        label = _label(method, frac)
        others = variants[key[:4]]
        if len(others) > 1:  # name the options in which this group differs from the others
            mine = rs[0].options
            keys = sorted({k for o in others for k in set(o) | set(mine) if o.get(k) != mine.get(k)})
            label += " [" + ", ".join(f"{k}={json.dumps(mine.get(k))}" for k in keys) + "]"
        lm, ls = _mean_std([r.last for r in rs])
        bm, bs = _mean_std([r.best for r in rs])
        vals = [r.chosen_on_val for r in rs if r.chosen_on_val is not None]
        vm, vs = _mean_std(vals) if len(vals) == len(rs) else (None, None)
        vl = [r.val_last for r in rs if r.val_last is not None]
        vlm, vls = _mean_std(vl) if vl and len(vl) == len(rs) else (None, None)
        seeds = sorted(r.seed for r in rs)
        paths = [r.path for r in rs]
        out.append(GroupSummary(label, method, frac, len(rs), seeds, lm, ls, bm, bs, vm, vs, setting, paths, vlm, vls))
    order = list(METHODS)
    out.sort(
        key=lambda g: (g.setting, g.labelled_fraction < 1, order.index(g.method) if g.method in order else 99, g.label)
    )
    return out


def headline(
    groups: list[GroupSummary], methods: tuple[str, ...] = LEAD_METHODS, min_seeds: int = 3
) -> dict[str, GroupSummary] | None:
    """What a summary of the evidence quotes: the all-labels group of each of ``methods`` in the
    first setting (of :func:`summarise`'s order) where each has exactly one group with at least
    ``min_seeds`` complete runs; ``None`` if no setting has them all."""
    for setting in dict.fromkeys(g.setting for g in groups):
        found = {}
        for method in methods:
            gs = [g for g in groups if g.setting == setting and g.method == method and g.labelled_fraction >= 1]
            if len(gs) != 1 or gs[0].n < min_seeds:
                break
            found[method] = gs[0]
        else:
            return found
    return None


def _fmt(m: float | None, s: float | None, n: int) -> str:
    if m is None:
        return "-"
    return f"{m:.2f}" if n < 2 else f"{m:.2f} ± {s:.2f}"


def table_markdown(groups: list[GroupSummary]) -> str:
    """The results table in Markdown (with a setting column when the groups span several
    settings; a single seed has no standard deviation)."""
    several = len({g.setting for g in groups}) > 1
    lines = [("| setting " if several else "") + "| method | seeds | last epoch | best epoch | chosen on validation |"]
    lines.append("| --- " * (6 if several else 5) + "|")
    for g in groups:
        row = f"| {g.setting} " if several else ""
        row += f"| {g.label} | {g.n} | {_fmt(g.last_mean, g.last_std, g.n)} | {_fmt(g.best_mean, g.best_std, g.n)} "
        lines.append(row + f"| {_fmt(g.val_mean, g.val_std, g.n)} |")
    return "\n".join(lines) + "\n"


def beyond_spread(mean: float, std: float, other_mean: float, other_std: float) -> tuple[float, float, bool]:
    """The book's bar for "better": ``(difference, spread, above)``, where the difference is
    ``mean - other_mean``, the spread is the larger of the two standard deviations over seeds, and
    ``above`` says whether the difference exceeds it."""
    diff, spread = mean - other_mean, max(std, other_std)
    return diff, spread, diff > spread


#: The questions a protocol is measured against, as ``(method, other, kind)``: ``method`` minus
#: ``other`` at the last epoch, both with all labels. ``kind`` "std" asks for more than one standard
#: deviation (:func:`beyond_spread`), "margin" for at least :data:`YIM_FSP_MARGIN`. The last one goes
#: beyond the paper (does flow knowledge add to soft labels?) and is asked where kd-adv-dense has runs.
QUESTIONS: tuple[tuple[str, str, str], ...] = (
    ("adv-dense", "fsp", "std"),
    ("adv-dense", "kd", "std"),
    ("adv-dense", "scratch", "margin"),
    ("kd-adv-dense", "kd", "std"),
)
#: The semi-supervised question, as ``(method, other, kind, labelled fraction)``: with 10 % of the
#: labels, does ``kd-adv-dense`` (flow and adversarial terms on every image, soft labels too) end
#: above ``kd`` (soft labels on every image) by more than one standard deviation, that is, does flow
#: knowledge use the unlabelled images better than soft labels alone? Asked where both have runs.
FEW_LABEL_QUESTIONS: tuple[tuple[str, str, str, float], ...] = (("kd-adv-dense", "kd", "std", 0.1),)


@dataclass(frozen=True)
class Comparison:
    """One question of :data:`QUESTIONS` asked of two groups: is ``mine`` (of ``method``) above
    ``theirs`` (of ``other``) by the bar ``kind`` sets, in last-epoch test accuracy?

    The numbers are those of the groups whatever their seeds; ``decided`` says whether there are
    enough seeds (two a side) for a standard deviation, so for an answer to be quoted.

    >>> a = GroupSummary("adv-dense", "adv-dense", 1.0, 2, [0, 1], 87.0, 0.2, 87.5, 0.2, None, None)
    >>> s = GroupSummary("scratch", "scratch", 1.0, 2, [0, 1], 86.0, 0.5, 86.4, 0.3, None, None)
    >>> c = Comparison("adv-dense", "scratch", "margin", a, s)
    >>> round(c.diff, 2), c.threshold, c.met, c.decided
    (1.0, 0.79, True, True)
    """

    method: str
    other: str
    kind: str  # "std" or "margin", as in QUESTIONS
    mine: GroupSummary
    theirs: GroupSummary

    def __post_init__(self) -> None:
        if self.kind not in ("std", "margin"):
            raise ValueError(f"kind must be 'std' or 'margin', not {self.kind!r}")

    @property
    def diff(self) -> float:
        """``method`` minus ``other``: the difference of the last-epoch means, in points."""
        return self.mine.last_mean - self.theirs.last_mean

    @property
    def threshold(self) -> float:
        """The bar: the larger of the two standard deviations ("std"; 0 with one seed a side) or
        Yim's FSP margin ("margin")."""
        if self.kind == "margin":
            return YIM_FSP_MARGIN
        return beyond_spread(self.mine.last_mean, self.mine.last_std, self.theirs.last_mean, self.theirs.last_std)[1]

    @property
    def met(self) -> bool:
        """Whether the difference clears the bar (strictly for "std", at least for "margin")."""
        return self.diff >= self.threshold if self.kind == "margin" else self.diff > self.threshold

    @property
    def seeds(self) -> int:
        """The fewer of the two groups' seed counts."""
        return min(self.mine.n, self.theirs.n)

    @property
    def decided(self) -> bool:
        """Two seeds a side at least: the fewest that have a standard deviation."""
        return self.seeds >= 2

    def question(self) -> str:
        """The question in words, with its bar (no number for a "std" bar without two seeds a side)."""
        if self.kind == "margin":
            return f"above by at least Yim's FSP margin of {YIM_FSP_MARGIN:.2f}?"
        return f"above by more than one std ({self.threshold:.2f})?" if self.decided else "above by more than one std?"

    def line(self) -> str:
        """The question and its answer in one line ("undecided" with fewer than two seeds a side);
        a labelled fraction below 1 is named after the two methods.

        >>> a = GroupSummary("kd-adv-dense", "kd-adv-dense", 1.0, 1, [0], 88.0, 0.0, 88.0, 0.0, None, None)
        >>> k = GroupSummary("kd", "kd", 1.0, 3, [0, 1, 2], 87.8, 0.1, 87.9, 0.1, None, None)
        >>> Comparison("kd-adv-dense", "kd", "std", a, k).line()
        'kd-adv-dense - kd = +0.20 points (last epoch, 1 seed vs 3); above by more than one std? undecided (needs at least 2 seeds a side)'
        """
        verdict = ("yes" if self.met else "no") if self.decided else "undecided (needs at least 2 seeds a side)"
        fraction = self.mine.labelled_fraction
        labels = f" with {fraction:.0%} of the labels" if fraction < 1 else ""
        seeds = f"{self.mine.n} seed{'s' if self.mine.n != 1 else ''} vs {self.theirs.n}"
        return (
            f"{self.method} - {self.other}{labels} = {self.diff:+.2f} points (last epoch, {seeds}); "
            f"{self.question()} {verdict}"
        )


def comparisons(groups: list[GroupSummary]) -> list[str]:
    """:data:`QUESTIONS`, then :data:`FEW_LABEL_QUESTIONS`, answered in words
    (:meth:`Comparison.line`), within the first setting that has adv-dense runs with all labels
    (else the first group's); kd-adv-dense's questions only where it has runs, the semi-supervised
    one only where both sides have. A verdict needs at least two seeds a side."""
    if not groups:
        return ["no complete runs yet."]
    full_settings = [g.setting for g in groups if g.method == "adv-dense" and g.labelled_fraction >= 1]
    setting = full_settings[0] if full_settings else groups[0].setting
    by: dict[tuple[str, float], list[GroupSummary]] = {}
    for g in groups:
        if g.setting == setting:
            by.setdefault((g.method, g.labelled_fraction), []).append(g)

    def several(method: str, fraction: float = 1.0) -> str:
        labels = "; ".join(g.label for g in by[(method, fraction)])
        return f"{method} was run with several settings ({labels}): compare by hand."

    full = by.get(("adv-dense", 1.0))
    if full is None:
        return ["adv-dense (all labels) has no complete runs yet."]
    if len(full) > 1:
        return [several("adv-dense")]
    lines = []
    # all labels: every question (an "other" without runs is said); few labels: where both have runs
    asked = [(*q, 1.0, True) for q in QUESTIONS] + [(*q, False) for q in FEW_LABEL_QUESTIONS]
    for method, other, kind, fraction, say_missing in asked:
        mine, gs = by.get((method, fraction)), by.get((other, fraction))
        if mine is None:  # only kd-adv-dense can be missing here: its questions are asked where it has runs
            continue
        if gs is None:
            if say_missing:
                lines.append(f"{other}: no complete runs yet.")
            continue
        if len(gs) > 1 or len(mine) > 1:
            lines.append(several(other, fraction) if len(gs) > 1 else several(method, fraction))
            continue
        lines.append(Comparison(method, other, kind, mine[0], gs[0]).line())
    return lines


def make_report(runs_root: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Write ``table.md``, ``summary.json`` and the plots for the runs below ``runs_root`` (into
    ``out``, default ``runs_root``), print the table, and return the summary that ``summary.json``
    holds.

    Raises:
        FileNotFoundError: no run log below ``runs_root``.
    """
    runs = load_runs(runs_root)
    if not runs:
        raise FileNotFoundError(f"no run logs (config.json + log.jsonl) found below {runs_root}")
    out = Path(out or runs_root)
    out.mkdir(parents=True, exist_ok=True)
    groups = summarise(runs)
    stopped = stopped_runs(runs_root)
    incomplete = [r.path for r in runs if not r.complete and r.path not in stopped]
    text = "# Results\n\nTest accuracy (%), mean ± standard deviation over seeds.\n\n" + table_markdown(groups)
    text += "\n" + "\n".join(f"- {c}" for c in comparisons(groups)) + "\n"
    if incomplete:
        text += "\nIncomplete runs left out: " + ", ".join(incomplete) + "\n"
    if stopped:
        text += "\nRuns stopped by a non-finite loss, left out: "
        text += "; ".join(f"{path} ({s['message']})" for path, s in stopped.items()) + "\n"
    (out / "table.md").write_text(text)
    summary = {"groups": [asdict(g) for g in groups], "incomplete": incomplete, "stopped": stopped,
               "comparisons": comparisons(groups)}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _plots(runs, groups, out)
    print(text)
    return summary


def _plots(runs: list[RunSummary], groups: list[GroupSummary], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not groups:
        return
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(groups)), 4))
    xs = range(len(groups))
    vals = [g.val_mean if g.val_mean is not None else g.last_mean for g in groups]
    errs = [g.val_std if g.val_std is not None else g.last_std for g in groups]
    ax.bar(xs, vals, yerr=errs, capsize=4, color=["#4c72b0" if g.labelled_fraction >= 1 else "#dd8452" for g in groups])
    ax.set_xticks(list(xs), [g.label.replace(" (", "\n(") for g in groups], fontsize=9)
    lo = min(v - e for v, e in zip(vals, errs))
    ax.set_ylim(max(0, lo - 2), max(v + e for v, e in zip(vals, errs)) + 1)
    ax.set_ylabel("test accuracy (%)")
    fallback = [g.val_mean is None for g in groups]  # a group without validation: its last epoch
    when = "the epoch chosen on validation" if not any(fallback) else "the last epoch" if all(fallback) else (
        "the epoch chosen on validation, or the last (no validation)")  # fmt: skip
    ax.set_title(f"Test accuracy at {when} (mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=130)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for g in groups:
        curves = [r.curve for r in runs if r.path in g.paths]
        n = min(len(c) for c in curves)
        mean = [statistics.fmean(c[i] for c in curves) for i in range(n)]
        ax.plot(range(1, n + 1), mean, label=g.label, linestyle="-" if g.labelled_fraction >= 1 else "--")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Test accuracy per epoch (mean over seeds)")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=130)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Screens: short runs that choose settings, judged on the validation split only


@dataclass
class ScreenRow:
    """One setting of a screen (its run folders ``<setting>-s<seed>``), validation numbers only."""

    setting: str
    method: str
    seeds: list[int]
    epochs: int  # every epoch trained (a two-stage run's flow-only stage included)
    val_last_mean: float
    val_last_std: float
    val_best_mean: float
    train_last_mean: float
    flow_dist: float | None  # mean over items of the last epoch's relative flow distance, seed mean
    d_acc_range: tuple[float, float] | None  # lowest and highest epoch mean of (real + fake) / 2
    adv_moves: float | None  # the adversarial term's relative change from first to last epoch
    lambda_flow: float | None
    d_margin: float | None = None  # the last epoch's mean logit on real minus that on fake, seed mean


def screen_rows(root: str | Path) -> list[ScreenRow]:
    """The complete runs below ``root`` grouped by setting (the folder name without ``-s<seed>``)."""
    import re

    by: dict[str, list[tuple[RunSummary, list[dict[str, Any]]]]] = {}
    for r, log in _runs_and_logs(root):
        if not r.complete or r.val_last is None:
            continue
        by.setdefault(re.sub(r"-s\d+$", "", Path(r.path).name), []).append((r, log))
    rows = []
    for setting, runs in by.items():
        logs = [log for _, log in runs]
        last = [log[-1] for log in logs]
        dists = [statistics.fmean(rec["flow_dist"]) for rec in last if "flow_dist" in rec]
        if len({r.probe for r, _ in runs if r.probe is not None}) > 1:  # on different images: no mean
            dists = []
        d_acc = [(rec["d_acc_real"] + rec["d_acc_fake"]) / 2 for log in logs for rec in log if "d_acc_real" in rec]
        moves = [abs(log[-1]["loss_adv"] - log[0]["loss_adv"]) / max(abs(log[0]["loss_adv"]), 1e-12)
                 for log in logs if "loss_adv" in log[0] and "loss_adv" in log[-1]]  # fmt: skip
        lam = [rec["lambda_flow"] for rec in last if "lambda_flow" in rec]
        margins = [rec["d_logit_real"] - rec["d_logit_fake"] for rec in last if "d_logit_real" in rec]
        vm, vs = _mean_std([r.val_last for r, _ in runs])
        rows.append(ScreenRow(
            setting, runs[0][0].method, sorted(r.seed for r, _ in runs), runs[0][0].epochs_planned, vm, vs,
            statistics.fmean(r.val_best for r, _ in runs), statistics.fmean(rec["train_acc"] for rec in last),
            statistics.fmean(dists) if dists else None, (min(d_acc), max(d_acc)) if d_acc else None,
            statistics.fmean(moves) if moves else None, statistics.fmean(lam) if lam else None,
            statistics.fmean(margins) if margins else None,
        ))  # fmt: skip
    order = list(METHODS)
    rows.sort(key=lambda row: (order.index(row.method) if row.method in order else 99, row.setting))
    return rows


def screen_markdown(rows: list[ScreenRow]) -> str:
    """The screen's table: validation accuracy (last epoch, mean ± std over seeds; best epoch),
    last-epoch training accuracy, flow distance, discriminator accuracy range, the discriminators'
    logit margin (real minus fake, last epoch: how sure they are, which accuracy does not say), the
    adversarial term's change and lambda_flow used."""
    lines = ["| setting | seeds | epochs | val, last epoch | val, best epoch | train | flow dist | D acc (min-max) "
             "| D margin | adv moved | lambda_flow |", "| --- " * 11 + "|"]  # fmt: skip
    for r in rows:
        dacc = f"{r.d_acc_range[0]:.0f}-{r.d_acc_range[1]:.0f} %" if r.d_acc_range else "-"
        lines.append(
            f"| {r.setting} | {len(r.seeds)} | {r.epochs} | {_fmt(r.val_last_mean, r.val_last_std, len(r.seeds))} "
            f"| {r.val_best_mean:.2f} | {r.train_last_mean:.2f} "
            f"| {'-' if r.flow_dist is None else f'{r.flow_dist:.3f}'} | {dacc} "
            f"| {'-' if r.d_margin is None else f'{r.d_margin:.3f}'} "
            f"| {'-' if r.adv_moves is None else f'{100 * r.adv_moves:.0f} %'} "
            f"| {'-' if r.lambda_flow is None else f'{r.lambda_flow:.3g}'} |"
        )
    return "\n".join(lines) + "\n"
