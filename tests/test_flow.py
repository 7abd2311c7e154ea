import pytest
import torch

from dfkd_lib.flow import (
    align_taps,
    dense_flows,
    flows_loop,
    fsp_matrix,
    make_flow_plan,
    make_pairs,
    pool_to,
)
from dfkd_lib.models import CifarResNet, cifar_resnet


def fsp_reference(f1, f2, pool="max"):
    """FSP by explicit loops over positions and channels (Yim et al., eq. 2)."""
    if f1.shape[-1] != f2.shape[-1]:
        big, small = (f1, f2) if f1.shape[-1] > f2.shape[-1] else (f2, f1)
        k = big.shape[-1] // small.shape[-1]
        pooled = torch.zeros(*big.shape[:2], small.shape[-2], small.shape[-1], dtype=big.dtype)
        for i in range(small.shape[-2]):
            for j in range(small.shape[-1]):
                win = big[:, :, i * k : (i + 1) * k, j * k : (j + 1) * k].reshape(*big.shape[:2], -1)
                pooled[:, :, i, j] = win.max(-1).values if pool == "max" else win.mean(-1)
        f1, f2 = (pooled, f2) if f1 is big else (f1, pooled)
    b, m, h, w = f1.shape
    n = f2.shape[1]
    g = torch.zeros(b, m, n, dtype=torch.float64)
    for bi in range(b):
        for i in range(m):
            for j in range(n):
                acc = 0.0
                for s in range(h):
                    for t in range(w):
                        acc += float(f1[bi, i, s, t]) * float(f2[bi, j, s, t])
                g[bi, i, j] = acc / (h * w)
    return g


@pytest.mark.parametrize("pool", ["max", "avg"])
@pytest.mark.parametrize("sizes", [(8, 8), (8, 4), (4, 8), (8, 2)])
def test_fsp_matches_slow_reference(pool, sizes):
    g = torch.Generator().manual_seed(1)
    f1 = torch.randn(2, 3, sizes[0], sizes[0], generator=g)
    f2 = torch.randn(2, 5, sizes[1], sizes[1], generator=g)
    got = fsp_matrix(f1, f2, pool).double()
    torch.testing.assert_close(got, fsp_reference(f1, f2, pool), rtol=1e-5, atol=1e-6)


def test_fsp_known_value():
    f1 = torch.ones(1, 1, 2, 2)
    f2 = torch.arange(4.0).view(1, 1, 2, 2)
    assert fsp_matrix(f1, f2).item() == pytest.approx(1.5)  # (0 + 1 + 2 + 3) / 4


def taps_of(depth, batch=4, seed=0):
    torch.manual_seed(seed)
    model = cifar_resnet(depth).train()
    _, taps = model(torch.randn(batch, 3, 32, 32), return_taps=True)
    return model, taps


@pytest.mark.parametrize("depth", [8, 14, 26])
@pytest.mark.parametrize("kind", ["dense", "chain", "sparse"])
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_dense_batched_equals_per_pair_loop(depth, kind, pool):
    model, taps = taps_of(depth)
    pairs = make_pairs(kind, model.tap_stages)
    fast, slow = dense_flows(taps, pairs, pool), flows_loop(taps, pairs, pool)
    assert len(fast) == len(slow) == len(pairs)
    for (a, b), gf, gs in zip(pairs, fast, slow):
        assert gf.shape == gs.shape == (4, taps[a].shape[1], taps[b].shape[1])
        rel = (gf - gs).norm() / gs.norm()
        assert rel < 1e-5, f"pair {(a, b)}: relative error {rel}"


@pytest.mark.parametrize("depth", [8, 14])
def test_dense_batched_equals_loop_on_channels_last_maps(depth):
    model, taps = taps_of(depth)
    taps = [t.contiguous(memory_format=torch.channels_last) for t in taps]
    pairs = make_pairs("dense", model.tap_stages)
    for (a, b), gf, gs in zip(pairs, dense_flows(taps, pairs), flows_loop(taps, pairs)):
        assert (gf - gs).norm() / gs.norm() < 1e-5, (a, b)


def test_dense_batched_handles_reversed_resolution_roles():
    # a custom list over maps whose later tap is larger: the batched path transposes a block
    torch.manual_seed(0)
    taps = [torch.randn(2, 4, 8, 8), torch.randn(2, 6, 4, 4), torch.randn(2, 3, 8, 8)]
    pairs = [(0, 1), (1, 2), (0, 2)]
    for gf, gs in zip(dense_flows(taps, pairs), flows_loop(taps, pairs)):
        torch.testing.assert_close(gf, gs, rtol=1e-5, atol=1e-6)


