"""Figures for the book: flow matrices, pair sets, training curves and images.

Every function draws with matplotlib and returns the :class:`~matplotlib.figure.Figure`, so a
chapter can save it or adjust it. Figures use constrained layout, so titles, labels and
colour bars do not overlap. :func:`set_style` (called by :func:`dfkd_lib.book.setup`) sets
readable font sizes for all figures of a session.

In a notebook, assign the result (``fig = plot_history(...)``) or end the line with ``;``:
the inline backend already shows the figure, and a bare returned Figure would be shown twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Arc, Patch

__all__ = [
    "STAGE_COLORS",
    "METHOD_COLORS",
    "family_styles",
    "set_style",
    "plot_flow_matrix",
    "plot_flow_pair",
    "plot_flow_grid",
    "plot_flow_compare",
    "plot_pair_diagram",
    "stage_legend",
    "plot_history",
    "show_images",
    "plot_tap_alignment",
    "plot_gram_blocks",
    "plot_grouped_bars",
    "plot_flow_distance_by_item",
    "plot_discriminator_over_time",
    "flows_over_time",
    "plot_flow_over_time",
]

#: Colour of each tap stage: stem, stage 1, stage 2, stage 3 (colour-blind safe, Okabe-Ito).
STAGE_COLORS = ("#555555", "#0072B2", "#E69F00", "#009E73")

#: One colour per method (Okabe-Ito, grey for the student trained alone), the same in every
#: figure of the book: a series named for a method (``"kd"``, ``"adv-dense (10% labels)"``,
#: ``"fsp\n(shipped)"``) is drawn in its colour unless a figure is given others.
METHOD_COLORS: dict[str, str] = {
    "scratch": "#555555", "kd": "#0072B2", "at": "#56B4E9", "fsp": "#E69F00", "dense": "#009E73",
    "adv": "#CC79A7", "adv-dense": "#D55E00", "kd-dense": "#33A1A1", "kd-adv-dense": "#7B3294",
}  # fmt: skip


def _series_colors(
    names: Sequence[Any], colors: Mapping[str, str] | None = None, cycle: Sequence[str] | None = None
) -> dict[Any, str]:
    """A colour per series: ``colors`` where it names one, else the method's
    (:data:`METHOD_COLORS`, by the name's first word, whatever its case) for the first series of
    that method, else the next of ``cycle`` (default: matplotlib's) that no series already uses,
    so that two series of one method (all labels and 10 %) are told apart."""
    import re

    cycle = list(cycle or plt.rcParams["axes.prop_cycle"].by_key()["color"])
    out: dict[Any, str] = {}
    for name in names:
        key = re.split(r"[\s(\[,]", str(name).strip(), maxsplit=1)[0].lower()
        if colors and name in colors:
            out[name] = colors[name]
        elif key in METHOD_COLORS and METHOD_COLORS[key] not in out.values():
            out[name] = METHOD_COLORS[key]
    from matplotlib.colors import to_hex

    used = {to_hex(c) for c in out.values()}
    free = [c for c in cycle if to_hex(c) not in used] or cycle
    k = 0
    for name in names:
        if name not in out:
            out[name] = free[k % len(free)]
            k += 1
    return out


_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def family_styles(families: Mapping[str, str], colors: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Line styles for many series in a few families (the settings of a search, by method).

    Each family gets one hue: the method's (:data:`METHOD_COLORS`, by the family's first word) or
    else the next of matplotlib's cycle, or ``colors[family]``; its members get shades of it, from
    dark to light in the order given, and markers of their own. Two members of one family are
    told apart by shade and marker, two families by hue; a family of one keeps its hue.

    Args:
        families: ``{series name: family}``, in the order the series are drawn.
        colors: ``{family: colour}`` for families that should not take the default hue.

    Returns:
        ``{series name: {"color": hex, "marker": marker}}``, keyword arguments for ``ax.plot``.
    """
    from matplotlib.colors import to_hex, to_rgb

    members: dict[str, list[str]] = {}
    for name, family in families.items():
        members.setdefault(family, []).append(name)
    hues = _series_colors(list(members), colors)
    out: dict[str, dict[str, Any]] = {}
    for family, names in members.items():
        base = np.array(to_rgb(hues[family]))
        for i, name in enumerate(names):
            # from a quarter towards black to halfway to white; a family of one keeps its hue
            mix = -0.25 + 0.75 * i / (len(names) - 1) if len(names) > 1 else 0.0
            rgb = base * (1 + mix) if mix < 0 else base + (1 - base) * mix
            out[name] = {"color": to_hex(np.clip(rgb, 0, 1)), "marker": _MARKERS[i % len(_MARKERS)]}
    return out


_STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "figure.titlesize": 13,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "image.interpolation": "nearest",
}


def set_style() -> None:
    """Readable defaults for every figure of this session (font sizes, resolution, spines)."""
    plt.rcParams.update(_STYLE)


def _to_numpy(g: Any) -> np.ndarray:
    """A 2-d array from a ``(m, n)`` or batched ``(B, m, n)`` tensor/array (batch-averaged)."""
    b = _batch(g)
    if b.ndim != 3:
        raise ValueError(f"a flow matrix must be (m, n) or (B, m, n), got shape {np.shape(g)}")
    return b.mean(0)


def _batch(g: Any) -> np.ndarray:
    """A ``(B, m, n)`` array from a ``(m, n)`` (``B = 1``) or ``(B, m, n)`` tensor/array."""
    if hasattr(g, "detach"):
        g = g.detach().float().cpu().numpy()
    g = np.asarray(g, dtype=np.float64)
    return g[None] if g.ndim == 2 else g


def _per_image_sq_distance(gt: Any, gs: Any, relative: bool) -> float:
    """``||G_T - G_S||^2`` (over ``||G_T||^2`` if ``relative``) image by image, then the mean over
    the images: the flow loss of one item (:func:`dfkd_lib.losses.flow_loss`, and with ``relative``
    :func:`dfkd_lib.losses.relative_flow_errors`), not the distance of the batch means, which is
    smaller wherever the images differ among themselves."""
    bt, bs = _batch(gt), _batch(gs)
    if bt.shape[0] != bs.shape[0]:  # one side is a single matrix: compare the batch means
        bt, bs = bt.mean(0, keepdims=True), bs.mean(0, keepdims=True)
    sq = ((bt - bs) ** 2).sum(axis=(1, 2))
    if relative:
        sq = sq / np.maximum((bt**2).sum(axis=(1, 2)), 1e-12)
    return float(sq.mean())


def _readable_log_axis(ax: Axes, which: str = "y") -> None:
    """Label a log axis in plain numbers (0.2, not 2×10⁻¹): ticks at the powers of ten where the
    axis spans more than two decades, at 1, 2 and 5 times them over one to two, and at 1, 2, 3, 5
    and 7 times them over less. Call it after the data are drawn."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = ax.get_ylim() if which == "y" else ax.get_xlim()
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    subs = (1.0,) if decades > 2 else (1.0, 2.0, 5.0) if decades > 1 else (1.0, 2.0, 3.0, 5.0, 7.0)
    axis = ax.yaxis if which == "y" else ax.xaxis
    axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=15))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


def _heatmap(
    ax: Axes,
    g: np.ndarray,
    title: str | None,
    diverging: bool,
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = True,
    labels: bool = True,
    cmap: str | None = None,
    aspect: str = "equal",
):
    if diverging:
        lim = max(abs(float(np.nanmin(g))), abs(float(np.nanmax(g))), 1e-12) if vmax is None else vmax
        vmin, vmax = -lim, lim
        cmap = cmap or "RdBu_r"
    else:
        cmap = cmap or "viridis"
    im = ax.imshow(g, cmap=cmap, vmin=vmin, vmax=vmax, aspect=aspect)
    if title:
        ax.set_title(title)
    if labels:
        ax.set_xlabel("channel $j$ (later map)")
        ax.set_ylabel("channel $i$ (earlier map)")
    m, n = g.shape
    ax.set_xticks(_ticks(n))
    ax.set_yticks(_ticks(m))
    for side in ("top", "right"):
        ax.spines[side].set_visible(True)
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, shrink=0.85, pad=0.02)
        cb.ax.tick_params(labelsize=9)
    return im


def _ticks(n: int) -> list[int]:
    step = 1 if n <= 8 else 4 if n <= 16 else 8 if n <= 32 else 16
    return list(range(0, n, step))


def plot_flow_matrix(
    G: Any,
    ax: Axes | None = None,
    title: str | None = "FSP matrix",
    diverging: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = True,
) -> Figure:
    """Heatmap of one flow (FSP) matrix with a colour bar.

    Args:
        G: ``(m, n)`` matrix, or ``(B, m, n)`` (averaged over the batch); tensor or array.
        ax: axes to draw into (default: a new figure).
        title: axes title.
        diverging: a symmetric red-blue map centred on 0 (for differences) instead of viridis.
        vmin, vmax: colour limits (``vmax`` alone sets the symmetric limit of a diverging map).
        colorbar: draw a colour bar.
    """
    g = _to_numpy(G)
    fig, ax = _new_axes(ax, (4.6, 3.9))
    _heatmap(ax, g, title, diverging, vmin, vmax, colorbar)
    return fig


def plot_flow_pair(
    G_teacher: Any,
    G_student: Any,
    title: str | None = None,
    names: tuple[str, str] = ("teacher", "student"),
) -> Figure:
    """Teacher | student | difference (teacher minus student) of one flow item.

    Teacher and student share one colour scale, so their panels can be compared by eye; the
    difference uses a diverging map centred on 0. Batched ``(B, m, n)`` inputs are shown as their
    batch means; the third title gives the FSP loss of this item, the squared Frobenius distance
    ``||G_T - G_S||^2`` image by image and averaged over the batch (the number
    :func:`dfkd_lib.losses.flow_loss` computes, larger than the distance of the two means shown).
    """
    gt, gs = _to_numpy(G_teacher), _to_numpy(G_student)
    if gt.shape != gs.shape:
        raise ValueError(f"teacher matrix {gt.shape} and student matrix {gs.shape} differ in shape")
    lo, hi = float(min(gt.min(), gs.min())), float(max(gt.max(), gs.max()))
    # about 8.5 inches wide: shown near full size in the book's text column
    fig, axes = plt.subplots(1, 3, figsize=(8.6, 3.3), layout="constrained")
    _heatmap(axes[0], gt, names[0], False, lo, hi, colorbar=False, aspect="auto")
    im = _heatmap(axes[1], gs, names[1], False, lo, hi, colorbar=False, aspect="auto")
    axes[1].set_ylabel("")
    cb = fig.colorbar(im, ax=axes[:2], shrink=0.85, pad=0.02)
    cb.ax.tick_params(labelsize=9)
    diff = gt - gs
    loss = _per_image_sq_distance(G_teacher, G_student, relative=False)
    batched = _batch(G_teacher).shape[0] > 1 and _batch(G_student).shape[0] > 1
    title3 = f"{names[0]} − {names[1]}\n" + rf"$\|\Delta\|^2$ = {loss:.3g}" + (" (image mean)" if batched else "")
    _heatmap(axes[2], diff, title3, True, aspect="auto")
    axes[2].set_ylabel("")
    if title:
        fig.suptitle(title)
    return fig


def plot_flow_grid(
    flows: Sequence[Any],
    names: Sequence[str] | None = None,
    ncols: int | None = None,
    diverging: bool = False,
    title: str | None = None,
    panel_size: float = 2.5,
) -> Figure:
    """A grid of flow items (e.g. every item of a dense flow), one heatmap and colour bar each.

    Args:
        flows: ``(m, n)`` or ``(B, m, n)`` matrices.
        names: a title for each item (e.g. ``FlowPlan.names``).
        ncols: panels per row (default: 3 for 3, 5, 6 or 9 items, else up to 4).
        diverging: use a diverging map (for differences).
        title: figure title.
        panel_size: width of one panel in inches.
    """
    mats = [_to_numpy(g) for g in flows]
    if not mats:
        raise ValueError("no flow items to plot")
    names = list(names) if names is not None else [f"item {k}" for k in range(len(mats))]
    if len(names) != len(mats):
        raise ValueError(f"{len(mats)} flow items but {len(names)} names")
    ncols = ncols or (3 if len(mats) in (3, 5, 6, 9) else min(4, len(mats)))
    nrows = math.ceil(len(mats) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel_size * ncols + 0.6, panel_size * 0.95 * nrows + (0.5 if title else 0.2)),
        layout="constrained", squeeze=False,
    )  # fmt: skip
    for k, ax in enumerate(axes.flat):
        if k >= len(mats):
            ax.set_visible(False)
            continue
        g = mats[k]
        _heatmap(ax, g, None, diverging, labels=False, aspect="auto")  # square panels for any m x n
        ax.set_title(f"{names[k]}  ({g.shape[0]}×{g.shape[1]})", fontsize=10)
        ax.tick_params(labelsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_flow_compare(
    flows: Mapping[str, Sequence[Any]],
    names: Sequence[str] | None = None,
    title: str | None = None,
    panel_size: float = 2.2,
) -> Figure:
    """Flow items of several networks side by side: one row per network, one column per item.

    The first row is the reference (the teacher). Each column shares one colour scale, so a
    student's matrix can be compared with the teacher's by eye, and each student panel's title
    gives its relative distance to the reference, ``||G_T - G_S||^2 / ||G_T||^2`` (0: the same
    matrix; 1: as far as an all-zero one). With batches of the same images on both sides the
    distance is taken image by image and averaged, as :func:`dfkd_lib.losses.relative_flow_errors`
    does; the panels show the batch means.

    Args:
        flows: ``{row name: items}``, each item an ``(m, n)`` or ``(B, m, n)`` matrix (shown as its
            batch mean); every row has the same items, of the same shapes.
        names: a title for each item (e.g. ``FlowPlan.names``).
        title: figure title.
        panel_size: width of one panel in inches.
    """
    rows = {k: [_to_numpy(g) for g in v] for k, v in flows.items()}
    if not rows:
        raise ValueError("no networks to plot")
    ref_name, ref = next(iter(rows.items()))
    ref_items = next(iter(flows.values()))
    for k, mats in rows.items():
        if [g.shape for g in mats] != [g.shape for g in ref]:
            raise ValueError(f"the items of {k!r} ({[g.shape for g in mats]}) differ from those of {ref_name!r}")
    n_items = len(ref)
    names = list(names) if names is not None else [f"item {k}" for k in range(n_items)]
    if len(names) != n_items:
        raise ValueError(f"{n_items} flow items but {len(names)} names")
    fig, axes = plt.subplots(
        len(rows), n_items, figsize=(panel_size * n_items + 1.2, panel_size * 0.95 * len(rows) + 0.5),
        layout="constrained", squeeze=False,
    )  # fmt: skip
    for c in range(n_items):
        col = [mats[c] for mats in rows.values()]
        lo, hi = min(float(g.min()) for g in col), max(float(g.max()) for g in col)
        ims = []
        for r, (row_name, mats) in enumerate(rows.items()):
            ax, g = axes[r, c], mats[c]
            ims.append(_heatmap(ax, g, None, False, lo, hi, colorbar=False, labels=False, aspect="auto"))
            ax.tick_params(labelsize=7)
            if r == 0:
                ax.set_title(f"{names[c]}  ({g.shape[0]}×{g.shape[1]})", fontsize=10)
            else:
                rel = _per_image_sq_distance(ref_items[c], flows[row_name][c], relative=True)
                ax.set_title(f"rel. distance {rel:.2f}", fontsize=9)
            if c == 0:
                ax.set_ylabel(row_name, fontsize=11)
        cb = fig.colorbar(ims[0], ax=axes[:, c], shrink=0.6, pad=0.02, location="bottom")
        cb.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title)
    return fig


def stage_legend(where: Figure | Axes, stages: Sequence[int]) -> None:
    """A legend of the stage colours below a figure (or below one axes)."""
    handles = [
        plt.Line2D([], [], marker="o", ls="", ms=9, color=STAGE_COLORS[s % len(STAGE_COLORS)],
                   label="stem" if s == 0 else f"stage {s}")
        for s in sorted(set(stages))
    ]  # fmt: skip
    if isinstance(where, Axes):
        where.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=len(handles),
                     frameon=False, fontsize="small")  # fmt: skip
    else:
        where.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)


def _arc_top(a: int, b: int) -> float:
    return 0.3 * (b - a) + 0.1  # half the height of the arc from tap a to tap b


def _draw_pairs(
    ax: Axes,
    tap_names: Sequence[str],
    pairs: Sequence[tuple[int, int]],
    tap_stages: Sequence[int],
    title: str | None,
    top: float,
) -> None:
    num = len(tap_names)
    for a, b in pairs:
        ax.add_patch(
            Arc(((a + b) / 2, 0), b - a, 2 * _arc_top(a, b), theta1=0, theta2=180, lw=1.6, color="#444444", alpha=0.75)
        )
    ax.plot([0, num - 1], [0, 0], color="#BBBBBB", lw=1.0, zorder=1)
    colors = [STAGE_COLORS[s % len(STAGE_COLORS)] for s in tap_stages]
    ax.scatter(np.arange(num), np.zeros(num), s=150, c=colors, zorder=3, edgecolors="white", linewidths=1.5)
    rotate = num > 5
    for x, name in enumerate(tap_names):
        ax.text(x, -0.14, name, ha="right" if rotate else "center", va="top", rotation=40 if rotate else 0,
                rotation_mode="anchor", fontsize=10)  # fmt: skip
    ax.set_xlim(-0.5, num - 0.5)
    ax.set_ylim(-_label_room(tap_names), top + 0.1)
    ax.set_aspect("equal")
    ax.axis("off")
    label = f"{title}: " if title else ""
    ax.set_title(f"{label}{len(pairs)} item{'s' if len(pairs) != 1 else ''}")


def _label_room(tap_names: Sequence[str]) -> float:
    return 0.75 if len(tap_names) > 5 else 0.45


def plot_pair_diagram(
    tap_names: Sequence[str],
    pairs: Sequence[tuple[int, int]] | Mapping[str, Sequence[tuple[int, int]]],
    tap_stages: Sequence[int],
    title: str | None = None,
    ax: Axes | None = None,
    legend: bool = True,
) -> Figure:
    """Taps as dots along a line (coloured by stage), flow items as arcs between them.

    Args:
        tap_names: name of each tap (e.g. ``model.tap_names()``).
        pairs: one list of ``(a, b)`` tap-index pairs, or a mapping ``{name: pairs}`` (e.g.
            ``{"sparse": ..., "chain": ..., "dense": ...}``) drawn side by side on one scale.
        tap_stages: stage of each tap (0 for the stem), e.g. ``model.tap_stages``.
        title: title of a single diagram (a mapping uses its keys).
        ax: axes for a single diagram.
        legend: add the legend of the stage colours (below the figure, or below ``ax``); for
            several diagrams in one figure pass ``False`` and call :func:`stage_legend` once.
    """
    if len(tap_names) != len(tap_stages):
        raise ValueError(f"{len(tap_names)} tap names but {len(tap_stages)} tap stages")
    sets = dict(pairs) if isinstance(pairs, Mapping) else {title: pairs}
    sets = {k: [(int(p[0]), int(p[1])) for p in v] for k, v in sets.items()}
    n, num = len(sets), len(tap_names)
    if ax is not None and n > 1:
        raise ValueError("ax can only be given for a single pair set")
    top = max([_arc_top(a, b) for ps in sets.values() for a, b in ps] + [0.3])
    if ax is None:
        panel_w = max(3.0, 0.65 * num)  # inches per panel
        unit = panel_w / num
        height = unit * (top + 0.1 + _label_room(tap_names)) + 1.0  # + title and legend
        fig, axes = plt.subplots(
            1, n, figsize=(panel_w * n + 0.3 * (n - 1), height), layout="constrained", squeeze=False
        )
        axes = list(axes.flat)
    else:
        fig, axes = ax.figure, [ax]
    for ax_, (name, ps) in zip(axes, sets.items()):
        _draw_pairs(ax_, tap_names, ps, tap_stages, name, top)
    # on axes the caller gave, the legend goes below those axes: a figure legend would be
    # repeated by every diagram drawn into the same figure
    if legend:
        stage_legend(fig if ax is None else ax, tap_stages)
    return fig


_GROUPS = (
    ("loss", "loss (per image)", lambda k: k.startswith("loss_")),
    ("acc", "accuracy (%)", lambda k: k in ("train_acc", "val_acc", "test_acc")),
    ("disc", "D accuracy (%)", lambda k: k in ("d_acc_real", "d_acc_fake")),
)
_NICE = {
    "loss_ce": "cross-entropy", "loss_kd": "KD", "loss_flow": "flow", "loss_adv": "adversarial",
    "loss_at": "attention", "loss_total": "total", "loss_disc": "discriminator",
    "train_acc": "train", "val_acc": "validation", "test_acc": "test",
    "d_acc_real": "teacher flows called real", "d_acc_fake": "student flows called fake",
}  # fmt: skip
_LINESTYLES = ("-", "--", ":", "-.")
#: A loss panel goes to a log scale when its curves' typical sizes differ by more than this factor.
_LOG_SPREAD = 30.0


def plot_history(
    history: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Mapping[str, Any]]],
    keys: Sequence[str] | None = None,
    title: str | None = None,
    panel_size: tuple[float, float] = (3.9, 3.0),
) -> Figure:
    """Training curves from :func:`dfkd_lib.train` histories (one record per epoch).

    One panel per kind of quantity found: losses, accuracies, discriminator accuracy. A panel
    of one quantity names it on its y axis; a loss panel whose curves differ in size by more
    than 30 times (a weighted flow term beside the cross-entropy) is drawn on a log scale, so
    that the small ones do not lie flat on zero; the discriminators' panel has a line at 50 %
    (a critic that cannot tell teacher from student); epochs of a flow-only stage (``stage`` 1
    in the records) are shaded.

    Args:
        history: one run's history, or ``{label: history}`` to compare runs (one colour per
            run, one line style per quantity).
        keys: the record keys to plot (default: every loss, accuracy and discriminator
            accuracy present).
        title: figure title.
    """
    runs = dict(history) if isinstance(history, Mapping) else {None: history}
    runs = {k: list(v) for k, v in runs.items()}
    if not runs or not any(runs.values()):
        raise ValueError("empty history")
    present = [k for h in runs.values() for rec in h for k in rec]
    present = list(dict.fromkeys(present))
    if keys is None:
        keys = [k for k in present if any(test(k) for _, _, test in _GROUPS)]
    groups = [(name, ylabel, [k for k in keys if test(k)]) for name, ylabel, test in _GROUPS]
    groups = [g for g in groups if g[2]]
    if not groups:
        raise ValueError(f"none of the keys {list(keys)} is a loss or accuracy; the history has {present}")
    n = len(groups)
    fig, axes = plt.subplots(1, n, figsize=(panel_size[0] * n, panel_size[1]), layout="constrained", squeeze=False)
    run_colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    by_run = _series_colors([k for k in runs if k is not None])
    for ax, (group, ylabel, gkeys) in zip(axes.flat, groups):
        if len(gkeys) == 1 and group != "disc":  # name the one quantity: "validation accuracy (%)"
            nice = _NICE.get(gkeys[0], gkeys[0])
            ylabel = f"{nice} {ylabel}" if group == "acc" else f"{nice} loss (per image)"
        sizes = []
        for label, h in runs.items():
            for i, k in enumerate(gkeys):
                pts = [(rec["epoch"], rec[k]) for rec in h if k in rec and rec[k] is not None]
                if not pts:
                    continue
                x, y = zip(*pts)
                if label is None:
                    color, ls, name = run_colors[i % len(run_colors)], "-", _NICE.get(k, k)
                else:
                    color, ls = by_run[label], _LINESTYLES[i % len(_LINESTYLES)]
                    name = f"{label}: {_NICE.get(k, k)}" if len(gkeys) > 1 else str(label)
                ax.plot(x, y, ls=ls, color=color, marker="o", ms=4, lw=1.8, label=name)
                sizes.append(float(np.median(y)) if min(y) > 0 else 0.0)  # 0: a log axis would hide it
        if group == "loss" and len(sizes) > 1 and min(sizes) > 0 and max(sizes) / min(sizes) > _LOG_SPREAD:
            ax.set_yscale("log")
            _readable_log_axis(ax, "y")
        if group == "disc":
            ax.axhline(50, color="grey", ls=":", lw=1)
        stage1 = sorted({rec["epoch"] for h in runs.values() for rec in h if rec.get("stage") == 1})
        if stage1:
            ax.axvspan(stage1[0] - 0.5, stage1[-1] + 0.5, color="grey", alpha=0.1, lw=0, label="_flow only")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        if len(ax.get_legend_handles_labels()[1]) > 2:  # many curves: the legend goes below the panel
            ax.legend(fontsize=8.5, frameon=False, loc="upper center", bbox_to_anchor=(0.5, 0), borderaxespad=3.6)
        else:
            ax.legend(fontsize=9, frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def show_images(
    x: Any,
    labels: Sequence[int] | None = None,
    classes: Sequence[str] | None = None,
    ncols: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    size: float = 0.9,
    title: str | None = None,
) -> Figure:
    """A grid of images with their class names.

    Args:
        x: ``(N, 32, 32, 3) uint8`` images (as stored), or a ``(N, 3, H, W)`` float tensor;
            give ``mean`` and ``std`` to undo the normalisation of a loader's batch.
        labels: class index of each image.
        classes: class names (default: the indices).
        ncols: images per row.
        size: inches per image.
    """
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"images must be 4-d, got shape {x.shape}")
    if x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    if x.dtype != np.uint8:
        x = x.astype(np.float64)
        if mean is not None and std is not None:
            x = x * np.asarray(std) + np.asarray(mean)
        x = np.clip(x, 0, 1)
    n = len(x)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, (size + 0.3) * nrows + (0.3 if title else 0)), layout="constrained",
        squeeze=False,
    )  # fmt: skip
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(x[k], interpolation="nearest")
        if labels is not None:
            y = int(labels[k])
            ax.set_title(classes[y] if classes is not None else str(y), fontsize=9, pad=3)
    if title:
        fig.suptitle(title)
    return fig


# --- added for chapters 4-6: tap alignment, Gram-matrix blocks, grouped bars ---------------------
def plot_tap_alignment(
    teacher_names: Sequence[str],
    teacher_stages: Sequence[int],
    student_names: Sequence[str],
    student_stages: Sequence[int],
    mapping: Sequence[int],
    labels: tuple[str, str] = ("teacher", "student"),
) -> Figure:
    """Teacher taps on top, student taps below their matched teacher taps, a line per match.

    Args:
        teacher_names, teacher_stages: name and stage (0 for the stem) of each teacher tap.
        student_names, student_stages: the same for the student.
        mapping: teacher tap index of each student tap (e.g. :func:`dfkd_lib.align_taps`).
        labels: names of the two rows.
    """
    if len(mapping) != len(student_names) or len(student_names) != len(student_stages):
        raise ValueError("mapping, student_names and student_stages must have one entry per student tap")
    if len(teacher_names) != len(teacher_stages):
        raise ValueError(f"{len(teacher_names)} teacher names but {len(teacher_stages)} teacher stages")
    nt = len(teacher_names)
    # about 8.5 inches for 13 teacher taps: shown near full size in the book's text column
    fig, ax = plt.subplots(figsize=(min(8.6, max(6.0, 0.5 * nt + 2.0)), 3.4), layout="constrained")
    for s in sorted(set(teacher_stages)):  # a light band behind each stage
        xs = [i for i, st in enumerate(teacher_stages) if st == s]
        ax.axvspan(min(xs) - 0.42, max(xs) + 0.42, color=STAGE_COLORS[s % len(STAGE_COLORS)], alpha=0.09, lw=0)
    for t in mapping:
        ax.plot([t, t], [0.0, 1.0], color="#444444", lw=1.4, ls="--", zorder=1)
    tc = [STAGE_COLORS[s % len(STAGE_COLORS)] for s in teacher_stages]
    sc = [STAGE_COLORS[s % len(STAGE_COLORS)] for s in student_stages]
    ax.scatter(np.arange(nt), np.ones(nt), s=150, c=tc, zorder=3, edgecolors="white", linewidths=1.5)
    ax.scatter(list(mapping), np.zeros(len(mapping)), s=190, c=sc, zorder=3, edgecolors="black", linewidths=1.2)
    for i, name in enumerate(teacher_names):
        ax.text(i, 1.13, name, ha="left", va="bottom", rotation=40, rotation_mode="anchor", fontsize=9)
    for t, name in zip(mapping, student_names):
        ax.text(t, -0.13, name, ha="right", va="top", rotation=40, rotation_mode="anchor", fontsize=9)
    ax.text(-0.75, 1.0, labels[0], ha="right", va="center", fontsize=11)
    ax.text(-0.75, 0.0, labels[1], ha="right", va="center", fontsize=11)
    ax.set_xlim(-0.6, nt - 0.4)
    ax.set_ylim(-0.75, 1.75)
    ax.axis("off")
    stage_legend(fig, teacher_stages)
    return fig


def plot_gram_blocks(
    gram: Any,
    tap_names: Sequence[str],
    channels: Sequence[int],
    items: Sequence[tuple[int, int]] = (),
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """A Gram matrix of concatenated taps, cut into one block per pair of taps.

    Args:
        gram: ``(C, C')`` or ``(B, C, C')`` matrix (batch-averaged), ``C = sum(channels)``; its
            columns are the first taps whose channels add up to ``C'``.
        tap_names: name of each concatenated tap, in order.
        channels: channels of each tap (the block sizes).
        items: ``(row tap, column tap)`` positions (indices into ``tap_names``) of the blocks to
            outline in red: the flow items this matrix delivers.
        ax: axes to draw into (default: a new figure).
        title: axes title.
    """
    g = _to_numpy(gram)
    if g.shape[0] != sum(channels) or len(channels) != len(tap_names):
        raise ValueError(f"a {g.shape} matrix does not fit channels {list(channels)} of taps {list(tap_names)}")
    fig, ax = _new_axes(ax, (4.6, 4.0))
    im = ax.imshow(g, cmap="viridis")
    edges = np.concatenate([[0], np.cumsum(channels)]) - 0.5
    for e in edges[1:-1]:
        ax.axhline(e, color="white", lw=0.8)
        if e < g.shape[1] - 0.5:
            ax.axvline(e, color="white", lw=0.8)
    centres = (edges[:-1] + edges[1:]) / 2
    ax.set_yticks(centres, tap_names)
    cols = [k for k in range(len(channels)) if edges[k + 1] <= g.shape[1] - 0.5 + 1e-9]
    ax.set_xticks(centres[cols], [tap_names[k] for k in cols], rotation=40, ha="right", rotation_mode="anchor")
    ax.tick_params(length=0)
    for r, c in items:
        ax.add_patch(
            plt.Rectangle((edges[c], edges[r]), channels[c], channels[r], fill=False, ec="#D55E00", lw=2.4, zorder=3)
        )
    if title:
        ax.set_title(title)
    cb = ax.figure.colorbar(im, ax=ax, shrink=0.8, pad=0.02)
    cb.ax.tick_params(labelsize=9)
    return fig


def plot_grouped_bars(
    values: Mapping[str, Sequence[float]],
    categories: Sequence[str],
    ylabel: str = "",
    title: str | None = None,
    log: bool = False,
    ax: Axes | None = None,
    fmt: str | None = None,
    rotate: bool | None = None,
) -> Figure:
    """Bars for several series over the same categories (e.g. one bar per method and flow item).

    Args:
        values: ``{series name: one value per category}``.
        categories: the category labels on the x axis.
        ylabel: y-axis label.
        title: axes title.
        log: logarithmic y axis, with a point per value instead of a bar (whose length would
            depend on where the axis starts).
        ax: axes to draw into (default: a new figure).
        fmt: a format such as ``"{:.1f}"`` to write each value above its bar.
        rotate: slant the category labels (default: when there are more than four).
    """
    series = {k: [float(v) for v in vs] for k, vs in values.items()}
    for k, vs in series.items():
        if len(vs) != len(categories):
            raise ValueError(f"series {k!r} has {len(vs)} values for {len(categories)} categories")
    n, m = len(series), len(categories)
    fig, ax = _new_axes(ax, (max(5.0, min(8.6, 0.3 * n * m + 2.6)), 3.6))
    width = 0.8 / max(n, 1)
    colors = _series_colors(list(series))
    x = np.arange(m)
    for i, (name, vs) in enumerate(series.items()):
        xi = x - 0.4 + width * (i + 0.5)
        if log:  # on a log axis a bar's length means nothing (it depends on where the axis starts)
            ax.plot(xi, vs, "o", ms=8, mec="black", mew=0.6, label=name, color=colors[name], ls="none")
            for xj, v in zip(xi, vs) if fmt else ():
                ax.annotate(fmt.format(v), (xj, v), xytext=(0, 7), textcoords="offset points", ha="center",
                            fontsize=8)  # fmt: skip
            continue
        bars = ax.bar(xi, vs, width, label=name, color=colors[name])
        if fmt:
            ax.bar_label(bars, [fmt.format(v) for v in vs], fontsize=8, padding=2)
    rotate = m > 4 if rotate is None else rotate
    ax.set_xticks(x, categories, rotation=30 if rotate else 0, ha="right" if rotate else "center",
                  rotation_mode="anchor")  # fmt: skip
    if log:
        ax.set_yscale("log")
        _readable_log_axis(ax, "y")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    if n > 1:
        ax.legend(frameon=False, fontsize=9)
    if title:
        ax.set_title(title)
    return fig


# ---------------------------------------------------------------------------------------------
# Figures drawn with seaborn (imported when a figure needs it: seaborn is a dependency of the
# book, not of the library), and the schematic of the method.

__all__ += [
    "plot_class_similarity",
    "plot_logit_histograms",
    "plot_item_distances",
    "plot_flow_pca",
    "plot_seed_points",
    "plot_seed_curves",
    "plot_paired_differences",
    "plot_method_schematic",
]


def _seaborn():
    """seaborn, with a message that says where it comes from when it is missing."""
    try:
        import seaborn as sns
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("this figure needs seaborn: pip install 'dfkd_lib[book]' (or seaborn)") from err
    return sns


def _slant_xticks(ax: Axes, degrees: float) -> None:
    """Rotate the x tick labels, each anchored at its tick by its right end."""
    ax.tick_params(axis="x", rotation=degrees)
    for label in ax.get_xticklabels():
        label.set_ha("right")
        label.set_rotation_mode("anchor")


def plot_class_similarity(
    similarity: Any,
    classes: Sequence[str],
    ax: Axes | None = None,
    title: str | None = None,
    mask_diagonal: bool = True,
) -> Figure:
    """Heatmap of how much probability the teacher gives each class for images of each class.

    Args:
        similarity: ``(K, K)`` array; row ``i`` is the teacher's mean softened distribution over
            the images whose label is class ``i`` (its "dark knowledge" about class ``i``).
        classes: the ``K`` class names.
        ax: axes to draw into (default: a new figure).
        title: axes title.
        mask_diagonal: leave the diagonal (the true class, which dominates) blank so that the
            colour scale shows the wrong classes.
    """
    sns = _seaborn()
    s = np.asarray(similarity, dtype=np.float64)
    k = len(classes)
    if s.shape != (k, k):
        raise ValueError(f"similarity must be ({k}, {k}) for {k} classes, got shape {s.shape}")
    fig, ax = _new_axes(ax, (7.2, 5.8))
    mask = np.eye(k, dtype=bool) if mask_diagonal else None
    sns.heatmap(s, mask=mask, ax=ax, cmap="rocket_r", annot=True, fmt=".2f", annot_kws={"fontsize": 8},
                xticklabels=classes, yticklabels=classes, square=True, linewidths=0.5,
                cbar_kws={"shrink": 0.8, "label": "mean probability"})  # fmt: skip
    ax.set_xlabel("class the teacher gives probability to")
    ax.set_ylabel("true class of the images")
    _slant_xticks(ax, 40)
    if title:
        ax.set_title(title)
    return fig


def plot_logit_histograms(
    logits: Mapping[str, Mapping[int, tuple[Any, Any]]],
    threshold: float = 0.0,
    bins: int = 30,
    title: str | None = None,
) -> Figure:
    """Histograms of a discriminator's logits on real (teacher) and fake (student) flows.

    One row per run, one panel per recorded epoch; each panel gives the share of teacher flows
    called real (logit above ``threshold``) and of student flows called fake (below it).

    Args:
        logits: ``{run name: {epoch: (logits on teacher flows, logits on student flows)}}``,
            each a 1-d array (e.g. every item's logit for every image of a probe batch).
        threshold: the decision threshold (0 for BCE and hinge, 0.5 for least squares).
        bins: histogram bins per panel.
        title: figure title.
    """
    sns = _seaborn()
    runs = {name: dict(sorted(per_epoch.items())) for name, per_epoch in logits.items()}
    if not runs or not all(runs.values()):
        raise ValueError("logits needs at least one run with at least one epoch")
    ncols = max(len(v) for v in runs.values())
    fig, axes = plt.subplots(len(runs), ncols, figsize=(2.45 * ncols + 0.6, 2.3 * len(runs) + 0.7),
                             layout="constrained", squeeze=False, sharex="row")  # fmt: skip
    palette = {"teacher (real)": "#0072B2", "student (fake)": "#D55E00"}
    for row, (name, per_epoch) in enumerate(runs.items()):
        for col in range(ncols):
            ax = axes[row, col]
            if col >= len(per_epoch):
                ax.axis("off")
                continue
            epoch, (real, fake) = list(per_epoch.items())[col]
            real, fake = np.ravel(_as_array(real)), np.ravel(_as_array(fake))
            values = np.concatenate([real, fake])
            source = np.array(["teacher (real)"] * len(real) + ["student (fake)"] * len(fake))
            edges = np.histogram_bin_edges(np.append(values, threshold), bins=bins)
            sns.histplot(x=values, hue=source, bins=edges, element="step", ax=ax, palette=palette,
                         legend=False)  # fmt: skip
            ax.axvline(threshold, color="#444444", lw=0.9, ls="--")
            acc_real, acc_fake = 100 * np.mean(real > threshold), 100 * np.mean(fake < threshold)
            ax.text(0.02, 0.97, f"real: {acc_real:.0f} %\nfake: {acc_fake:.0f} %", transform=ax.transAxes,
                    va="top", fontsize=8, color="#333333", zorder=5,
                    bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 1.5})  # fmt: skip
            ax.set_title(f"{name}, epoch {epoch}", fontsize=10)
            ax.set_xlabel("logit" if row == len(runs) - 1 else "")
            ax.set_ylabel("count" if col == 0 else "")
    handles = [Patch(facecolor=c, edgecolor=c, alpha=0.5, label=k) for k, c in palette.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def _as_array(x: Any) -> np.ndarray:
    """A numpy array from a tensor, an array or a list."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def plot_item_distances(
    distances: Any,
    item_names: Sequence[str],
    epochs: Sequence[int] | None = None,
    relative: bool = True,
    title: str | None = None,
    band: bool | None = None,
) -> Figure:
    """Each flow item's teacher-student distance over training, and its spread over images.

    Args:
        distances: ``(epochs, items)`` or ``(epochs, items, images)``: the distance of every item
            (for every image) after each epoch, e.g. squared Frobenius distances of flows.
        item_names: the name of each item.
        epochs: the epoch of each row (default ``0, 1, ...``).
        relative: divide by the first row, so that each item starts at 1 and a value of 0.1
            means that 90 % of its distance is gone.
        title: figure title.
        band: shade the middle half of the images (25th to 75th percentile) around each median
            line. By default only for up to 3 items: more bands overlap into one blur, and the
            right panel shows the spread anyway.

    Left: the median over images (with its band, see ``band``). Right (when there are images):
    each image at the last epoch, with the median and the middle half.
    """
    sns = _seaborn()
    d = _as_array(distances)
    if d.ndim == 2:
        d = d[:, :, None]
    if d.ndim != 3 or d.shape[1] != len(item_names):
        raise ValueError(f"distances must be (epochs, {len(item_names)} items[, images]), got shape {d.shape}")
    epochs = list(range(d.shape[0])) if epochs is None else list(epochs)
    if len(epochs) != d.shape[0]:
        raise ValueError(f"{len(epochs)} epochs for {d.shape[0]} rows of distances")
    if relative:
        d = d / np.maximum(d[:1], 1e-12)
    n_e, n_k, n_i = d.shape
    epoch_col = np.repeat(epochs, n_k * n_i)
    item_col = np.tile(np.repeat(list(item_names), n_i), n_e)
    value_col = d.reshape(-1)
    ylabel = f"distance / distance at epoch {epochs[0]}" if relative else "distance"
    per_image = n_i > 1
    fig, axes = plt.subplots(1, 2 if per_image else 1, figsize=(10.5 if per_image else 6.5, 4.2),
                             layout="constrained", squeeze=False,
                             gridspec_kw={"width_ratios": [3, 2]} if per_image else None)  # fmt: skip
    ax = axes[0, 0]
    palette = {name: _ITEM_COLORS[k % len(_ITEM_COLORS)] for k, name in enumerate(item_names)}  # the schematic's
    band = n_i > 1 and (n_k <= 3 if band is None else band)
    sns.lineplot(x=epoch_col, y=value_col, hue=item_col, estimator="median", errorbar=("pi", 50) if band else None,
                 marker="o", ax=ax, palette=palette)  # fmt: skip
    ax.set_yscale("log")
    _readable_log_axis(ax, "y")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    sns.move_legend(ax, "lower left", title="flow item", frameon=False, fontsize=8, title_fontsize=9)
    ax.set_title("median over images" + (", band: middle half" if band else "") if n_i > 1 else "")
    if per_image:
        last = d[-1]  # (items, images)
        ax2 = axes[0, 1]
        names = np.repeat(list(item_names), n_i)
        sns.stripplot(x=last.reshape(-1), y=names, hue=names, ax=ax2, size=5, alpha=0.7, legend=False,
                      palette=palette)  # fmt: skip
        sns.pointplot(x=last.reshape(-1), y=names, estimator="median", errorbar=("pi", 50), ax=ax2,
                      color="black", linestyle="none", marker="|", markersize=14, capsize=0.3)  # fmt: skip
        ax2.set_xscale("log")
        _readable_log_axis(ax2, "x")
        ax2.set_xlabel(ylabel)
        ax2.set_ylabel("")
        ax2.set_title(f"epoch {epochs[-1]}: images, median and middle half")
        ax2.grid(axis="x", alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def plot_flow_pca(
    teacher: Any,
    students: Mapping[str, Any],
    title: str | None = None,
    link: bool = False,
) -> Figure:
    """One flow item of many images, as a discriminator reads it, projected on two dimensions.

    Every image's ``m x n`` matrix is flattened to the ``mn`` numbers the item's discriminator
    reads. The two principal directions of all the flows shown (teacher and every student) give
    one pair of axes for every panel; each panel shows the teacher's flows (real) and one
    student's (fake).

    Args:
        teacher: ``(N, m, n)`` or ``(N, mn)``: the teacher's flows of ``N`` images.
        students: ``{name: (N, m, n) or (N, mn)}``: students' flows of the same images.
        title: figure title.
        link: join each image's teacher point and student point with a thin line (what the L2
            loss compares, and the discriminator never sees).
    """
    sns = _seaborn()
    t = _as_array(teacher)
    t = t.reshape(len(t), -1)
    s = {name: _as_array(v).reshape(len(t), -1) for name, v in students.items()}
    if not s:
        raise ValueError("students needs at least one entry")
    everything = np.concatenate([t, *s.values()])
    mean = everything.mean(0)
    _, sv, vt = np.linalg.svd(everything - mean, full_matrices=False)
    share = sv**2 / np.sum(sv**2)

    def project(x: np.ndarray) -> np.ndarray:
        return (x - mean) @ vt[:2].T

    pt = project(t)
    fig, axes = plt.subplots(1, len(s), figsize=(4.3 * len(s) + 0.4, 4.2), layout="constrained",
                             squeeze=False, sharex=True, sharey=True)  # fmt: skip
    for ax, (name, x) in zip(axes[0], s.items()):
        ps = project(x)
        if link:
            for a, b in zip(pt, ps):
                ax.plot([a[0], b[0]], [a[1], b[1]], color="#BBBBBB", lw=0.5, zorder=1)
        points = np.concatenate([pt, ps])
        source = np.array(["teacher (real)"] * len(pt) + ["student (fake)"] * len(ps))
        sns.scatterplot(x=points[:, 0], y=points[:, 1], hue=source, style=source, ax=ax, s=18, alpha=0.75,
                        palette={"teacher (real)": "#0072B2", "student (fake)": "#D55E00"},
                        legend=ax is axes[0, 0])  # fmt: skip
        ax.set_title(name)
        ax.set_xlabel(f"PC 1 ({share[0]:.0%} of the variance)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(f"PC 2 ({share[1]:.0%} of the variance)")
    sns.move_legend(axes[0, 0], "best", title=None, frameon=True, fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_seed_points(
    values: Mapping[str, Sequence[float]],
    ylabel: str = "",
    ax: Axes | None = None,
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """Every seed as a point, over each group's mean and standard deviation.

    Args:
        values: ``{group name: one value per seed}``.
        ylabel: y-axis label.
        ax: axes to draw into (default: a new figure).
        title: axes title.
        colors: ``{group name: colour}`` for the seeds' points (default: :data:`METHOD_COLORS` for
            methods, else seaborn's palette).
    """
    sns = _seaborn()
    groups = {k: [float(v) for v in vs] for k, vs in values.items() if len(vs)}
    if not groups:
        raise ValueError("values needs at least one group with a value")
    fig, ax = _new_axes(ax, (max(5.0, 0.9 * len(groups) + 2.0), 3.8))
    names = np.concatenate([[k] * len(v) for k, v in groups.items()])
    ys = np.concatenate([v for v in groups.values()])
    palette = _series_colors(list(groups), colors, sns.color_palette(n_colors=len(groups)).as_hex())
    sns.stripplot(x=names, y=ys, hue=names, palette=palette, ax=ax, size=7, jitter=0.12, alpha=0.85,
                  edgecolor="black", linewidth=0.6, legend=False, zorder=3)  # fmt: skip
    sns.pointplot(x=names, y=ys, errorbar="sd", ax=ax, color="black", linestyle="none", marker="_",
                  markersize=22, capsize=0.25, err_kws={"linewidth": 1.3}, zorder=4)  # fmt: skip
    ax.set_ylabel(ylabel)
    ax.set_xlabel("")
    ax.grid(axis="y", alpha=0.3)
    if len(groups) > 4:
        _slant_xticks(ax, 30)
    if title:
        ax.set_title(title)
    return fig


def plot_seed_curves(
    curves: Mapping[str, Sequence[Sequence[float]]],
    ylabel: str = "",
    ax: Axes | None = None,
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """One thin line per seed and a thick line for the mean, one colour per group.

    Args:
        curves: ``{group name: one curve (a value per epoch, from epoch 1) per seed}``.
        ylabel: y-axis label.
        ax: axes to draw into (default: a new figure).
        title: axes title.
        colors: ``{group name: colour}`` (default: :data:`METHOD_COLORS` for methods, else seaborn's palette).
    """
    sns = _seaborn()
    groups = {k: [list(map(float, c)) for c in cs] for k, cs in curves.items() if len(cs)}
    if not groups:
        raise ValueError("curves needs at least one group with a curve")
    if colors is not None:  # keyed by group name: follow the names into the legend's labels
        colors = {f"{k} (n={len(groups[k])})": c for k, c in colors.items() if k in groups}
    groups = {f"{k} (n={len(cs)})": cs for k, cs in groups.items()}  # the legend says how many
    fig, ax = _new_axes(ax, (6.0, 3.8))
    palette = _series_colors(list(groups), colors, sns.color_palette(n_colors=len(groups)).as_hex())
    epoch, value, group, seed = [], [], [], []
    for name, cs in groups.items():
        for s, c in enumerate(cs):
            epoch += list(range(1, len(c) + 1))
            value += c
            group += [name] * len(c)
            seed += [s] * len(c)
    sns.lineplot(x=epoch, y=value, hue=group, units=seed, estimator=None, palette=palette, lw=0.8,
                 alpha=0.6, ax=ax, legend=False)  # fmt: skip
    sns.lineplot(x=epoch, y=value, hue=group, errorbar=None, palette=palette, lw=2.2, ax=ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    sns.move_legend(ax, "best", title=None, frameon=False, fontsize=9)
    if title:
        ax.set_title(title)
    return fig


def plot_paired_differences(
    differences: Mapping[str, Sequence[float]],
    xlabel: str = "difference",
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Paired differences (one per seed) of several comparisons, with their mean and spread.

    Args:
        differences: ``{comparison name: one difference per seed}``, e.g. ``{"kd - scratch":
            [kd(seed) - scratch(seed) for seed in seeds]}``.
        xlabel: x-axis label.
        ax: axes to draw into (default: a new figure).
        title: axes title.
    """
    sns = _seaborn()
    diffs = {k: [float(v) for v in vs] for k, vs in differences.items() if len(vs)}
    if not diffs:
        raise ValueError("differences needs at least one comparison with a value")
    fig, ax = _new_axes(ax, (6.8, 0.45 * len(diffs) + 1.4))
    names = np.concatenate([[k] * len(v) for k, v in diffs.items()])
    xs = np.concatenate([v for v in diffs.values()])
    ax.axvline(0.0, color="#444444", lw=1.0)
    sns.stripplot(x=xs, y=names, ax=ax, color="#0072B2", size=6, jitter=0.1, alpha=0.85, zorder=3)
    sns.pointplot(x=xs, y=names, errorbar="sd", ax=ax, color="black", linestyle="none", marker="|",
                  markersize=16, capsize=0.3, err_kws={"linewidth": 1.2}, zorder=4)  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel("")
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title)
    return fig


#: Colours of the flow items in the schematic (Okabe-Ito, then matplotlib's tab10).
_ITEM_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


def plot_method_schematic(
    teacher_names: Sequence[str],
    teacher_stages: Sequence[int],
    student_names: Sequence[str],
    student_stages: Sequence[int],
    mapping: Sequence[int],
    pairs: Sequence[tuple[int, int]],
    lambda_flow: float,
    lambda_adv: float,
    gan_loss: str = "bce",
    labels: tuple[str, str] = ("teacher", "student"),
    *,
    flow_grad_ratio: float | None = None,
    flow_norm: str = "none",
    d_input: str = "raw",
) -> Figure:
    """The method in one picture, drawn from the same objects the library trains with.

    The teacher's taps (top) and the student's (below them), the alignment of student taps to
    teacher taps (dashed), every flow item as an arc in both networks (numbered, one colour per
    item), one discriminator per item, and the three loss terms with their weights.

    Args:
        teacher_names, teacher_stages: the teacher's tap names and stages (``tap_names()``,
            ``tap_stages``).
        student_names, student_stages: the same for the student.
        mapping: the teacher tap matched to each student tap (``align_taps``).
        pairs: the flow items as pairs of student taps (``FlowPlan.pairs``).
        lambda_flow, lambda_adv: the weights of the flow and adversarial terms.
        gan_loss: the GAN loss named in the legend.
        labels: names of the two networks.
        flow_grad_ratio: where set, ``lambda_flow`` is measured at the start of a run by the
            gradient rule (``TrainConfig.flow_grad_ratio``): the legend names the ratio instead of
            a weight (``lambda_flow`` is then not shown).
        flow_norm: ``"teacher"`` writes the flow term as each item's error relative to the
            teacher's matrix, as ``TrainConfig.flow_norm`` does; ``"none"`` as the plain distance.
        d_input: what the discriminators read, as ``TrainConfig.d_input``: ``"raw"`` flows,
            ``"unit"`` each matrix over its own norm, ``"scaled"`` each item over the teacher's
            RMS norm; the last two are written with a tilde in the objective, as chapter 5 writes them.
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    from .train import D_INPUTS

    nt, ns = len(teacher_names), len(student_names)
    if len(teacher_stages) != nt or len(student_stages) != ns or len(mapping) != ns:
        raise ValueError("names, stages and mapping must have one entry per tap")
    if d_input not in D_INPUTS:
        raise ValueError(f"d_input must be one of {D_INPUTS}, not {d_input!r}")
    pairs = [(int(a), int(b)) for a, b in pairs]
    if any(not 0 <= a < b < ns for a, b in pairs):
        raise ValueError(f"pairs must be (a, b) with 0 <= a < b < {ns}")
    width = 9.0  # the networks are drawn over x in [0, width]
    xt = np.linspace(0.0, width, nt)
    xs = xt[list(mapping)]
    y_t, y_s = 3.2, 1.3
    k_items = len(pairs)
    fig, ax = plt.subplots(figsize=(10.8, 6.0), layout="constrained")
    spans = sorted({xt[mapping[b]] - xt[mapping[a]] for a, b in pairs})

    def arc_height(span: float) -> float:
        return 0.55 + 0.9 * spans.index(span) / max(len(spans) - 1, 1)

    # the two networks: a line through their taps, dots coloured by stage
    for y, x, stages, name, used in ((y_t, xt, teacher_stages, labels[0], set(mapping)),
                                     (y_s, xs, student_stages, labels[1], set(range(ns)))):  # fmt: skip
        ax.plot([x[0], x[-1]], [y, y], color="#BBBBBB", lw=2.5, zorder=1)
        for i, (xi, st) in enumerate(zip(x, stages)):
            color = STAGE_COLORS[st % len(STAGE_COLORS)]
            filled = i in used
            ax.scatter([xi], [y], s=120 if filled else 45, zorder=3, linewidths=1.5,
                       c=[color] if filled else ["white"], edgecolors=[color])  # fmt: skip
        ax.text(-0.35, y, name, ha="right", va="center", fontsize=12, fontweight="bold")
    ax.text(-0.35, y_t - 0.3, "frozen", ha="right", va="center", fontsize=9, color="#555555")
    ax.text(-0.35, y_s - 0.3, "trained", ha="right", va="center", fontsize=9, color="#555555")
    for i, name in enumerate(student_names):
        ax.text(xs[i], y_s - 0.22, name, ha="center", va="top", fontsize=9)
    for i in sorted(set(mapping)):
        ax.text(xt[i], y_t - 0.22, teacher_names[i], ha="center", va="top", fontsize=9, color="#555555")
    # the aligned taps
    for i, j in enumerate(mapping):
        ax.plot([xs[i], xt[j]], [y_s + 0.08, y_t - 0.45], ls="--", lw=0.9, color="#888888", zorder=0)
    # the flow items: arcs above the teacher and below the student, one colour and number each
    for k, (a, b) in enumerate(pairs):
        color = _ITEM_COLORS[k % len(_ITEM_COLORS)]
        ta, tb = mapping[a], mapping[b]
        h = arc_height(xt[tb] - xt[ta])
        ax.add_patch(Arc(((xt[ta] + xt[tb]) / 2, y_t), xt[tb] - xt[ta], 2 * h, theta1=0, theta2=180,
                         color=color, lw=1.8))  # fmt: skip
        ax.add_patch(Arc(((xs[a] + xs[b]) / 2, y_s - 0.55), xs[b] - xs[a], 2 * h, theta1=180, theta2=360,
                         color=color, lw=1.8))  # fmt: skip
        for x_mid, y_mid in (((xt[ta] + xt[tb]) / 2, y_t + h), ((xs[a] + xs[b]) / 2, y_s - 0.55 - h)):
            ax.text(x_mid, y_mid, str(k + 1), ha="center", va="center", fontsize=10, color="white",
                    bbox={"boxstyle": "circle,pad=0.2", "fc": color, "ec": "none"}, zorder=4)  # fmt: skip
    ax.text(width / 2, y_t + 1.75, "teacher flows $G^T_k$: real", ha="center", fontsize=10)
    ax.text(width / 2, y_s - 2.35, "student flows $G^S_k$: fake", ha="center", fontsize=10)
    # one discriminator per item
    x_d = width + 2.8  # the items' labels end left of the discriminators, clear of the networks
    top, bottom = y_t + 1.2, y_s - 1.6
    ys_d = np.linspace(top, bottom, k_items) if k_items > 1 else np.array([(top + bottom) / 2])
    ax.text(x_d + 0.45, top + 0.75, "one discriminator per item", ha="center", fontsize=10)
    # what the discriminators read: the flows themselves, or each over a norm (written with a
    # tilde, as chapter 5 defines it)
    seen = "G" if d_input == "raw" else "\\tilde G"
    reads = {
        "raw": "reads $G^T_k$ (real) or $G^S_k$ (fake)",
        "unit": "reads $\\tilde G_k = G_k / \\Vert G_k \\Vert_F$, teacher's (real) or student's (fake)",
        "scaled": "reads $\\tilde G_k = G_k / s_k$, $s_k$: the teacher's RMS norm of item $k$",
    }[d_input]
    ax.text(x_d + 0.45, top + 0.4, reads, ha="center", fontsize=9, color="#555555")
    dist = "\\Vert G^T_k - G^S_k \\Vert_F^2"
    if flow_norm == "teacher":
        dist = "\\Vert G^T_k - G^S_k \\Vert_F^2 / \\Vert G^T_k \\Vert_F^2"
    ax.text(width / 2, (y_t + y_s) / 2 - 0.15, f"flow term: ${dist}$ for every item and image",
            ha="center", va="center", fontsize=9, bbox={"fc": "white", "ec": "none", "pad": 2})  # fmt: skip
    for k, ((a, b), yd) in enumerate(zip(pairs, ys_d)):
        color = _ITEM_COLORS[k % len(_ITEM_COLORS)]
        ax.text(x_d - 0.35, yd, f"{k + 1}: {student_names[a]}→{student_names[b]}", ha="right", va="center",
                fontsize=9, color=color)  # fmt: skip
        ax.add_patch(FancyBboxPatch((x_d - 0.2, yd - 0.17), 0.8, 0.34, boxstyle="round,pad=0.02", fc=color,
                                    ec="none", alpha=0.9))  # fmt: skip
        ax.text(x_d + 0.2, yd, f"$D_{{{k + 1}}}$", ha="center", va="center", fontsize=9, color="white")
        ax.add_patch(FancyArrowPatch((x_d + 0.62, yd), (x_d + 1.1, yd), arrowstyle="->", mutation_scale=8,
                                     color="#555555"))  # fmt: skip
        ax.text(x_d + 1.15, yd, "logit", va="center", fontsize=9, color="#555555")
    # the objective, with the weights in use
    ax.text(xs[-1] + 0.35, y_s, r"$\rightarrow\ \hat y_S$", va="center", fontsize=11)
    eq = (r"$\mathcal{L}_S = \mathrm{CE}(y, \hat y_S)"
          r" + \lambda_F \sum_k " + dist +
          r" + \lambda_A \sum_k \mathcal{L}_G(D_k(" + seen + r"^S_k))$")  # fmt: skip
    ax.text(width / 2 + 1.0, y_s - 3.05, eq, ha="center", fontsize=15)
    lam_f = f"$\\lambda_F$ = {lambda_flow:g}"
    if flow_grad_ratio is not None:
        lam_f = f"$\\lambda_F$ by gradient ratio {flow_grad_ratio:g} (measured at the start)"
    ax.text(width / 2 + 1.0, y_s - 3.45,
            f"cross-entropy: labelled images only;  the other two terms: every image, no labels\n"
            f"{lam_f},  $\\lambda_A$ = {lambda_adv:g},  GAN loss {gan_loss}",
            ha="center", va="top", fontsize=10, color="#555555")  # fmt: skip
    ax.set_xlim(-2.0, x_d + 1.9)
    ax.set_ylim(y_s - 4.2, y_t + 2.1)
    ax.axis("off")
    stage_legend(fig, teacher_stages)
    return fig


def _seed_mean(values: Sequence[Sequence[float]]) -> np.ndarray:
    """The mean over seeds (rows) of equally long rows of values."""
    rows = [list(map(float, v)) for v in values]
    if not rows or len({len(r) for r in rows}) != 1:
        raise ValueError("every seed needs the same number of values")
    return np.mean(np.array(rows), axis=0)


def plot_flow_distance_by_item(
    distances: Mapping[str, Sequence[Sequence[float]]],
    item_names: Sequence[str],
    reference: str | None = "scratch",
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """Each flow item's distance to the teacher at one epoch, per method, against a reference.

    Args:
        distances: ``{method: one row per seed of the items' relative distances}``, e.g. the
            ``flow_dist`` of each seed's last log line; NaN for an item a method does not have (fsp's
            sparse pairs among the dense ones), which is then not drawn.
        item_names: the name of each item (the row length).
        reference: the method the others are measured against (``scratch``: what cross-entropy
            alone closes); drawn dashed, and, when present, a right panel shows every other
            method's mean over the reference's mean, item by item (below 1: closer to the teacher
            than the reference).
        title: figure title.
        colors: ``{method: colour}`` (default: :data:`METHOD_COLORS`, else matplotlib's cycle).

    Left: the mean over seeds (line) and every seed (small dots). The line of method ``m`` is
    labelled ``m``; its y data is that mean.
    """
    groups = {k: [list(map(float, v)) for v in vs] for k, vs in distances.items() if len(vs)}
    if not groups:
        raise ValueError("distances needs at least one method with a row")
    for name, rows in groups.items():
        if any(len(r) != len(item_names) for r in rows):
            raise ValueError(f"{name}: every row needs {len(item_names)} items")
    ref = reference if reference in groups else None
    fig, axes = plt.subplots(1, 2 if ref else 1, figsize=(11.5 if ref else 6.5, 4.2), layout="constrained",
                             squeeze=False)  # fmt: skip
    ax = axes[0, 0]
    x = np.arange(len(item_names))
    palette = _series_colors(list(groups), colors)
    means = {k: _seed_mean(rows) for k, rows in groups.items()}
    for name, rows in groups.items():
        style = {"color": "black", "ls": "--", "lw": 2.2} if name == ref else {"color": palette[name], "lw": 1.6}
        ax.plot(x, means[name], marker="o", ms=5, label=f"{name} (n={len(rows)})", **style)
        for r in rows:
            ax.plot(x, r, "o", ms=3, alpha=0.5, color=style["color"], label="_seed")
    ax.set_xticks(x, list(item_names))
    _slant_xticks(ax, 30)
    ax.set_ylabel("relative flow distance to the teacher")
    ax.set_title("mean over seeds (line), seeds (dots)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    if ref:
        ax2 = axes[0, 1]
        ax2.axhline(1.0, color="black", ls="--", lw=1.5, label=ref)
        for name in groups:
            if name != ref:
                ax2.plot(x, means[name] / means[ref], marker="o", ms=5, color=palette[name], label=name)
        ax2.set_xticks(x, list(item_names))
        _slant_xticks(ax2, 30)
        ax2.set_ylabel(f"distance / {ref}'s distance")
        ax2.set_title(f"against {ref}: below 1 is closer to the teacher")
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def _epoch_means(logs: Sequence[Sequence[Mapping[str, Any]]], value: Any) -> tuple[list[int], list[float]]:
    """The epochs that every log has a value for, and the mean over logs of ``value(record)`` there
    (``value`` returns None where a record has nothing)."""
    per_log = [{rec["epoch"]: v for rec in log if (v := value(rec)) is not None} for log in logs]
    epochs = sorted(set.intersection(*(set(d) for d in per_log))) if per_log else []
    return epochs, [float(np.mean([d[e] for d in per_log])) for e in epochs]


def _finish_epoch_panels(fig: Figure, axes: Sequence[Axes], xlabel: str, title: str | None) -> Figure:
    """The common finish of the figures over training: whole epochs on the x axes, a grid, a legend
    on every panel, and the title."""
    for a in axes:
        a.set_xlabel(xlabel)
        a.xaxis.get_major_locator().set_params(integer=True)
        a.grid(alpha=0.3)
        a.legend(fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def plot_discriminator_over_time(
    logs: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]],
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """The discriminators over training: their accuracy on real and fake flows, and their margin.

    Args:
        logs: ``{method: one log per seed}``, a log being the records of ``log.jsonl`` (one dict
            per epoch with ``epoch``, ``d_acc_real``, ``d_acc_fake``, ``d_logit_real``,
            ``d_logit_fake``). Epochs without these fields (a flow-only stage) are skipped; the
            means are over the seeds, at the epochs that every seed has.
        title: figure title.
        colors: ``{method: colour}`` (default: :data:`METHOD_COLORS`, else matplotlib's cycle).

    Left: accuracy on the teacher's flows (real, solid, labelled ``<method> (n=<seeds>): real``)
    and on the student's (fake, dashed, ``<method> (n=<seeds>): fake``), in %; 50 % is a critic
    that cannot tell them apart. Right: the margin, mean logit on real minus mean logit on fake
    (labelled ``<method> (n=<seeds>)``): how sure the critics are, which accuracy does not say.
    """
    groups = {k: list(v) for k, v in logs.items() if len(v)}
    if not groups:
        raise ValueError("logs needs at least one method with a log")
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11.5, 4.0), layout="constrained")
    palette = _series_colors(list(groups), colors)
    for name, runs in groups.items():
        color = palette[name]
        for key, ls in (("real", "-"), ("fake", "--")):
            e, v = _epoch_means(runs, lambda r, k=f"d_acc_{key}": r.get(k))
            ax.plot(e, v, ls=ls, color=color, label=f"{name} (n={len(runs)}): {key}")
        e, v = _epoch_means(runs, lambda r: r["d_logit_real"] - r["d_logit_fake"] if "d_logit_real" in r else None)
        ax2.plot(e, v, color=color, marker="o", ms=3, label=f"{name} (n={len(runs)})")
    ax.axhline(50, color="grey", ls=":", lw=1)
    ax.set_ylabel("discriminator accuracy (%)")
    ax.set_title("on real (solid) and fake (dashed) flows, mean over seeds")
    ax2.axhline(0, color="grey", ls=":", lw=1)
    ax2.set_ylabel("mean logit, real − fake")
    ax2.set_title("margin: how sure the critics are")
    return _finish_epoch_panels(fig, (ax, ax2), "epoch", title)


def _by_ce_epoch(log: Sequence[Mapping[str, Any]], key: str) -> dict[int, Any]:
    """``{epoch of cross-entropy: record[key]}`` of one log: the epochs of a flow-only first stage
    (records with ``stage`` 1) come first, at epochs 0, -1, ..., so that every method's epoch 1 is
    its first epoch on the labels."""
    flow_only = sum(rec.get("stage") == 1 for rec in log)
    return {rec["epoch"] - flow_only: rec[key] for rec in log if key in rec}


def flows_over_time(
    logs: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]], reference: str = "scratch"
) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    """What :func:`plot_flow_over_time` draws, as numbers.

    Args:
        logs: ``{method: one log per seed}``, a log being the records of ``log.jsonl`` (one dict per
            epoch with ``epoch``; ``stage`` 1 for a flow-only first stage; ``flow_dist``, the
            relative distance of each flow item, on the same items in the same order for every
            method, NaN for an item a method has not; ``loss_flow``, the weighted flow term).
        reference: the method the distances are measured against (``scratch``: what cross-entropy
            alone closes). It must be in ``logs``.

    Returns:
        ``{method: {"distance": (epochs, values), "flow": (epochs, values)}}``, epochs counted in
        epochs of cross-entropy (a flow-only stage at 0, -1, ...). ``distance``: at every epoch
        the reference also has, each item's distance (mean over seeds) over the reference's at
        the same epoch, averaged over the method's items; below 1 the method's flows are closer
        to the teacher's than training on the labels alone leaves them; not given for the
        reference itself. ``flow``: ``loss_flow`` (``lambda_F`` times the flow loss), mean over
        seeds, at the epochs where it is positive; not given for a method that logs none.
    """
    groups = {k: list(v) for k, v in logs.items() if len(v)}
    if reference not in groups:
        raise ValueError(f"logs needs the reference {reference!r}: the distances are measured against it")
    sizes = {
        name: {len(rec["flow_dist"]) for log in runs for rec in log if "flow_dist" in rec}
        for name, runs in groups.items()
    }
    if len(set().union(*sizes.values())) > 1:
        raise ValueError(
            f"flow_dist has different numbers of items by method ({ {k: sorted(v) for k, v in sizes.items() if v} }): "
            "place every run's distances on the same items, NaN where a method has none"
        )

    def seed_means(runs: Sequence[Sequence[Mapping[str, Any]]], key: str) -> dict[int, np.ndarray]:
        per_seed = [_by_ce_epoch(log, key) for log in runs]
        epochs = sorted(set.intersection(*(set(d) for d in per_seed)))
        return {e: np.mean([np.asarray(d[e], dtype=float) for d in per_seed], axis=0) for e in epochs}

    ref = seed_means(groups[reference], "flow_dist")
    out: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    for name, runs in groups.items():
        series: dict[str, tuple[list[int], list[float]]] = {}
        if name != reference:
            dist = seed_means(runs, "flow_dist")
            epochs = [e for e in dist if e in ref]
            if epochs:
                series["distance"] = (epochs, [float(np.nanmean(dist[e] / ref[e])) for e in epochs])
        flow = {e: float(v) for e, v in seed_means(runs, "loss_flow").items() if v > 0}
        if flow:
            series["flow"] = (list(flow), list(flow.values()))
        out[name] = series
    return out


def plot_flow_over_time(
    logs: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]],
    reference: str = "scratch",
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """The student's flows over training: their distance to the teacher's against a reference, and
    the weighted flow term of the objective (the numbers are :func:`flows_over_time`'s).

    Args:
        logs: ``{method: one log per seed}``, as :func:`flows_over_time` takes them.
        reference: the method the distances are measured against, drawn as the dashed line at 1.
            It must be in ``logs``.
        title: figure title.
        colors: ``{method: colour}`` (default: :data:`METHOD_COLORS`, else matplotlib's cycle).

    The x axis counts epochs of cross-entropy: a flow-only stage is drawn at epochs 0, -1, ...
    Left (lines labelled ``<method> (n=<seeds>)``): each method's distance over the reference's;
    below 1 the method's flows are closer to the teacher's than training on the labels alone
    leaves them. Right (log scale, same labels): the flow term as it enters the objective, for
    the methods that log one.
    """
    series = flows_over_time(logs, reference)
    seeds = {name: f"{name} (n={len(logs[name])})" for name in series}
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11.5, 4.0), layout="constrained")
    palette = _series_colors(list(series), colors)
    ax.axhline(1.0, color="black", ls="--", lw=1.5, label=seeds[reference])
    for name, s in series.items():
        color = palette[name]
        if "distance" in s:
            ax.plot(*s["distance"], color=color, label=seeds[name])
        if "flow" in s:
            ax2.plot(*s["flow"], color=color, marker="o", ms=2.5, label=seeds[name])
    ax.set_ylabel(f"flow distance / {reference}'s, mean over items")
    ax.set_title(f"against {reference} at the same epoch: below 1 is closer to the teacher")
    ax2.set_yscale("log")
    ax2.set_ylabel(r"weighted flow term $\lambda_F\,\mathcal{L}_\mathrm{flow}$")
    ax2.set_title("the flow term as it enters the objective, mean over seeds")
    return _finish_epoch_panels(fig, (ax, ax2), "epoch of cross-entropy (a flow-only stage at 0 and below)", title)
