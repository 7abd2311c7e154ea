import pytest
import torch

from dfkd_lib.models import VALID_DEPTHS, CifarResNet, cifar_resnet, count_macs, count_parameters, model_from_name


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
