import math

import pytest
import torch
import torch.nn.functional as F

from dfkd_lib import losses as L
from dfkd_lib.flow import make_flow_plan
from dfkd_lib.models import cifar_resnet


def test_cross_entropy_ignores_unlabelled():
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    labels = torch.tensor([0, -1, 1])
    expected = F.cross_entropy(logits[[0, 2]], labels[[0, 2]])
    torch.testing.assert_close(L.cross_entropy(logits, labels), expected)
    none = L.cross_entropy(logits.requires_grad_(), torch.full((3,), -1))
    assert none.item() == 0.0
    none.backward()  # still differentiable


def test_kd_loss_golden():
    s = torch.tensor([[1.0, 2.0, 3.0], [0.5, -0.5, 0.0]])
    t = torch.tensor([[3.0, 2.0, 1.0], [0.0, 0.0, 1.0]])
    T = 4.0
    p_t = F.softmax(t / T, 1)
    expected = (p_t * (p_t.log() - F.log_softmax(s / T, 1))).sum(1).mean() * T * T
    got = L.kd_loss(s, t, T)
    torch.testing.assert_close(got, expected)
    assert got.item() == pytest.approx(0.759750, abs=1e-5)  # golden value (numpy by hand)
    assert L.kd_loss(t, t, T).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        L.kd_loss(s, t, 0.0)


def test_flow_loss_golden_and_reductions():
    gt = [torch.ones(2, 2, 3), torch.zeros(2, 4, 4)]
    gs = [torch.zeros(2, 2, 3), torch.full((2, 4, 4), 0.5)]
    # sum: item 1: 6 entries * 1 = 6; item 2: 16 * 0.25 = 4  -> 10
    assert L.flow_loss(gt, gs).item() == pytest.approx(10.0)
    # mean: 1 + 0.25
    assert L.flow_loss(gt, gs, reduction="mean").item() == pytest.approx(1.25)


def test_flow_loss_errors():
    with pytest.raises(ValueError, match="item 0"):
        L.flow_loss([torch.zeros(2, 3, 3)], [torch.zeros(2, 3, 4)])
    with pytest.raises(ValueError, match="1 flow item in teacher_flows but 2 flow items in student_flows"):
        L.flow_loss([torch.zeros(2, 3, 3)], [torch.zeros(2, 3, 3)] * 2)
    with pytest.raises(ValueError, match="reduction"):
        L.flow_loss([torch.zeros(1, 1, 1)], [torch.zeros(1, 1, 1)], reduction="max")
    with pytest.raises(ValueError, match=r"batch of matrices \(batch, m, n\), got shape \(3, 3\)"):
        L.flow_loss([torch.zeros(3, 3)], [torch.zeros(3, 3)])


def test_mismatched_inputs_are_named():
    with pytest.raises(ValueError, match=r"student logits \(4, 10\) but teacher logits \(4, 100\)"):
        L.kd_loss(torch.randn(4, 10), torch.randn(4, 100))
    one, two = [torch.zeros(3)], [torch.zeros(3)] * 2
    with pytest.raises(ValueError, match="2 flow items in real_logits but 1 flow item in fake_logits"):
        L.discriminator_loss(two, one)
    with pytest.raises(ValueError, match="in real_logits but"):
        L.discriminator_accuracy(two, one, "bce")
    with pytest.raises(ValueError, match="1 feature map in teacher_feats but 2 feature maps"):
        L.at_loss([torch.zeros(2, 4, 8, 8)], [torch.zeros(2, 4, 8, 8)] * 2)
    with pytest.raises(ValueError, match="teacher maps of 2 images but student maps of 3"):
        L.at_loss([torch.zeros(2, 4, 8, 8)], [torch.zeros(3, 4, 8, 8)])


