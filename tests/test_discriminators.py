import copy
import io

import pytest
import torch
from torch import nn

from dfkd_lib.discriminators import FlowDiscriminators

SHAPES = [(16, 16), (16, 32), (32, 64)]


def test_one_mlp_per_item_registered():
    d = FlowDiscriminators(SHAPES, hidden=(8,))
    assert isinstance(d.nets, nn.ModuleList) and len(d) == 3
    assert [net[1].in_features for net in d.nets] == [256, 512, 2048]
    n_params = sum(p.numel() for p in d.parameters())
    assert n_params == sum(m * n * 8 + 8 + 8 + 1 for m, n in SHAPES)
    # saved and loaded with everything else
    buf = io.BytesIO()
    torch.save(d.state_dict(), buf)
    buf.seek(0)
    d2 = FlowDiscriminators(SHAPES, hidden=(8,))
    d2.load_state_dict(torch.load(buf))
    flows = [torch.randn(5, m, n) for m, n in SHAPES]
    for a, b in zip(d(flows), d2(flows)):
        torch.testing.assert_close(a, b)
    assert all(len(o.shape) == 1 and o.shape[0] == 5 for o in d(flows))


def test_golden_output_with_fixed_weights():
    d = FlowDiscriminators([(2, 2)], hidden=(3,))
    with torch.no_grad():
        lin1, lin2 = d.nets[0][1], d.nets[0][3]
        lin1.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [-1, -1, -1, -1]]))
        lin1.bias.zero_()
        lin2.weight.copy_(torch.tensor([[1.0, 2.0, 10.0]]))
        lin2.bias.fill_(0.5)
    g = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    # hidden = leaky_relu([1, 2, -10]) = [1, 2, -2]; out = 1 + 4 - 20 + 0.5
    assert d([g])[0].item() == pytest.approx(-14.5)


def test_spectral_norm_option():
    torch.manual_seed(0)
    d = FlowDiscriminators(SHAPES, spectral_norm=True)
    names = [n for n, _ in d.named_parameters()]
    assert any("parametrizations.weight.original" in n for n in names)
    d.train()
    for _ in range(20):  # power iterations converge
        d([torch.randn(4, m, n) for m, n in SHAPES])
    w = d.nets[2][1].weight
    assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, rel=0.05)


def test_wrong_input_raises():
    d = FlowDiscriminators(SHAPES)
    with pytest.raises(ValueError, match="3 discriminators"):
        d([torch.randn(2, 16, 16)])
    with pytest.raises(ValueError, match="discriminator 1 expects"):
        d([torch.randn(2, 16, 16), torch.randn(2, 32, 16), torch.randn(2, 32, 64)])
    with pytest.raises(ValueError):
        FlowDiscriminators([])


def test_moves_with_to():
    """Moved to float64, the discriminators take float32 (and float64) flows and give float64 logits
    equal to the float32 ones; float32 discriminators still give float32 logits for float64 or half flows."""
    torch.manual_seed(0)
    d32 = FlowDiscriminators(SHAPES)
    d64 = copy.deepcopy(d32).to(torch.float64)
    assert all(p.dtype == torch.float64 for p in d64.parameters())
    flows = [torch.randn(5, m, n) for m, n in SHAPES]
    ref = d32(flows)
    for flows_in in (flows, [g.double() for g in flows]):
        out = d64(flows_in)
        assert all(o.dtype == torch.float64 and o.shape == (5,) for o in out)
        for a, b in zip(out, ref):
            torch.testing.assert_close(a.float(), b, rtol=1e-5, atol=1e-5)
    for a, b in zip(d32([g.double() for g in flows]), ref):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b)
    half = [g.half() for g in flows]  # half-precision flows: the float32 logits of their values
    for a, b in zip(d32(half), d32([g.float() for g in half])):
        assert a.dtype == torch.float32
        assert torch.equal(a, b)
