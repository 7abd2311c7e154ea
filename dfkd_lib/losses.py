"""Losses: cross-entropy, Hinton KD, flow (FSP) transfer, attention transfer, adversarial.

Conventions (documented because libraries differ):

* :func:`flow_loss` with ``reduction="sum"`` (the default, Yim et al.) is, for each flow item,
  the squared Frobenius distance ``||G_T - G_S||^2`` summed over the matrix entries and averaged
  over the batch, then summed over items with equal weights. ``reduction="mean"`` averages over
  the entries instead of summing them (RepDistiller's scale).
* Adversarial losses take lists of discriminator logits, one tensor per flow item, and sum the
  per-item losses (each averaged over the batch). The teacher's flows are *real*, the student's
  *fake*.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from .models import CifarResNet

__all__ = [
    "GAN_LOSSES",
    "cross_entropy",
    "kd_loss",
    "FLOW_NORMS",
    "REDUCTIONS",
    "flow_loss",
    "flow_distances",
    "relative_flow_errors",
    "teacher_flow_norms",
    "r1_penalty",
    "attention_map",
    "at_loss",
    "discriminator_loss",
    "generator_loss",
    "discriminator_accuracy",
    "initial_flow_loss",
]

GAN_LOSSES = ("bce", "lsgan", "hinge")
FLOW_NORMS = ("none", "teacher", "item")
REDUCTIONS = ("sum", "mean")  # of each flow matrix's squared differences: over its entries, summed or averaged


def cross_entropy(logits: Tensor, labels: Tensor, ignore_index: int = -1) -> Tensor:
    """Mean cross-entropy over the labelled examples; labels equal to ``ignore_index`` are
    unlabelled. Returns 0 (with a gradient path) when a batch has no labelled example."""
    mask = labels != ignore_index
    if not bool(mask.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[mask], labels[mask])


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 4.0) -> Tensor:
    """Hinton et al.'s distillation loss ``T^2 * KL(softmax(t/T) || softmax(s/T))``, batch mean."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} but teacher logits {tuple(teacher_logits.shape)}: "
            "the two networks must see the same batch and have the same classes"
        )
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits / t, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * t * t


def flow_loss(
    teacher_flows: Sequence[Tensor],
    student_flows: Sequence[Tensor],
    reduction: str = "sum",
    norm: str = "none",
    weights: Sequence[float] | Tensor | None = None,
) -> Tensor:
    """Euclidean flow loss: each item's distance per image, averaged over the batch, summed over items.

    Args:
        teacher_flows, student_flows: lists of ``(B, m, n)`` matrices, one per flow item, with
            equal shapes item by item; the teacher's get no gradient.
        reduction: ``"sum"`` (Yim et al.) or ``"mean"`` over each matrix's entries (see the module
            docstring).
        norm: ``"none"``, the squared Frobenius distance ``||G_T - G_S||^2``; ``"teacher"``, that
            distance over the teacher's ``||G_T||^2`` image by image (0 for a perfect copy, 1 for
            a zero matrix; ``reduction`` does not apply); ``"item"``, the distance times
            ``weights[k]`` for item ``k``.
        weights: one weight per item, used with ``norm="item"`` only (the training engine passes
            ``1 / scale**2``, each teacher item's RMS norm from the first batches).

    Raises:
        ValueError: if the lists differ in length, an item's matrices differ in shape, or
            ``norm="item"`` comes without one weight per item.
    """
    _check_items(teacher_flows=teacher_flows, student_flows=student_flows)
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; choose 'sum' or 'mean'")
    if norm not in FLOW_NORMS:
        raise ValueError(f"unknown flow norm {norm!r}; choose one of {FLOW_NORMS}")
    if norm == "item" and (weights is None or len(weights) != len(teacher_flows)):
        raise ValueError("norm='item' needs one weight per flow item")
    total = student_flows[0].new_zeros(())
    for k, (gt, gs) in enumerate(zip(teacher_flows, student_flows)):
        if gt.shape != gs.shape:
            raise ValueError(f"flow item {k}: teacher matrix {tuple(gt.shape)} but student matrix {tuple(gs.shape)}")
        if gs.dim() != 3:
            raise ValueError(f"flow item {k}: expected a batch of matrices (batch, m, n), got shape {tuple(gs.shape)}")
        gt = gt.detach().float()
        sq = (gt - gs.float()).pow(2).flatten(1)
        per_example = sq.sum(1) if reduction == "sum" else sq.mean(1)
        if norm == "teacher":  # relative squared error: sums on both sides, whatever the reduction
            per_example = sq.sum(1) / gt.pow(2).flatten(1).sum(1).clamp_min(1e-12)
        elif norm == "item":
            per_example = per_example * float(weights[k])
        total = total + per_example.mean()
    return total