def test_dense_batched_gradients_equal_loop():
    model, _ = taps_of(8)
    x = torch.randn(3, 3, 32, 32)
    pairs = make_pairs("dense", model.tap_stages)
    grads = []
    for fn in (dense_flows, flows_loop):
        model.zero_grad()
        _, taps = model(x, return_taps=True)
        sum(g.pow(2).sum() for g in fn(taps, pairs)).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert (grads[0] - grads[1]).norm() / grads[1].norm() < 1e-4


@pytest.mark.parametrize(
    "n_t, n_s, expected",
    [
        (4, 1, [0, 4, 8, 12]),  # ResNet-26 -> ResNet-8: each stage's last block
        (4, 2, [0, 2, 4, 6, 8, 10, 12]),  # ResNet-26 -> ResNet-14
        (9, 3, [0, 3, 6, 9, 12, 15, 18, 21, 24, 27]),  # ResNet-56 -> ResNet-20
        (5, 2, [0, 3, 5, 8, 10, 13, 15]),  # ResNet-32 -> ResNet-14: ceil(5/2) = 3
        (3, 3, list(range(10))),  # equal depth: identity
    ],
)
def test_align_taps_by_relative_depth(n_t, n_s, expected):
    assert align_taps(n_t, n_s) == expected


def test_align_rejects_deeper_student():
    with pytest.raises(ValueError, match="must not be deeper"):
        align_taps(1, 2)


def test_pair_set_sizes():
    assert len(make_pairs("dense", cifar_resnet(8).tap_stages)) == 6
    assert len(make_pairs("dense", cifar_resnet(14).tap_stages)) == 21
    assert make_pairs("sparse", cifar_resnet(14).tap_stages) == [(0, 2), (2, 4), (4, 6)]
    assert make_pairs("chain", cifar_resnet(8).tap_stages) == [(0, 1), (1, 2), (2, 3)]
    assert make_pairs([[0, 3], (1, 2)], cifar_resnet(8).tap_stages) == [(0, 3), (1, 2)]


@pytest.mark.parametrize("bad", ["everything", [(2, 1)], [(0, 9)], [(0, 1, 2)], []])
def test_bad_pair_sets_raise(bad):
    with pytest.raises(ValueError):
        make_pairs(bad, cifar_resnet(8).tap_stages)


def test_flow_plan_resnet26_to_resnet8():
    plan = make_flow_plan(cifar_resnet(26), cifar_resnet(8), "dense")
    assert plan.teacher_taps == (0, 4, 8, 12)
    assert plan.shapes == ((16, 16), (16, 32), (16, 64), (16, 32), (16, 64), (32, 64))
    assert plan.teacher_pairs[0] == (0, 4)
    assert plan.names[-1] == "s2b1->s3b1"


def test_channel_mismatch_names_pair_and_shapes():
    teacher = CifarResNet(14, widths=(16, 32, 128))
    with pytest.raises(ValueError) as err:
        make_flow_plan(teacher, cifar_resnet(8), "dense")
    msg = str(err.value)
    assert "channel mismatch" in msg and "0->3" in msg and "16x128" in msg and "16x64" in msg


def test_unknown_pool_raises():
    with pytest.raises(ValueError, match="unknown pool"):
        make_flow_plan(cifar_resnet(14), cifar_resnet(8), "dense", pool="median")


def test_a_plan_needs_two_cifar_resnets():
    with pytest.raises(
        TypeError, match=r"the teacher must be a CifarResNet \(dfkd_lib.cifar_resnet\(depth\)\), not Linear"
    ):
        make_flow_plan(torch.nn.Linear(2, 2), cifar_resnet(8))
    with pytest.raises(TypeError, match="the student must be a CifarResNet .*not str"):
        make_flow_plan(cifar_resnet(14), "resnet8")


def test_bad_maps_and_pair_lists_are_refused_by_name():
    with pytest.raises(ValueError, match=r"4-d \(B, C, H, W\) maps, got shapes \(2, 4, 8\)"):
        fsp_matrix(torch.zeros(2, 4, 8), torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="batch sizes differ"):
        fsp_matrix(torch.zeros(2, 4, 8, 8), torch.zeros(3, 4, 8, 8))
    with pytest.raises(ValueError, match=r"cannot pool a map of size \(8, 8\) up to 16x16"):
        pool_to(torch.zeros(1, 2, 8, 8), 16)
    taps = cifar_resnet(8).tap_stages
    with pytest.raises(ValueError, match="duplicates"):
        make_pairs([(0, 1), (0, 1)], taps)
    with pytest.raises(ValueError, match="is empty"):
        make_pairs([], taps)
    with pytest.raises(ValueError, match=r"pair \(2, 1\) is invalid"):
        make_pairs([(2, 1)], taps)
