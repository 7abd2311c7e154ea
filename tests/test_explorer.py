import dataclasses

import ipywidgets as W
import numpy as np
import pytest
import torch

from dfkd_lib.checkpoint import save_model
from dfkd_lib.data import get_loaders
from dfkd_lib.explorer import FlowRecorder, flow_explorer, plot_flow_evolution
from dfkd_lib.flow import make_flow_plan
from dfkd_lib.models import cifar_resnet
from dfkd_lib.train import config_for, train

from helpers import Killed


def test_recorder_keeps_flows_per_epoch(synthetic, tmp_path):
    torch.manual_seed(0)
    teacher = cifar_resnet(14)
    save_model(teacher, tmp_path / "t.pt")
    loaders = get_loaders(synthetic, batch_size=50, val_size=60)
    x, y = next(iter(loaders.test))
    rec = FlowRecorder(x[:3], y[:3].tolist())
    cfg = config_for("dense", teacher=str(tmp_path / "t.pt"), student="resnet8", epochs=2, device="cpu")
    res = train(cfg, loaders=loaders, progress=False, verbose=False, on_start=rec, callback=rec)
    assert rec.epochs == [0, 1, 2] and len(rec.names) == 6 and len(rec.teacher) == 3
    # epoch 2 is the returned student's flows; the teacher's are those of the plan
    plan = make_flow_plan(res.student, res.student, "dense")
    res.student.eval()
    with torch.no_grad():
        _, taps = res.student(x[:3], return_taps=True)
    np.testing.assert_allclose(rec.student[2][1][5], plan.student_flows(taps)[5][1].numpy(), rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        _, t_taps = teacher.eval()(x[:3], return_taps=True)
    g_t = res.plan.teacher_flows(t_taps)  # the teacher's taps, through the plan's teacher side
    for k in range(6):
        np.testing.assert_allclose(rec.teacher[2][k], g_t[k][2].numpy(), rtol=1e-4, atol=1e-6)
    # the student moved between epochs; the teacher is recorded once, not once an epoch
    assert not np.allclose(rec.student[0][0][5], rec.student[2][0][5])
    assert len(rec.teacher) == len(rec.student[0])
    d0, d2 = rec.distance(0), rec.distance(2)
    # epoch 2's distances from the flows computed above: squared distance of the image-mean matrices
    g_s = plan.student_flows(taps)
    want = [float((g_t[k].mean(0) - g_s[k].mean(0)).pow(2).sum()) for k in range(6)]
    assert d2 == pytest.approx(want, rel=1e-3, abs=1e-9)
    assert len(d0) == 6 and sum(d2) < sum(d0)  # dense transfer pulled the flows together
    fig = plot_flow_evolution(rec, image=None)
    assert len(fig.axes) >= 6 * 5
    # rows teacher, epochs 0, 1, 2, difference; row 3, column 5: the student's mean item-5 flow at epoch 2
    np.testing.assert_allclose(_drawn(fig.axes[3 * 6 + 5]), np.mean([m[5] for m in rec.student[2]], axis=0))
    widget = flow_explorer(rec)
    assert isinstance(widget, W.VBox) and len(widget.children) == 4  # image and item, who, epoch, the figure


def _drawn(ax):
    """The array an axes' (only) heatmap shows."""
    (im,) = ax.images
    return np.asarray(im.get_array())


def _filled_recorder(seed=0):
    """A recorder with made-up flows: 3 images, 2 items of different shapes, epochs 0, 1 and 2."""
    rng = np.random.default_rng(seed)
    rec = FlowRecorder(torch.zeros(3, 3, 32, 32), [0, 1, 2])
    rec.names = ["a", "b"]
    shapes = [(4, 6), (5, 5)]
    rec.teacher = [[rng.normal(size=s) for s in shapes] for _ in range(3)]
    rec.student = {e: [[rng.normal(size=s) for s in shapes] for _ in range(3)] for e in (0, 1, 2)}
    return rec


def test_static_figure_shows_the_recorded_flows_in_their_panels():
    """Row 0 the teacher, rows 1-3 the student at epochs 0, 1, 2, the last row teacher minus the
    last student, one column per item; each panel's image is the recorded matrix of that image."""
    rec = _filled_recorder()
    fig = plot_flow_evolution(rec, image=1)
    cols = 2

    def panel(r, c):
        return _drawn(fig.axes[r * cols + c])

    np.testing.assert_array_equal(panel(0, 0), rec.teacher[1][0])
    np.testing.assert_array_equal(panel(0, 1), rec.teacher[1][1])
    for r, epoch in enumerate((0, 1, 2), start=1):
        np.testing.assert_array_equal(panel(r, 1), rec.student[epoch][1][1])
    np.testing.assert_allclose(panel(4, 0), rec.teacher[1][0] - rec.student[2][1][0])
    # the mean over the images when no image is chosen
    mean = plot_flow_evolution(rec, epochs=[1])
    np.testing.assert_allclose(_drawn(mean.axes[1 * cols + 0]), np.mean([m[0] for m in rec.student[1]], axis=0))


def test_explorer_draws_the_chosen_flow_and_redraws_when_the_epoch_moves(monkeypatch):
    """The explorer's figure shows the student's mean flow of the last item at the last epoch; moving
    the epoch slider, the image or the view redraws it with the recorded matrix they select."""
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda fig: shown.append(_drawn(fig.axes[0])))
    rec = _filled_recorder()
    widget = flow_explorer(rec)
    (image, item), who, epoch = widget.children[0].children, widget.children[1], widget.children[2]
    np.testing.assert_allclose(shown[-1], np.mean([m[1] for m in rec.student[2]], axis=0))
    epoch.value = 0
    assert len(shown) == 2 and not np.allclose(shown[-1], shown[-2])
    np.testing.assert_allclose(shown[-1], np.mean([m[1] for m in rec.student[0]], axis=0))
    image.value, item.value = 2, 0
    np.testing.assert_array_equal(shown[-1], rec.student[0][2][0])
    who.value = "difference"
    np.testing.assert_allclose(shown[-1], rec.teacher[2][0] - rec.student[0][2][0])
    who.value = "teacher"
    epoch.value = 1  # the teacher has no epochs: the same matrix
    np.testing.assert_array_equal(shown[-1], rec.teacher[2][0])
    np.testing.assert_array_equal(shown[-2], shown[-1])


