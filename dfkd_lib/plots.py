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
from matplotlib.patches import Arc

__all__ = [
    "STAGE_COLORS",
    "set_style",
    "plot_flow_matrix",
    "plot_flow_pair",
    "plot_flow_grid",
    "plot_pair_diagram",
    "stage_legend",
    "plot_history",
    "show_images",
    "plot_tap_alignment",
    "plot_gram_blocks",
    "plot_grouped_bars",
]

#: Colour of each tap stage: stem, stage 1, stage 2, stage 3 (colour-blind safe, Okabe-Ito).
STAGE_COLORS = ("#555555", "#0072B2", "#E69F00", "#009E73")

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
    if hasattr(g, "detach"):
        g = g.detach().float().cpu().numpy()
    g = np.asarray(g, dtype=np.float64)
    if g.ndim == 3:
        g = g.mean(0)
    if g.ndim != 2:
        raise ValueError(f"a flow matrix must be (m, n) or (B, m, n), got shape {g.shape}")
    return g


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
    difference uses a diverging map centred on 0. The squared Frobenius distance
    ``||G_T - G_S||^2`` (the FSP loss of this item, batch-averaged matrices) is in the third title.
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
    title3 = f"{names[0]} − {names[1]}\n" + rf"$\|\Delta\|^2$ = {float((diff**2).sum()):.3g}"
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


def plot_history(
    history: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Mapping[str, Any]]],
    keys: Sequence[str] | None = None,
    title: str | None = None,
    panel_size: tuple[float, float] = (3.9, 3.0),
) -> Figure:
    """Training curves from :func:`dfkd_lib.train` histories (one record per epoch).

    One panel per kind of quantity found: losses, accuracies, discriminator accuracy.

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
    for ax, (_, ylabel, gkeys) in zip(axes.flat, groups):
        for r, (label, h) in enumerate(runs.items()):
            for i, k in enumerate(gkeys):
                pts = [(rec["epoch"], rec[k]) for rec in h if k in rec and rec[k] is not None]
                if not pts:
                    continue
                x, y = zip(*pts)
                if label is None:
                    color, ls, name = run_colors[i % len(run_colors)], "-", _NICE.get(k, k)
                else:
                    color, ls = run_colors[r % len(run_colors)], _LINESTYLES[i % len(_LINESTYLES)]
                    name = f"{label}: {_NICE.get(k, k)}" if len(gkeys) > 1 else str(label)
                ax.plot(x, y, ls=ls, color=color, marker="o", ms=4, lw=1.8, label=name)
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
        log: logarithmic y axis.
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
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    x = np.arange(m)
    for i, (name, vs) in enumerate(series.items()):
        bars = ax.bar(x - 0.4 + width * (i + 0.5), vs, width, label=name, color=colors[i % len(colors)])
        if fmt:
            ax.bar_label(bars, [fmt.format(v) for v in vs], fontsize=8, padding=2)
    rotate = m > 4 if rotate is None else rotate
    ax.set_xticks(x, categories, rotation=30 if rotate else 0, ha="right" if rotate else "center",
                  rotation_mode="anchor")  # fmt: skip
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    if n > 1:
        ax.legend(frameon=False, fontsize=9)
    if title:
        ax.set_title(title)
    return fig
