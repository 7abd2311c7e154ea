import io

import pytest
import torch
from torch import nn

from dfkd_lib.discriminators import FlowDiscriminators, StackedLinear, flow_mlp

SHAPES = [(16, 16), (16, 32), (16, 16), (32, 64)]  # two items share a shape


def test_one_mlp_per_item_registered():
    d = FlowDiscriminators(SHAPES, hidden=(8,))
    assert len(d) == 4 and len(d.stacks) == 3 and d.groups == [[0, 2], [1], [3]]
    n_params = sum(p.numel() for p in d.parameters())
    assert n_params == sum(m * n * 8 + 8 + 8 + 1 for m, n in SHAPES)
    # every item's MLP, on its own, has the size of a flow_mlp
    for k, (m, n) in enumerate(SHAPES):
        one = flow_mlp(m * n, (8,))
        assert sum(p.numel() for p in d.item(k).parameters()) == sum(p.numel() for p in one.parameters())
    # saved and loaded with everything else
    buf = io.BytesIO()
    torch.save(d.state_dict(), buf)
    buf.seek(0)
    d2 = FlowDiscriminators(SHAPES, hidden=(8,))
    d2.load_state_dict(torch.load(buf))
    flows = [torch.randn(5, m, n) for m, n in SHAPES]
    for a, b in zip(d(flows), d2(flows)):
        torch.testing.assert_close(a, b)
    assert all(o.shape == (5,) for o in d(flows))


def test_stacked_equals_separate_mlps():
    """The stacked evaluation gives what each item's own MLP gives, values and gradients."""
    torch.manual_seed(0)
    d = FlowDiscriminators(SHAPES, hidden=(32, 16)).double()
    flows = [torch.randn(6, m, n, dtype=torch.float64, requires_grad=True) for m, n in SHAPES]
    out = d(flows)
    sum(o.square().sum() for o in out).backward()
    for k, g in enumerate(flows):
        mlp = d.item(k).double()
        g2 = g.detach().clone().requires_grad_(True)
        ref = mlp(g2).squeeze(1)
        ref.square().sum().backward()
        torch.testing.assert_close(out[k], ref)
        torch.testing.assert_close(g.grad, g2.grad)
    # items of one shape are independent discriminators, not one shared MLP
    x = torch.randn(3, 16, 16, dtype=torch.float64)
    assert not torch.allclose(d.item(0).double()(x), d.item(2).double()(x))


def test_golden_output_with_fixed_weights():
    d = FlowDiscriminators([(2, 2)], hidden=(3,))
    lin1, lin2 = d.stacks[0][0], d.stacks[0][2]
    assert isinstance(lin1, StackedLinear) and isinstance(lin2, StackedLinear)
    with torch.no_grad():  # stacked weights are (k, in, out)
        lin1.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [-1, -1, -1, -1]]).T[None])
        lin1.bias.zero_()
        lin2.weight.copy_(torch.tensor([[1.0, 2.0, 10.0]]).T[None])
        lin2.bias.fill_(0.5)
    g = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    # hidden = leaky_relu([1, 2, -10]) = [1, 2, -2]; out = 1 + 4 - 20 + 0.5
    assert d([g])[0].item() == pytest.approx(-14.5)
    assert d.item(0)(g).item() == pytest.approx(-14.5)


def test_init_matches_nn_linear_range():
    torch.manual_seed(0)
    lin = StackedLinear(3, 400, 50)
    bound = 1 / 400**0.5
    assert lin.weight.abs().max() <= bound and lin.weight.abs().max() > 0.95 * bound
    assert lin.bias.abs().max() <= bound


def test_spectral_norm_option():
    torch.manual_seed(0)
    d = FlowDiscriminators(SHAPES, spectral_norm=True)
    names = [n for n, _ in d.named_parameters()]
    assert any("parametrizations.weight.original" in n for n in names)
    d.train()
    for _ in range(20):  # power iterations converge
        d([torch.randn(4, m, n) for m, n in SHAPES])
    for k in range(len(SHAPES)):  # every layer of every item has spectral norm 1
        for layer in d.item(k):
            if isinstance(layer, nn.Linear):
                assert torch.linalg.matrix_norm(layer.weight, ord=2).item() == pytest.approx(1.0, rel=0.05)
    # it survives a state-dict round trip
    d2 = FlowDiscriminators(SHAPES, spectral_norm=True)
    d2.load_state_dict(d.state_dict())
    d.eval(), d2.eval()
    flows = [torch.randn(2, m, n) for m, n in SHAPES]
    for a, b in zip(d(flows), d2(flows)):
        torch.testing.assert_close(a, b)


def test_wrong_input_raises():
    d = FlowDiscriminators(SHAPES)
    with pytest.raises(ValueError, match="4 discriminators"):
        d([torch.randn(2, 16, 16)])
    with pytest.raises(ValueError, match="discriminator 1 expects"):
        d([torch.randn(2, 16, 16), torch.randn(2, 32, 16), torch.randn(2, 16, 16), torch.randn(2, 32, 64)])
    with pytest.raises(ValueError):
        FlowDiscriminators([])


def test_moves_with_to():
    d = FlowDiscriminators(SHAPES).to(torch.float64)
    assert all(p.dtype == torch.float64 for p in d.parameters())
