"""Flow of solution procedure (FSP) matrices and dense overlapping flows.

The FSP matrix of Yim et al. (2017) between two feature maps ``F1`` (``m`` channels) and ``F2``
(``n`` channels) of equal spatial size ``h x w`` is the ``m x n`` matrix

    G[i, j] = sum_{s,t} F1[s, t, i] * F2[s, t, j] / (h * w).

A *flow item* is one such matrix for one pair of tap points. This module

* computes single FSP matrices (:func:`fsp_matrix`),
* aligns the taps of a deep teacher with those of a shallow student (:func:`align_taps`),
* names the pair sets ``sparse``, ``chain`` and ``dense`` (:func:`make_pairs`), and
* computes many items at once (:func:`dense_flows`): every item whose smaller map has side ``r``
  is a block of one Gram-like product of all taps pooled to ``r``, so all items come from one
  batched matrix product per resolution instead of one per pair (:func:`flows_loop`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .models import CifarResNet

__all__ = [
    "POOLS",
    "PAIR_SETS",
    "fsp_matrix",
    "pool_to",
    "align_taps",
    "make_pairs",
    "flows_loop",
    "dense_flows",
    "FlowPlan",
    "make_flow_plan",
]

POOLS = ("max", "avg")
PAIR_SETS = ("sparse", "chain", "dense")

Pair = tuple[int, int]


def pool_to(f: Tensor, size: int, pool: str = "max") -> Tensor:
    """Pool a ``(B, C, H, W)`` map down to ``size x size`` (a no-op when it is that size)."""
    if f.shape[-1] == size and f.shape[-2] == size:
        return f
    if f.shape[-1] < size or f.shape[-2] < size:
        raise ValueError(f"cannot pool a map of size {tuple(f.shape[-2:])} up to {size}x{size}")
    if pool == "max":
        return F.adaptive_max_pool2d(f, size)
    if pool == "avg":
        return F.adaptive_avg_pool2d(f, size)
    raise ValueError(f"unknown pool {pool!r}; choose one of {POOLS}")


def fsp_matrix(f1: Tensor, f2: Tensor, pool: str = "max") -> Tensor:
    """Batched FSP matrix of two feature maps.

    Args:
        f1: ``(B, m, h1, w1)`` features.
        f2: ``(B, n, h2, w2)`` features.
        pool: how the larger map is brought down to the smaller one, ``"max"`` (Yim et al.)
            or ``"avg"``.

    Returns:
        ``(B, m, n)`` with ``G[b, i, j] = mean over positions of f1[b, i] * f2[b, j]``.
    """
    if f1.dim() != 4 or f2.dim() != 4:
        raise ValueError(
            f"fsp_matrix expects 4-d (B, C, H, W) maps, got shapes {tuple(f1.shape)} and {tuple(f2.shape)}"
        )
    if f1.shape[0] != f2.shape[0]:
        raise ValueError(f"batch sizes differ: {tuple(f1.shape)} and {tuple(f2.shape)}")
    size = min(f1.shape[-1], f2.shape[-1])
    f1, f2 = pool_to(f1, size, pool), pool_to(f2, size, pool)
    b, m = f1.shape[:2]
    n = f2.shape[1]
    a = f1.reshape(b, m, -1).float()
    c = f2.reshape(b, n, -1).float()
    return torch.bmm(a, c.transpose(1, 2)) / a.shape[-1]


def align_taps(teacher_blocks: int, student_blocks: int) -> list[int]:
    """Teacher tap index matched to each student tap, by relative depth within a stage.

    Student block ``j`` (1-based) of ``n_s`` in a stage is matched to teacher block
    ``ceil(j * n_t / n_s)`` of the same stage; stems match stems. Taps are numbered as in
    :class:`~dfkd_lib.models.CifarResNet`: 0 is the stem, then the blocks stage by stage.

    Args:
        teacher_blocks, student_blocks: residual blocks **per stage** (``(depth - 2) / 6`` for a
            CIFAR ResNet: 4 for ResNet-26, 1 for ResNet-8), not depths.

    Returns:
        ``mapping[i]``: the teacher tap matched to student tap ``i`` (``1 + 3 * student_blocks`` taps).

    >>> align_taps(4, 1)  # ResNet-26 -> ResNet-8
    [0, 4, 8, 12]
    """
    n_t, n_s = teacher_blocks, student_blocks
    if n_s < 1 or n_t < 1:
        raise ValueError(f"blocks per stage must be positive, got teacher {n_t}, student {n_s}")
    if n_s > n_t:
        raise ValueError(f"the student ({n_s} blocks per stage) must not be deeper than the teacher ({n_t})")
    mapping = [0]
    for stage in range(3):
        for j in range(1, n_s + 1):
            mapping.append(1 + stage * n_t + math.ceil(j * n_t / n_s) - 1)
    return mapping


def make_pairs(kind: str | Sequence[Sequence[int]], tap_stages: Sequence[int]) -> list[Pair]:
    """The flow items of a pair set, as pairs ``(a, b)`` of tap indices with ``a < b``.

    Args:
        kind: ``"sparse"`` (Yim et al.: one item per stage, from the tap that enters the stage
            to the stage's last block), ``"chain"`` (consecutive taps), ``"dense"`` (every pair
            ``a < b``, across stages too), or a custom list of pairs.
        tap_stages: stage of each tap (0 for the stem), e.g. ``model.tap_stages``.
    """
    num = len(tap_stages)
    if isinstance(kind, str):
        if kind == "dense":
            return [(a, b) for a in range(num) for b in range(a + 1, num)]
        if kind == "chain":
            return [(a, a + 1) for a in range(num - 1)]
        if kind == "sparse":
            ends = [max(i for i, s in enumerate(tap_stages) if s == stage) for stage in sorted(set(tap_stages))]
            return list(zip(ends[:-1], ends[1:]))
        raise ValueError(f"unknown pair set {kind!r}; choose one of {PAIR_SETS} or give a list of (a, b) pairs")
    pairs = []
    for p in kind:
        if len(p) != 2:
            raise ValueError(f"a pair must have two tap indices, got {p!r}")
        a, b = int(p[0]), int(p[1])
        if not (0 <= a < b < num):
            raise ValueError(f"pair {(a, b)} is invalid: need 0 <= a < b < {num} (number of student taps)")
        pairs.append((a, b))
    if not pairs:
        raise ValueError("the custom pair list is empty")
    if len(set(pairs)) != len(pairs):
        raise ValueError(f"the custom pair list has duplicates: {pairs}")
    return pairs


def flows_loop(taps: Sequence[Tensor], pairs: Sequence[Pair], pool: str = "max") -> list[Tensor]:
    """Flow items one pair at a time: the plain reference for :func:`dense_flows`."""
    return [fsp_matrix(taps[a], taps[b], pool) for a, b in pairs]


def dense_flows(taps: Sequence[Tensor], pairs: Sequence[Pair], pool: str = "max") -> list[Tensor]:
    """All flow items with one batched matrix product per resolution.

    For every resolution ``r`` that is the smaller side of some pair, the taps at exactly ``r``
    (the *columns*) and all taps the pairs at ``r`` need, pooled to ``r`` (the *rows*), are
    concatenated along channels; ``rows @ cols^T / r^2`` holds every item at that resolution as
    a block. Each tap is pooled once per resolution, and from its nearest already pooled
    version (max of maxima and mean of means over nested windows are exact), so that nothing
    is pooled twice. Equal to :func:`flows_loop` up to rounding.
    """
    sizes = [t.shape[-1] for t in taps]
    by_res: dict[int, list[int]] = {}
    for k, (a, b) in enumerate(pairs):
        by_res.setdefault(min(sizes[a], sizes[b]), []).append(k)
    pooled: dict[int, Tensor] = {}  # tap -> its smallest pooled version so far

    def at(i: int, r: int) -> Tensor:
        src = pooled.get(i, taps[i])
        if src.shape[-1] % r:
            src = taps[i]
        out = pool_to(src, r, pool)
        if r < sizes[i]:
            pooled[i] = out
        return out

    # Channels-last maps are (B, H, W, C) in memory: read them as positions x channels (a view)
    # and concatenate along channels there, instead of copying them to channels x positions.
    cl = all(t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous() for t in taps)

    def mat(t: Tensor) -> Tensor:
        return t.permute(0, 2, 3, 1).flatten(1, 2) if cl else t.flatten(2)

    def cat(ts: list[Tensor]) -> Tensor:
        return ts[0] if len(ts) == 1 else torch.cat(ts, 2 if cl else 1)

    out: list[Tensor | None] = [None] * len(pairs)
    for r in sorted(by_res, reverse=True):  # large to small, so pooling can reuse pooled maps
        ks = by_res[r]
        # the tap of each pair that sits at resolution r is a column; the other one is a row
        roles = []
        for k in ks:
            a, b = pairs[k]
            roles.append((a, b, False) if sizes[b] == r else (b, a, True))  # (row, col, transposed)
        row_taps = sorted({row for row, _, _ in roles})
        col_taps = sorted({col for _, col, _ in roles})
        rows = cat([mat(at(i, r)) for i in row_taps]).float()
        cols = cat([mat(taps[i]) for i in col_taps]).float()
        if cl:  # (B, P, C_rows) and (B, P, C_cols)
            gram = torch.bmm(rows.transpose(1, 2), cols) / (r * r)
        else:  # (B, C_rows, P) and (B, C_cols, P)
            gram = torch.bmm(rows, cols.transpose(1, 2)) / (r * r)
        # Cut the blocks with one split per axis, not one slice per item: the backward of a
        # slice allocates and fills a zero gradient of the whole Gram matrix for every item,
        # which made the backward pass slower than the per-pair loop for many items.
        row_of = {t: n for n, t in enumerate(row_taps)}
        col_of = {t: n for n, t in enumerate(col_taps)}
        col_sizes = [taps[i].shape[1] for i in col_taps]
        blocks = [band.split(col_sizes, 2) for band in gram.split([taps[i].shape[1] for i in row_taps], 1)]
        for k, (row, col, transposed) in zip(ks, roles):
            blk = blocks[row_of[row]][col_of[col]]
            out[k] = blk.transpose(1, 2) if transposed else blk
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class FlowPlan:
    """Which flow items a teacher-student pair exchanges.

    Attributes:
        pairs: items as pairs of *student* tap indices.
        teacher_taps: teacher tap index aligned with each student tap.
        shapes: ``(m, n)`` of each item's matrix.
        pool: pooling used when a pair's maps differ in size.
        names: readable name of each item, e.g. ``stem->s1b1``.
    """

    pairs: tuple[Pair, ...]
    teacher_taps: tuple[int, ...]
    shapes: tuple[tuple[int, int], ...]
    pool: str = "max"
    names: tuple[str, ...] = ()

    @property
    def teacher_pairs(self) -> list[Pair]:
        """The items as pairs of teacher tap indices."""
        return [(self.teacher_taps[a], self.teacher_taps[b]) for a, b in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def student_flows(self, taps: Sequence[Tensor], batched: bool = True) -> list[Tensor]:
        """Flow items of the student from all of its taps."""
        fn = dense_flows if batched else flows_loop
        return fn(taps, self.pairs, self.pool)

    def teacher_flows(self, taps: Sequence[Tensor], batched: bool = True) -> list[Tensor]:
        """Flow items of the teacher from all of its taps (only the aligned ones are used)."""
        used = [taps[i] for i in self.teacher_taps]
        fn = dense_flows if batched else flows_loop
        return fn(used, self.pairs, self.pool)


def make_flow_plan(
    teacher: CifarResNet,
    student: CifarResNet,
    pairs: str | Sequence[Sequence[int]] = "dense",
    pool: str = "max",
) -> FlowPlan:
    """Align the teacher's taps to the student's and list the flow items of a pair set.

    Raises:
        TypeError: when the teacher or the student is not a :class:`~dfkd_lib.models.CifarResNet`.
        ValueError: for an unknown pair set or pooling, or when the teacher and student differ
            in channels at a matched tap (the message names the pair and both shapes).
    """
    for role, net in (("teacher", teacher), ("student", student)):
        if not isinstance(net, CifarResNet):
            raise TypeError(
                f"the {role} must be a CifarResNet (dfkd_lib.cifar_resnet(depth)), not {type(net).__name__}"
            )
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r}; choose one of {POOLS}")
    t_map = align_taps(teacher.blocks_per_stage, student.blocks_per_stage)
    plist = make_pairs(pairs, student.tap_stages)
    t_ch, s_ch = teacher.tap_channels, student.tap_channels
    s_names, t_names = student.tap_names(), teacher.tap_names()
    shapes, names = [], []
    for a, b in plist:
        ta, tb = t_map[a], t_map[b]
        t_shape, s_shape = (t_ch[ta], t_ch[tb]), (s_ch[a], s_ch[b])
        if t_shape != s_shape:
            raise ValueError(
                f"channel mismatch for flow item (student taps {a}->{b} = {s_names[a]}->{s_names[b]}, "
                f"teacher taps {ta}->{tb} = {t_names[ta]}->{t_names[tb]}): teacher matrix {t_shape[0]}x{t_shape[1]}, "
                f"student matrix {s_shape[0]}x{s_shape[1]}; flow transfer needs equal channels at matched taps"
            )
        shapes.append(s_shape)
        names.append(f"{s_names[a]}->{s_names[b]}")
    return FlowPlan(tuple(plist), tuple(t_map), tuple(shapes), pool, tuple(names))