@torch.no_grad()
def flow_distances(teacher_flows: Sequence[Tensor], student_flows: Sequence[Tensor]) -> Tensor:
    """Relative distance ``||G_T - G_S|| / ||G_T||`` of each item (Frobenius norms, batch mean):
    0 when the student's flow equals the teacher's, about 1 or more for an unrelated one.
    Returns a ``(K,)`` tensor, one value per item (what the training log calls ``flow_dist``)."""
    out = []
    for gt, gs in zip(teacher_flows, student_flows, strict=True):
        gt, gs = gt.float().flatten(1), gs.float().flatten(1)
        out.append(((gt - gs).norm(dim=1) / gt.norm(dim=1).clamp_min(1e-12)).mean())
    return torch.stack(out)


@torch.no_grad()
def relative_flow_errors(teacher_flows: Sequence[Tensor], student_flows: Sequence[Tensor]) -> Tensor:
    """Each item's term of :func:`flow_loss` with ``norm="teacher"``: ``||G_T - G_S||^2 / ||G_T||^2``
    per image, averaged over the batch. 0 for the teacher's own flow, 1 for an all-zero one.
    Returns a ``(K,)`` tensor whose sum is that loss; each value is the mean of the squares of
    what :func:`flow_distances` averages."""
    return torch.stack(
        [flow_loss([gt], [gs], norm="teacher") for gt, gs in zip(teacher_flows, student_flows, strict=True)]
    )


@torch.no_grad()
def teacher_flow_norms(teacher_flows: Sequence[Tensor]) -> Tensor:
    """Root mean squared Frobenius norm of each teacher item over the batch, ``(K,)``: the scale
    that ``norm="item"`` weights (as ``1 / norms**2``) and the discriminators' scaled inputs use."""
    return torch.stack([g.float().flatten(1).pow(2).sum(1).mean().sqrt() for g in teacher_flows])


def attention_map(f: Tensor) -> Tensor:
    """Zagoruyko & Komodakis' spatial attention: channel mean of ``f^2``, flattened, L2-normalised."""
    return F.normalize(f.float().pow(2).mean(1).flatten(1), dim=1)


def at_loss(teacher_feats: Sequence[Tensor], student_feats: Sequence[Tensor]) -> Tensor:
    """Attention transfer: sum over feature pairs of the mean squared difference of attention
    maps (multiply by ``beta``, conventionally 1000, in the objective)."""
    _check_items("feature map", teacher_feats=teacher_feats, student_feats=student_feats)
    total = student_feats[0].new_zeros((), dtype=torch.float32)
    for k, (ft, fs) in enumerate(zip(teacher_feats, student_feats)):
        if ft.shape[0] != fs.shape[0]:
            raise ValueError(f"pair {k}: teacher maps of {ft.shape[0]} images but student maps of {fs.shape[0]}")
        if ft.shape[-2:] != fs.shape[-2:]:
            raise ValueError(
                f"pair {k}: teacher map {tuple(ft.shape)} and student map {tuple(fs.shape)} differ in size"
            )
        total = total + (attention_map(ft.detach()) - attention_map(fs)).pow(2).mean()
    return total


def _check_items(item: str = "flow item", **lists: Sequence[Tensor]) -> None:
    """The losses over items take one tensor per ``item``: refuse one tensor, or none, by name, and
    lists of different lengths."""
    for name, items in lists.items():
        if isinstance(items, Tensor):
            raise TypeError(f"{name} must be a list with one tensor per {item}, not one tensor (wrap it: [{name}])")
        if len(items) == 0:
            raise ValueError(f"{name} holds no {item}s")
    lengths = {name: len(items) for name, items in lists.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(" but ".join(f"{n} {item}{'s' if n != 1 else ''} in {name}" for name, n in lengths.items()))


def _check_kind(kind: str) -> None:
    if kind not in GAN_LOSSES:
        raise ValueError(f"unknown GAN loss {kind!r}; choose one of {GAN_LOSSES}")


def discriminator_loss(real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor], kind: str = "bce") -> Tensor:
    """Discriminator loss summed over flow items: teacher flows real, student flows fake.

    * ``bce``: ``BCE(D(G_T), 1) + BCE(D(G_S), 0)`` (Goodfellow et al.)
    * ``lsgan``: ``0.5 (D(G_T) - 1)^2 + 0.5 D(G_S)^2`` (Mao et al.)
    * ``hinge``: ``relu(1 - D(G_T)) + relu(1 + D(G_S))`` (Lim & Ye)
    """
    _check_items(real_logits=real_logits, fake_logits=fake_logits)
    _check_kind(kind)
    total = real_logits[0].new_zeros(())
    for real, fake in zip(real_logits, fake_logits, strict=True):
        if kind == "bce":
            loss = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(
                fake, torch.zeros_like(fake)
            )
        elif kind == "lsgan":
            loss = 0.5 * ((real - 1).pow(2).mean() + fake.pow(2).mean())
        else:
            loss = F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        total = total + loss
    return total


