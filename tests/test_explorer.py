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
    widget = flow_explorer(rec)
    assert isinstance(widget, W.VBox) and len(widget.children) == 4  # image and item, who, epoch, the figure


def test_empty_recorder_raises():
    with pytest.raises(ValueError, match="empty"):
        plot_flow_evolution(FlowRecorder(torch.zeros(1, 3, 32, 32)))