def test_gradients_reach_student_never_teacher():
    torch.manual_seed(0)
    teacher, student = cifar_resnet(14).eval(), cifar_resnet(8)
    plan = make_flow_plan(teacher, student, "dense")
    x = torch.randn(4, 3, 32, 32)
    # the teacher's taps carry a graph here (no no_grad, weights not frozen): the loss itself must
    # keep its gradient from reaching the teacher
    _, t_taps = teacher(x, return_taps=True)
    _, s_taps = student(x, return_taps=True)
    loss = L.flow_loss(plan.teacher_flows(t_taps), plan.student_flows(s_taps))
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    convs = [p for n, p in student.named_parameters() if "conv" in n]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in convs)


def test_flow_loss_does_not_backprop_into_teacher_flows():
    gt = torch.randn(2, 3, 3, requires_grad=True)
    gs = torch.randn(2, 3, 3, requires_grad=True)
    L.flow_loss([gt], [gs]).backward()
    assert gt.grad is None and gs.grad is not None
    torch.testing.assert_close(gs.grad, 2 * (gs - gt).detach() / 2)  # d/dgs of batch-mean of sum of squares


def test_attention_transfer_golden():
    f = torch.zeros(1, 2, 2, 2)
    f[0, 0, 0, 0] = 2.0  # attention: channel mean of f^2 = [2, 0, 0, 0] -> normalised [1, 0, 0, 0]
    torch.testing.assert_close(L.attention_map(f), torch.tensor([[1.0, 0, 0, 0]]))
    g = torch.ones(1, 2, 2, 2)  # attention [0.5, 0.5, 0.5, 0.5]
    # mean of squared difference: ((1-.5)^2 + 3 * .25) / 4 = 0.25
    assert L.at_loss([f], [g]).item() == pytest.approx(0.25)
    with pytest.raises(ValueError):
        L.at_loss([f], [torch.ones(1, 2, 4, 4)])


def test_attention_map_squares_the_features_and_l2_normalises():
    """One channel ``[[1, 2], [3, 4]]`` (signs flipped on two entries): attention ``f^2`` flattened,
    ``[1, 4, 9, 16] / sqrt(354)``, not ``|f|`` (``[1, 2, 3, 4] / sqrt(30)``) nor ``f``."""
    f = torch.tensor([[[[1.0, -2.0], [-3.0, 4.0]]]])
    expected = torch.tensor([[1.0, 4.0, 9.0, 16.0]]) / math.sqrt(354)
    torch.testing.assert_close(L.attention_map(f), expected)
    # a second, zero channel halves the channel mean, which the normalisation removes
    torch.testing.assert_close(L.attention_map(torch.cat([f, torch.zeros_like(f)], 1)), expected)
    # the loss: mean over the 4 positions of the squared difference to a flat map (0.5 everywhere)
    flat = torch.ones(1, 1, 2, 2)
    # ((1, 4, 9, 16) / 18.8149 - 0.5)^2 = (0.19973, 0.08260, 0.00047, 0.12272), averaged
    assert L.at_loss([f], [flat]).item() == pytest.approx(0.1013795, abs=1e-6)


def test_attention_transfer_sends_no_gradient_to_the_teacher_features():
    """``at_loss`` detaches the teacher's maps: a teacher tensor that requires a gradient gets none,
    the student's gets a non-zero one."""
    torch.manual_seed(0)
    ft = torch.randn(2, 4, 4, 4, requires_grad=True)
    fs = torch.randn(2, 8, 4, 4, requires_grad=True)
    L.at_loss([ft], [fs]).backward()
    assert ft.grad is None
    assert fs.grad is not None and fs.grad.abs().sum() > 0