def generator_loss(fake_logits: Sequence[Tensor], kind: str = "bce") -> Tensor:
    """Student's adversarial loss summed over flow items: make the discriminators call its flows real.

    * ``bce``: non-saturating ``BCE(D(G_S), 1)``
    * ``lsgan``: ``0.5 (D(G_S) - 1)^2``
    * ``hinge``: ``-D(G_S)``
    """
    _check_items(fake_logits=fake_logits)
    _check_kind(kind)
    total = fake_logits[0].new_zeros(())
    for fake in fake_logits:
        if kind == "bce":
            loss = F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
        elif kind == "lsgan":
            loss = 0.5 * (fake - 1).pow(2).mean()
        else:
            loss = -fake.mean()
        total = total + loss
    return total


def discriminator_accuracy(
    real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor], kind: str = "bce"
) -> tuple[Tensor, Tensor]:
    """Fraction of teacher flows called real and of student flows called fake, over all items
    (0-d tensors, so that a training loop need not synchronise with the GPU to collect them).

    The decision threshold is 0 for ``bce`` and ``hinge`` and 0.5 for ``lsgan`` (targets 0 and 1).
    """
    _check_items(real_logits=real_logits, fake_logits=fake_logits)
    _check_kind(kind)
    thr = 0.5 if kind == "lsgan" else 0.0
    real = torch.cat([r.detach().flatten() for r in real_logits])
    fake = torch.cat([f.detach().flatten() for f in fake_logits])
    return (real > thr).float().mean(), (fake < thr).float().mean()


def r1_penalty(real_logits: Sequence[Tensor], real_inputs: Sequence[Tensor]) -> Tensor:
    """Mescheder et al.'s R1 penalty summed over items: ``mean_b ||d D(x) / d x||^2`` on real inputs.

    The inputs must have ``requires_grad`` set before the discriminators saw them; the penalty
    keeps its graph so that the discriminators' backward pass includes it (weight it by
    ``gamma / 2``).
    """
    _check_items(real_logits=real_logits, real_inputs=real_inputs)
    total = real_logits[0].new_zeros(())
    for logit, x in zip(real_logits, real_inputs, strict=True):
        (grad,) = torch.autograd.grad(logit.sum(), x, create_graph=True)
        total = total + grad.pow(2).flatten(1).sum(1).mean()
    return total


@torch.no_grad()
def initial_flow_loss(
    teacher: CifarResNet,
    student: CifarResNet,
    x: Tensor,
    pairs: str | Sequence[Sequence[int]] = "dense",
    pool: str = "max",
    reduction: str = "sum",
) -> float:
    """The unweighted flow loss between ``teacher`` and ``student`` on the batch ``x``.

    Both networks are measured in evaluation mode (their modes are restored). On an untrained
    student, ``1 / initial_flow_loss(...)`` is a weight ``lambda_flow`` that makes this value 1:
    the first version's rule. The term the first training batches compute is not exactly 1: in
    training mode batch norm uses the batch's statistics, not the untrained running ones (for
    ResNet-26 -> ResNet-8 on a CIFAR-10 batch, 2 to 4 times as large, depending on the seed).
    The sum over items grows with the number of items and their sizes, so a new teacher-student
    pair or pair set needs its own weight; and a term of value one can still have a gradient
    several times the cross-entropy's.
    The second version's rule sets the weight from gradients instead (``TrainConfig.flow_grad_ratio``,
    see :meth:`dfkd_lib.train.Run.flow_weight_by_gradients`).
    """
    from .flow import make_flow_plan
    from .models import eval_mode

    plan = make_flow_plan(teacher, student, pairs, pool)
    with eval_mode(teacher, student):
        _, t_taps = teacher(x, return_taps=True)
        _, s_taps = student(x, return_taps=True)
    g_t = plan.teacher_flows([t.float() for t in t_taps])
    g_s = plan.student_flows([s.float() for s in s_taps])
    return float(flow_loss(g_t, g_s, reduction))
