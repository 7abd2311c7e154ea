"""One small MLP discriminator per flow item (Yeo & Bae 2019).

Each discriminator reads one flattened ``m x n`` flow matrix and returns one logit: high for a
teacher's flow ("real"), low for a student's ("fake"). :func:`flow_mlp` is one of them, as a
plain ``nn.Sequential``.

:class:`FlowDiscriminators` holds one such MLP for every item, with independent weights. Items
whose matrices have the same shape (ResNet-20 has 45 dense items but only 6 shapes) keep their
weights stacked, ``(k, in, out)`` per layer, so that one batched product evaluates all of them:
the same numbers as ``k`` separate MLPs, with a few large operations instead of many small
ones. :meth:`FlowDiscriminators.item` returns item ``k``'s MLP as a standalone ``flow_mlp``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as _sn

__all__ = ["flow_mlp", "StackedLinear", "FlowDiscriminators"]


def flow_mlp(in_features: int, hidden: Sequence[int] = (256, 128), spectral_norm: bool = False) -> nn.Sequential:
    """``Linear -> LeakyReLU(0.2)`` for each hidden width, then ``Linear -> 1 logit``."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        lin = nn.Linear(width, h)
        layers += [_sn(lin) if spectral_norm else lin, nn.LeakyReLU(0.2)]
        width = h
    last = nn.Linear(width, 1)
    layers.append(_sn(last) if spectral_norm else last)
    return nn.Sequential(*layers)


class StackedLinear(nn.Module):
    """``k`` independent linear layers of one size, applied with one batched product.

    Input ``(k, B, in_features)``, output ``(k, B, out_features)``; layer ``j`` computes
    ``x[j] @ weight[j] + bias[j]``. Initialised as ``nn.Linear`` is (uniform in
    ``+-1/sqrt(in_features)``).
    """

    def __init__(self, k: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.k, self.in_features, self.out_features = k, in_features, out_features
        self.weight = nn.Parameter(torch.empty(k, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(k, 1, out_features))
        bound = 1 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"k={self.k}, in_features={self.in_features}, out_features={self.out_features}"


class _StackedSpectralNorm(nn.Module):
    """Parametrisation ``W[j] -> W[j] / sigma_max(W[j])`` for a ``(k, in, out)`` weight, with one
    power iteration per training forward pass (as ``torch.nn.utils.parametrizations.spectral_norm``
    does for a single matrix)."""

    def __init__(self, weight: Tensor, eps: float = 1e-12) -> None:
        super().__init__()
        k, n_in, n_out = weight.shape
        self.eps = eps
        self.register_buffer("_u", F.normalize(weight.new_empty(k, n_out).normal_(), dim=1, eps=eps))
        self.register_buffer("_v", F.normalize(weight.new_empty(k, n_in).normal_(), dim=1, eps=eps))
        self._power_iteration(weight.detach(), 15)

    @torch.no_grad()
    def _power_iteration(self, w: Tensor, n: int) -> None:
        for _ in range(n):
            self._v.copy_(F.normalize(torch.bmm(w, self._u.unsqueeze(2)).squeeze(2), dim=1, eps=self.eps))
            self._u.copy_(F.normalize(torch.bmm(self._v.unsqueeze(1), w).squeeze(1), dim=1, eps=self.eps))

    def forward(self, w: Tensor) -> Tensor:
        if self.training:
            self._power_iteration(w.detach(), 1)
        u, v = self._u.clone(), self._v.clone()
        sigma = torch.einsum("ki,kio,ko->k", v, w, u)
        return w / sigma.view(-1, 1, 1)


def _stacked_mlp(k: int, in_features: int, hidden: Sequence[int], spectral_norm: bool) -> nn.Sequential:
    """``k`` independent :func:`flow_mlp` s of one input size, stacked (input ``(k, B, in)``)."""
    layers: list[nn.Module] = []
    widths = [in_features, *hidden, 1]
    for j, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        lin = StackedLinear(k, a, b)
        if spectral_norm:
            parametrize.register_parametrization(lin, "weight", _StackedSpectralNorm(lin.weight))
        layers.append(lin)
        if j < len(widths) - 2:
            layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


class FlowDiscriminators(nn.Module):
    """A discriminator for each flow item (independent weights; equal shapes evaluated together).

    Args:
        shapes: ``(m, n)`` of each item's matrix (e.g. ``FlowPlan.shapes``); the input size of
            item ``k``'s MLP is ``m * n``.
        hidden: hidden widths of every MLP.
        spectral_norm: normalise every linear layer of every MLP by its largest singular value
            (Miyato et al. 2018).

    ``forward`` takes the list of ``(B, m, n)`` flows and returns the list of ``(B,)`` logits.
    """

    def __init__(
        self, shapes: Sequence[tuple[int, int]], hidden: Sequence[int] = (256, 128), spectral_norm: bool = False
    ) -> None:
        super().__init__()
        if not shapes:
            raise ValueError("FlowDiscriminators needs at least one flow item shape")
        self.shapes = [tuple(int(v) for v in s) for s in shapes]
        self.hidden = tuple(int(h) for h in hidden)
        self.spectral_norm = spectral_norm
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for k, s in enumerate(self.shapes):
            by_shape.setdefault(s, []).append(k)
        #: the items of each stack, in item order
        self.groups = list(by_shape.values())
        self.stacks = nn.ModuleList(
            _stacked_mlp(len(ks), self.shapes[ks[0]][0] * self.shapes[ks[0]][1], self.hidden, spectral_norm)
            for ks in self.groups
        )
        self._where = {k: (g, j) for g, ks in enumerate(self.groups) for j, k in enumerate(ks)}

    def __len__(self) -> int:
        return len(self.shapes)

    def forward(self, flows: Sequence[Tensor]) -> list[Tensor]:
        """Logits ``(B,)`` for each item's ``(B, m, n)`` flow."""
        if len(flows) != len(self.shapes):
            raise ValueError(f"{len(flows)} flow items given to {len(self.shapes)} discriminators")
        for k, g in enumerate(flows):
            if tuple(g.shape[1:]) != self.shapes[k]:
                raise ValueError(f"discriminator {k} expects {self.shapes[k]} matrices, got {tuple(g.shape[1:])}")
        dtype = self.stacks[0][0].bias.dtype  # the discriminators' precision (float32 unless changed)
        out: list[Tensor | None] = [None] * len(flows)
        for ks, net in zip(self.groups, self.stacks):
            x = torch.stack([flows[k] for k in ks]).flatten(2).to(dtype)  # (k, B, m*n), one copy
            for k, z in zip(ks, net(x).squeeze(2)):
                out[k] = z
        return out  # type: ignore[return-value]

    def item(self, k: int) -> nn.Sequential:
        """Item ``k``'s discriminator as a standalone :func:`flow_mlp` holding a *copy* of its
        current weights (spectrally normalised ones, with that option): for printing, counting
        and checking. Training the copy does not change the discriminators."""
        g, j = self._where[k]
        m, n = self.shapes[k]
        mlp = flow_mlp(m * n, self.hidden)
        linears = [layer for layer in mlp if isinstance(layer, nn.Linear)]
        stacked = [layer for layer in self.stacks[g] if isinstance(layer, StackedLinear)]
        was_training = self.training
        self.eval()  # reading a spectrally normalised weight in training mode would iterate
        with torch.no_grad():
            for lin, st in zip(linears, stacked):
                lin.weight.copy_(st.weight[j].T)
                lin.bias.copy_(st.bias[j, 0])
        self.train(was_training)
        return mlp.to(stacked[0].bias.device)