def test_gan_losses_golden():
    zero = [torch.zeros(4)]
    two = [torch.full((4,), 2.0)]
    ln2 = math.log(2)
    assert L.discriminator_loss(zero, zero, "bce").item() == pytest.approx(2 * ln2)
    assert L.generator_loss(zero, "bce").item() == pytest.approx(ln2)
    assert L.discriminator_loss(zero, zero, "lsgan").item() == pytest.approx(0.5)
    assert L.generator_loss(two, "lsgan").item() == pytest.approx(0.5)
    assert L.discriminator_loss(zero, zero, "hinge").item() == pytest.approx(2.0)
    assert L.discriminator_loss(two, [-x for x in two], "hinge").item() == pytest.approx(0.0)
    assert L.generator_loss(two, "hinge").item() == pytest.approx(-2.0)
    # summed over items
    assert L.generator_loss(zero * 3, "bce").item() == pytest.approx(3 * ln2)
    # a confident, correct discriminator: softplus(-2) + softplus(-2)
    assert L.discriminator_loss(two, [-x for x in two], "bce").item() == pytest.approx(2 * math.log1p(math.exp(-2)))
    with pytest.raises(ValueError, match="unknown GAN loss"):
        L.generator_loss(zero, "wasserstein")


# Asymmetric logits: real and fake differ, and each tensor holds two different values, so that
# swapped roles, a lost 0.5 or a sum instead of a batch mean give other numbers.
REAL, FAKE = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 3.0])


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))


@pytest.mark.parametrize(
    "kind, real, fake, expected",
    [
        ("bce", [1.0], [0.0], _softplus(-1) + math.log(2)),
        ("bce", [0.0], [1.0], math.log(2) + _softplus(1)),
        # mean of softplus(-r) over the real logits + mean of softplus(f) over the fake ones
        ("bce", REAL, FAKE, (_softplus(0) + _softplus(-2)) / 2 + (_softplus(1) + _softplus(3)) / 2),
        ("lsgan", [1.0], [0.0], 0.0),
        ("lsgan", [0.0], [1.0], 0.5 * (1 + 1)),
        ("lsgan", [3.0], [-1.0], 0.5 * (4 + 1)),
        # 0.5 * (mean((r - 1)^2) + mean(f^2)) = 0.5 * ((1 + 1) / 2 + (1 + 9) / 2)
        ("lsgan", REAL, FAKE, 3.0),
        ("hinge", [1.0], [0.0], 0.0 + 1.0),
        ("hinge", [0.0], [1.0], 1.0 + 2.0),
        ("hinge", [3.0], [-2.0], 0.0),
        # mean(relu(1 - r)) + mean(relu(1 + f)) = (1 + 0) / 2 + (2 + 4) / 2
        ("hinge", REAL, FAKE, 3.5),
    ],
)
def test_discriminator_loss_asymmetric_golden(kind, real, fake, expected):
    """The discriminator's loss when real and fake logits differ: teacher flows real, student fake."""
    real, fake = torch.as_tensor(real), torch.as_tensor(fake)
    assert L.discriminator_loss([real], [fake], kind).item() == pytest.approx(expected, rel=1e-6)
    # summed over items: a second item with the roles at their targets' opposite adds its own loss
    two = L.discriminator_loss([real, fake], [fake, real], kind).item()
    assert two == pytest.approx(expected + L.discriminator_loss([fake], [real], kind).item(), rel=1e-6)


@pytest.mark.parametrize(
    "kind, fake, expected",
    [
        ("bce", [1.0], _softplus(-1)),
        ("bce", [-2.0], _softplus(2)),
        ("bce", FAKE, (_softplus(-1) + _softplus(-3)) / 2),
        ("lsgan", [1.0], 0.0),
        ("lsgan", [3.0], 0.5 * 4),
        ("lsgan", REAL, 0.5 * (1 + 1) / 2),
        ("lsgan", FAKE, 0.5 * (0 + 4) / 2),
        ("hinge", [-3.0], 3.0),
        ("hinge", FAKE, -2.0),
    ],
)
def test_generator_loss_asymmetric_golden(kind, fake, expected):
    """The student's loss: low when the discriminator calls its flows real (high logits)."""
    assert L.generator_loss([torch.as_tensor(fake)], kind).item() == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_discriminator_accuracy():
    real = [torch.tensor([1.0, -1.0, 2.0, 3.0])]
    fake = [torch.tensor([-1.0, -2.0, 0.5, -3.0])]
    assert [float(a) for a in L.discriminator_accuracy(real, fake, "bce")] == [0.75, 0.75]
    assert [float(a) for a in L.discriminator_accuracy([torch.tensor([0.6])], [torch.tensor([0.4])], "lsgan")] == [1, 1]


