import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from dfkd_lib import plots  # noqa: E402
from dfkd_lib.flow import make_pairs  # noqa: E402
from dfkd_lib.models import cifar_resnet  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_pair_diagram_one_legend_per_figure():
    net = cifar_resnet(8)
    names, stages = net.tap_names(), net.tap_stages
    fig = plots.plot_pair_diagram(names, make_pairs("dense", stages), stages, title="dense")
    assert len(fig.legends) == 1
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["stem", "stage 1", "stage 2", "stage 3"]
    # a mapping draws one panel per pair set, still one legend
    sets = {k: make_pairs(k, stages) for k in ("sparse", "chain", "dense")}
    fig = plots.plot_pair_diagram(names, sets, stages)
    assert len(fig.axes) == 3 and len(fig.legends) == 1


def test_pair_diagram_on_given_axes_does_not_repeat_figure_legends():
    net = cifar_resnet(8)
    names, stages = net.tap_names(), net.tap_stages
    fig, axes = plt.subplots(1, 2)
    for ax, kind in zip(axes, ("sparse", "dense")):
        plots.plot_pair_diagram(names, make_pairs(kind, stages), stages, title=kind, ax=ax)
    assert not fig.legends and all(ax.get_legend() is not None for ax in axes)
    fig, axes = plt.subplots(1, 2)
    for ax, kind in zip(axes, ("sparse", "dense")):
        plots.plot_pair_diagram(names, make_pairs(kind, stages), stages, title=kind, ax=ax, legend=False)
    plots.stage_legend(fig, stages)
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in axes)
    # the arcs: one per item
    assert len(axes[1].patches) == len(make_pairs("dense", stages))


def test_pair_diagram_bad_input():
    net = cifar_resnet(8)
    with pytest.raises(ValueError, match="tap names"):
        plots.plot_pair_diagram(net.tap_names()[:2], [(0, 1)], net.tap_stages)
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="single pair set"):
        plots.plot_pair_diagram(net.tap_names(), {"a": [(0, 1)], "b": [(0, 2)]}, net.tap_stages, ax=ax)