def test_a_resumed_run_records_its_checkpoint_under_the_epochs_already_trained(synthetic, tmp_path):
    """``on_start`` of a run resumed after epoch 1 records the student as epoch 1 (the flows the
    interrupted run recorded for epoch 1), not as an untrained epoch 0."""
    torch.manual_seed(0)
    save_model(cifar_resnet(14), tmp_path / "t.pt")
    loaders = get_loaders(synthetic, batch_size=50, val_size=60)
    x, _ = next(iter(loaders.test))
    cfg = config_for("dense", teacher=str(tmp_path / "t.pt"), student="resnet8", epochs=2, device="cpu",
                     out_dir=str(tmp_path / "run"))  # fmt: skip
    first = FlowRecorder(x[:2])

    def stop_after_one(rec, run):
        first(rec, run)
        raise Killed

    with pytest.raises(Killed):
        train(cfg, loaders=loaders, progress=False, verbose=False, on_start=first, callback=stop_after_one)
    assert first.epochs == [0, 1]
    resumed = FlowRecorder(x[:2])
    train(
        dataclasses.replace(cfg, resume=True),
        loaders=loaders,
        progress=False,
        verbose=False,
        on_start=resumed,
        callback=resumed,
    )
    assert resumed.epochs == [1, 2]
    for a, b in zip(resumed.student[1], first.student[1]):
        for ga, gb in zip(a, b):
            np.testing.assert_allclose(ga, gb, rtol=1e-5, atol=1e-7)
    assert not np.allclose(resumed.student[1][0][5], first.student[0][0][5])  # not the untrained student


def test_empty_recorder_raises():
    with pytest.raises(ValueError, match="empty"):
        plot_flow_evolution(FlowRecorder(torch.zeros(1, 3, 32, 32)))
