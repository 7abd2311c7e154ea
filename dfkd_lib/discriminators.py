"""One small MLP discriminator per flow item (Yeo & Bae 2019).

Each discriminator reads one flattened ``m x n`` flow matrix and returns one logit: high for a
teacher's flow ("real"), low for a student's ("fake"). They live in an ``nn.ModuleList`` so that
``.to()``, ``state_dict()`` and optimisers see all of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _sn

__all__ = ["flow_mlp", "FlowDiscriminators"]


def flow_mlp(in_features: int, hidden: Sequence[int] = (64, 32), spectral_norm: bool = False) -> nn.Sequential:
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


class FlowDiscriminators(nn.Module):
    """A discriminator for each flow item.

    Args:
        shapes: ``(m, n)`` of each item's matrix (e.g. ``FlowPlan.shapes``); the input size of
            item ``k``'s MLP is ``m * n``.
        hidden: hidden widths of every MLP.
        spectral_norm: wrap every linear layer in spectral normalisation (Miyato et al. 2018).
    """

    def __init__(
        self, shapes: Sequence[tuple[int, int]], hidden: Sequence[int] = (64, 32), spectral_norm: bool = False
    ) -> None:
        super().__init__()
        if not shapes:
            raise ValueError("FlowDiscriminators needs at least one flow item shape")
        self.shapes = [tuple(int(v) for v in s) for s in shapes]
        self.nets = nn.ModuleList(flow_mlp(m * n, hidden, spectral_norm) for m, n in self.shapes)

    def __len__(self) -> int:
        return len(self.nets)

    def forward(self, flows: Sequence[Tensor]) -> list[Tensor]:
        """Logits ``(B,)`` for each item's ``(B, m, n)`` flow."""
        if len(flows) != len(self.nets):
            raise ValueError(f"{len(flows)} flow items given to {len(self.nets)} discriminators")
        # Flows may come in another precision than the weights (half-precision taps, or float32 flows
        # given to discriminators moved with .to(torch.float64)): cast them to the weights' dtype, so
        # the products run in one type. Under autocast the linear layers still choose their own
        # precision, whatever the input's dtype.
        dtype = next(self.parameters()).dtype
        out = []
        for k, (net, g) in enumerate(zip(self.nets, flows)):
            if tuple(g.shape[1:]) != self.shapes[k]:
                raise ValueError(f"discriminator {k} expects {self.shapes[k]} matrices, got {tuple(g.shape[1:])}")
            out.append(net(g.to(dtype)).squeeze(1))
        return out