def test_initial_flow_loss_is_measured_in_eval_mode_and_leaves_the_models_as_they_were():
    torch.manual_seed(0)
    teacher, student = cifar_resnet(14), cifar_resnet(8)  # in train mode, as a training loop leaves them
    with torch.no_grad():  # move the running statistics off their initial values
        for m in (*teacher.modules(), *student.modules()):
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in (teacher, student)]
    x = torch.randn(4, 3, 32, 32)
    plan = make_flow_plan(teacher, student, "chain")

    def direct(train_mode):
        teacher.train(train_mode), student.train(train_mode)
        with torch.no_grad():
            g_t = plan.teacher_flows(teacher(x, return_taps=True)[1])
            g_s = plan.student_flows(student(x, return_taps=True)[1])
        for m, state in zip((teacher, student), before):
            m.load_state_dict(state)  # undo what a train-mode pass did to the running statistics
        return float(L.flow_loss(g_t, g_s))

    in_eval, in_train = direct(False), direct(True)
    assert in_eval != pytest.approx(in_train, rel=1e-3)  # the mode matters for these models
    teacher.train(), student.eval()  # mixed modes: each must come back as it was
    assert L.initial_flow_loss(teacher, student, x, "chain") == pytest.approx(in_eval, rel=1e-6)
    assert teacher.training and not student.training
    for m, state in zip((teacher, student), before):
        assert all(torch.equal(state[k], v) for k, v in m.state_dict().items())


def test_relative_flow_errors_are_the_terms_of_the_teacher_normalised_loss():
    from dfkd_lib.losses import flow_distances, relative_flow_errors

    torch.manual_seed(0)
    gt = [torch.randn(5, 4, 6), torch.randn(5, 8, 8)]
    gs = [torch.randn(5, 4, 6), torch.randn(5, 8, 8)]
    errs = relative_flow_errors(gt, gs)
    assert errs.shape == (2,)
    torch.testing.assert_close(errs.sum(), L.flow_loss(gt, gs, norm="teacher"))
    # by hand, item 0: squared distance over the teacher's squared norm, image by image, then the mean
    by_hand = torch.stack([((a - b) ** 2).sum() / (a**2).sum() for a, b in zip(gt[0], gs[0])]).mean()
    torch.testing.assert_close(errs[0], by_hand)
    assert relative_flow_errors(gt, gt).abs().max() == 0
    torch.testing.assert_close(relative_flow_errors(gt, [torch.zeros_like(g) for g in gt]), torch.ones(2))
    # one image per batch: the error is the square of flow_distances' value
    one_t, one_s = [g[:1] for g in gt], [g[:1] for g in gs]
    torch.testing.assert_close(relative_flow_errors(one_t, one_s), flow_distances(one_t, one_s) ** 2)


def test_per_item_losses_refuse_one_tensor_or_no_items():
    z = torch.randn(4, 1)
    for call in (lambda: L.generator_loss(z), lambda: L.discriminator_loss(z, [z]),
                 lambda: L.discriminator_accuracy([z], z), lambda: L.r1_penalty(z, [z]),
                 lambda: L.flow_loss(torch.randn(2, 3, 3), torch.randn(2, 3, 3)),
                 lambda: L.at_loss(torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8))):  # fmt: skip
        with pytest.raises(TypeError, match="one tensor"):
            call()
    with pytest.raises(ValueError, match="no flow items"):
        L.generator_loss([])
    with pytest.raises(ValueError, match="no flow items"):
        L.discriminator_loss([], [])
