import pytest
import torch
import torch.nn.functional as F

from dfkd_lib.models import (
    VALID_DEPTHS,
    BasicBlock,
    CifarResNet,
    cifar_resnet,
    count_macs,
    count_parameters,
    model_from_name,
)


@pytest.mark.parametrize("depth", VALID_DEPTHS[:8] + (110,))
@pytest.mark.parametrize("num_classes", [10, 100])
def test_shapes_for_every_depth(depth, num_classes):
    model = cifar_resnet(depth, num_classes).eval()
    n = (depth - 2) // 6
    x = torch.randn(2, 3, 32, 32)
    logits, taps = model(x, return_taps=True)
    assert logits.shape == (2, num_classes)
    assert len(taps) == model.num_taps == 1 + 3 * n
    expected = [(16, 32)] + [(16, 32)] * n + [(32, 16)] * n + [(64, 8)] * n
    assert [(t.shape[1], t.shape[2]) for t in taps] == expected
    assert model.tap_channels == [c for c, _ in expected]
    assert model.tap_sizes() == [s for _, s in expected]
    assert torch.equal(model(x), logits)


@pytest.mark.parametrize("depth, params", [(8, 75_290), (20, 269_722), (26, 366_938), (56, 853_018), (110, 1_727_962)])
def test_parameter_counts_match_he_et_al(depth, params):
    # He et al. 2016, Table 6: ResNet-20 0.27M, ResNet-56 0.85M, ResNet-110 1.7M (option A shortcuts)
    assert count_parameters(cifar_resnet(depth)) == params


def test_macs_of_resnet20():
    # 40.55M multiply-accumulates is the usual figure for CIFAR ResNet-20
    assert count_macs(cifar_resnet(20)) == 40_551_040


def test_channels_last_gives_same_output():
    torch.manual_seed(0)
    model = cifar_resnet(14).eval()
    x = torch.randn(4, 3, 32, 32)
    ref = model(x)
    model_cl = model.to(memory_format=torch.channels_last)
    out = model_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_tap_names_and_stages():
    m = cifar_resnet(14)
    assert m.tap_names() == ["stem", "s1b1", "s1b2", "s2b1", "s2b2", "s3b1", "s3b2"]
    assert m.tap_stages == [0, 1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize("depth", [0, 7, 9, 10, 21])
def test_bad_depth_raises(depth):
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(depth)


def test_model_from_name():
    assert model_from_name("ResNet-26").depth == 26
    assert model_from_name("resnet8", 100).num_classes == 100
    with pytest.raises(ValueError, match="unknown model name"):
        model_from_name("vgg16")


def test_option_a_shortcut_subsamples_and_zero_pads_channels_on_both_sides():
    """He et al.'s option A: keep every second pixel, put the 16 input channels in the middle of
    the 32 output channels (8 zero channels before, 8 after)."""
    x = torch.arange(2 * 16 * 8 * 8, dtype=torch.float32).reshape(2, 16, 8, 8)
    expected = torch.zeros(2, 32, 4, 4)
    for i in range(4):
        for j in range(4):
            expected[:, 8:24, i, j] = x[:, :, 2 * i, 2 * j]
    got = BasicBlock(16, 32, 2).shortcut(x)
    assert torch.equal(got, expected)
    assert torch.equal(got, F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 8, 8)))
    # an unchanged shape: the identity itself
    y = torch.arange(2 * 16 * 4 * 4, dtype=torch.float32).reshape(2, 16, 4, 4)
    assert torch.equal(BasicBlock(16, 16).shortcut(y), y)


@pytest.mark.parametrize("in_ch, out_ch, stride", [(16, 32, 2), (16, 16, 1)])
def test_a_block_with_a_silenced_residual_branch_passes_its_shortcut(in_ch, out_ch, stride):
    """With ``bn2``'s scale and shift at zero the residual branch adds nothing, so the block's output
    is ``relu(shortcut(x))``: the shortcut must be added before the last ReLU."""
    torch.manual_seed(0)
    block = BasicBlock(in_ch, out_ch, stride).eval()
    with torch.no_grad():
        block.bn2.weight.zero_()
        block.bn2.bias.zero_()
    x = torch.randn(2, in_ch, 8, 8)  # negative values too, so the final ReLU matters
    out = block(x)
    assert torch.equal(out, F.relu(block.shortcut(x)))
    assert out.abs().sum() > 0


def _reference_resnet(model: CifarResNet, x: torch.Tensor) -> torch.Tensor:
    """A CIFAR ResNet written out from He et al. (section 4.2) with the model's weights: stem, three
    stages (stride 2 at the first block of stages 2 and 3), option-A shortcuts, pooling, linear."""
    sd = model.state_dict()

    def bn(h, name):
        mean, var = sd[f"{name}.running_mean"], sd[f"{name}.running_var"]
        w, b = sd[f"{name}.weight"], sd[f"{name}.bias"]
        return (h - mean[:, None, None]) / torch.sqrt(var[:, None, None] + 1e-5) * w[:, None, None] + b[:, None, None]

    h = F.relu(bn(F.conv2d(x, sd["conv1.weight"], padding=1), "bn1"))
    for s in range(3):
        for j in range(model.blocks_per_stage):
            p, stride = f"stages.{s}.{j}", 2 if s > 0 and j == 0 else 1
            r = F.relu(bn(F.conv2d(h, sd[f"{p}.conv1.weight"], stride=stride, padding=1), f"{p}.bn1"))
            r = bn(F.conv2d(r, sd[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
            short = h[:, :, ::stride, ::stride]
            extra = r.shape[1] - short.shape[1]
            zeros = short.new_zeros(short.shape[0], extra // 2, *short.shape[2:])
            h = F.relu(r + torch.cat([zeros, short, zeros], 1))
    return h.mean((2, 3)) @ sd["fc.weight"].T + sd["fc.bias"]


def test_resnet8_matches_a_reference_written_from_the_paper():
    """The logits of ResNet-8 in eval mode (batch-norm statistics moved off their initial values)
    equal those of an independent functional implementation with the same weights."""
    torch.manual_seed(0)
    model = cifar_resnet(8).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _reference_resnet(model, x), rtol=1e-4, atol=1e-5)


def test_frozen_puts_a_network_in_eval_mode_without_gradients_and_eval_mode_restores_modes():
    from dfkd_lib.models import eval_mode, frozen

    net = cifar_resnet(8).train()
    assert frozen(net) is net and not net.training and not any(p.requires_grad for p in net.parameters())
    a, b = cifar_resnet(8).train(), cifar_resnet(8).eval()
    with pytest.raises(RuntimeError), eval_mode(a, b):
        assert not a.training and not b.training
        raise RuntimeError("a failure inside the block")
    assert a.training and not b.training  # each back in its own mode, even after an error
