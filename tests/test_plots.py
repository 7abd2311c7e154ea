import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import seaborn  # noqa: E402, F401  (a declared test dependency: a missing one fails, never skips)

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


# --- the seaborn figures and the schematic (issue 15) -------------------------------------------


def test_class_similarity_masks_the_diagonal_and_annotates_the_rest():
    classes = ["a", "b", "c"]
    sim = np.array([[0.8, 0.15, 0.05], [0.3, 0.6, 0.1], [0.0, 0.2, 0.8]])
    fig = plots.plot_class_similarity(sim, classes)
    ax = fig.axes[0]
    values = sorted(t.get_text() for t in ax.texts)
    assert values == sorted(["0.15", "0.05", "0.30", "0.10", "0.00", "0.20"])  # 6 = 9 - diagonal
    assert [t.get_text() for t in ax.get_yticklabels()] == classes
    with pytest.raises(ValueError, match="3 classes"):
        plots.plot_class_similarity(sim[:2], classes)


def test_logit_histograms_one_panel_per_epoch_and_the_accuracies_they_show():
    real = np.array([1.0, 2.0, -1.0, 3.0])  # 3 of 4 above the threshold: 75 %
    fake = np.array([-2.0, -1.0, 0.5, -3.0])  # 3 of 4 below it: 75 %
    logits = {"plain": {0: (real * 0, fake * 0), 1: (real, fake)}, "sn": {0: (real, fake)}}
    fig = plots.plot_logit_histograms(logits)
    axes = np.array(fig.axes).reshape(2, 2)
    assert not axes[1, 1].axison  # the shorter row leaves its last panel empty
    texts = [t.get_text() for t in axes[0, 1].texts]
    assert "real: 75 %\nfake: 75 %" in texts
    assert axes[0, 1].get_title() == "plain, epoch 1"
    # with every logit at the threshold nothing is on the right side
    assert "real: 0 %\nfake: 0 %" in [t.get_text() for t in axes[0, 0].texts]


def test_item_distances_relative_to_the_first_epoch():
    rng = np.random.default_rng(0)
    d = rng.uniform(1, 2, size=(3, 2, 5))  # 3 epochs, 2 items, 5 images
    fig = plots.plot_item_distances(d, ["x->y", "y->z"], epochs=[0, 1, 2])
    assert len(fig.axes) == 2  # over epochs, and the last epoch per image
    lines = [line for line in fig.axes[0].get_lines() if len(line.get_xdata()) == 3]
    assert len(lines) == 2  # one median line per item
    first = sorted(float(line.get_ydata()[0]) for line in lines)
    assert first == pytest.approx([1.0, 1.0])  # relative: every item starts at 1
    assert len(fig.axes[0].collections) == 2  # with two items, each has its band (middle half)
    assert fig.axes[0].get_title() == "median over images, band: middle half"
    six = plots.plot_item_distances(np.tile(d, (1, 3, 1)), [f"i{k}" for k in range(6)])
    assert not six.axes[0].collections and six.axes[0].get_title() == "median over images"  # would overlap
    assert len(plots.plot_item_distances(np.tile(d, (1, 3, 1)), list("abcdef"), band=True).axes[0].collections) == 6
    assert len(plots.plot_item_distances(d[:, :, 0], ["x->y", "y->z"]).axes) == 1
    with pytest.raises(ValueError, match="2 items"):
        plots.plot_item_distances(d[:, :1], ["x->y", "y->z"])


def test_flow_pca_projects_every_image_of_every_network():
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(20, 4, 6))
    students = {"far": rng.normal(5, 1, size=(20, 4, 6)), "near": teacher + 0.01}
    fig = plots.plot_flow_pca(teacher, students, link=True)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        offsets = np.concatenate([c.get_offsets() for c in ax.collections])
        assert len(offsets) == 40  # 20 teacher points and 20 student points
        links = [line for line in ax.get_lines() if line.get_color() == "#BBBBBB"]
        assert len(links) == 20  # one link per image
    assert fig.axes[0].get_title() == "far"


def test_seed_points_and_paired_differences_draw_every_seed():
    values = {"scratch": [81.5, 81.9, 81.8], "kd": [84.3, 84.6, 84.3]}
    fig = plots.plot_seed_points(values, "accuracy", colors={"kd": "#0072B2"})
    points = fig.axes[0].collections[:2]  # one strip of points per group
    assert [len(c.get_offsets()) for c in points] == [3, 3]
    assert sorted(np.asarray(points[1].get_offsets())[:, 1]) == pytest.approx([84.3, 84.3, 84.6])
    diffs = {"kd - scratch": [2.8, 2.7, 2.5], "at - scratch": [0.2, -0.1]}
    fig = plots.plot_paired_differences(diffs)
    strips = [c for c in fig.axes[0].collections if len(c.get_offsets())]
    assert sorted(len(c.get_offsets()) for c in strips)[-2:] == [2, 3]
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_paired_differences({"empty": []})


def test_seed_curves_one_thin_line_per_seed_and_one_mean_per_group():
    curves = {"adv": [[97, 98, 99], [96, 98, 98]], "adv-dense": [[95, 93, 92], [96, 94, 93], [97, 95, 94]]}
    fig = plots.plot_seed_curves(curves, "accuracy")
    lines = [line for line in fig.axes[0].get_lines() if len(line.get_xdata()) == 3]
    assert len(lines) == 2 + 3 + 2  # five seeds, two means
    means = sorted(tuple(line.get_ydata()) for line in lines if line.get_linewidth() > 2)
    assert means == [pytest.approx((96, 94, 93)), pytest.approx((96.5, 98, 98.5))]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["adv (n=2)", "adv-dense (n=3)"]  # the legend says how many seeds
    colored = plots.plot_seed_curves(curves, "accuracy", colors={"adv": "#000000"})
    handles = {t.get_text(): h for t, h in zip(colored.axes[0].get_legend().get_texts(),
                                               colored.axes[0].get_legend().legend_handles)}  # fmt: skip
    assert handles["adv (n=2)"].get_color() in ("#000000", (0.0, 0.0, 0.0, 1.0), (0.0, 0.0, 0.0))


def test_method_schematic_draws_every_item_in_both_networks_and_one_discriminator_each():
    from matplotlib.patches import Arc, FancyBboxPatch

    from dfkd_lib.flow import align_taps, make_flow_plan

    teacher, student = cifar_resnet(26), cifar_resnet(8)
    plan = make_flow_plan(teacher, student, pairs="dense")
    mapping = align_taps(teacher.blocks_per_stage, student.blocks_per_stage)
    fig = plots.plot_method_schematic(
        teacher.tap_names(), teacher.tap_stages, student.tap_names(), student.tap_stages,
        mapping, plan.pairs, 5e-4, 0.01,
    )  # fmt: skip
    ax = fig.axes[0]
    assert sum(isinstance(p, Arc) for p in ax.patches) == 2 * len(plan.pairs)  # 12 arcs
    assert sum(isinstance(p, FancyBboxPatch) for p in ax.patches) == len(plan.pairs)
    texts = [t.get_text() for t in ax.texts]
    assert "$D_{6}$" in texts and "$D_{7}$" not in texts
    assert any("0.0005" in t and "0.01" in t for t in texts)  # the weights in use
    with pytest.raises(ValueError, match="pairs"):
        plots.plot_method_schematic(["a", "b"], [0, 1], ["a", "b"], [0, 1], [0, 1], [(1, 0)], 1, 1)


def test_method_schematic_names_the_gradient_rule_and_the_normalised_terms_of_the_second_recipes():
    from dfkd_lib.flow import align_taps, make_flow_plan
    from dfkd_lib.train import config_for

    teacher, student = cifar_resnet(26), cifar_resnet(8)
    plan = make_flow_plan(teacher, student, pairs="dense")
    cfg = config_for("adv-dense")
    fig = plots.plot_method_schematic(
        teacher.tap_names(), teacher.tap_stages, student.tap_names(), student.tap_stages,
        align_taps(teacher.blocks_per_stage, student.blocks_per_stage), plan.pairs,
        cfg.lambda_flow, cfg.lambda_adv, cfg.gan_loss, flow_grad_ratio=cfg.flow_grad_ratio,
        flow_norm=cfg.flow_norm, d_input=cfg.d_input,
    )  # fmt: skip
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any(f"gradient ratio {cfg.flow_grad_ratio:g}" in t for t in texts)
    assert not any("$\\lambda_F$ = 0" in t for t in texts)  # the configured weight is unused
    assert sum("/ \\Vert G^T_k \\Vert_F^2" in t for t in texts) == 2  # the flow term and the objective
    # unit inputs: defined on the right and written with a tilde in the objective
    assert any("G_k / \\Vert G_k \\Vert_F" in t for t in texts)
    (objective,) = [t for t in texts if t.startswith("$\\mathcal{L}_S")]
    assert "D_k(\\tilde G^S_k)" in objective


def test_method_schematic_writes_what_the_discriminators_read():
    from dfkd_lib.flow import align_taps, make_flow_plan

    teacher, student = cifar_resnet(14), cifar_resnet(8)
    plan = make_flow_plan(teacher, student, pairs="dense")
    args = (teacher.tap_names(), teacher.tap_stages, student.tap_names(), student.tap_stages,
            align_taps(teacher.blocks_per_stage, student.blocks_per_stage), plan.pairs, 1.0, 1.0)  # fmt: skip
    objectives = {}
    for d_input in ("raw", "scaled", "unit"):
        texts = [t.get_text() for t in plots.plot_method_schematic(*args, d_input=d_input).axes[0].texts]
        (objectives[d_input],) = [t for t in texts if t.startswith("$\\mathcal{L}_S")]
        plt.close("all")
        if d_input == "scaled":
            assert any("G_k / s_k" in t and "RMS norm" in t for t in texts)
    assert "D_k(G^S_k)" in objectives["raw"]
    assert "D_k(\\tilde G^S_k)" in objectives["scaled"] and "D_k(\\tilde G^S_k)" in objectives["unit"]
    with pytest.raises(ValueError, match="d_input"):
        plots.plot_method_schematic(*args, d_input="norm")


def _line(ax, label):
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return line


def test_flow_distance_by_item_plots_the_seed_means_and_the_ratio_to_the_reference():
    dists = {"scratch": [[1.0, 2.0, 4.0], [3.0, 2.0, 2.0]], "dense": [[0.5, 1.0, 1.5], [1.5, 1.0, 1.5]]}
    fig = plots.plot_flow_distance_by_item(dists, ["a", "b", "c"])
    left, right = fig.axes
    np.testing.assert_allclose(_line(left, "scratch (n=2)").get_ydata(), [2.0, 2.0, 3.0])
    np.testing.assert_allclose(_line(left, "dense (n=2)").get_ydata(), [1.0, 1.0, 1.5])
    seeds = [ln.get_ydata() for ln in left.get_lines() if ln.get_label() == "_seed"]
    assert len(seeds) == 4 and [1.0, 2.0, 4.0] in [list(s) for s in seeds]
    np.testing.assert_allclose(_line(right, "dense").get_ydata(), [0.5, 0.5, 0.5])
    assert [t.get_text() for t in left.get_xticklabels()] == ["a", "b", "c"]
    # without the reference: one panel
    assert len(plots.plot_flow_distance_by_item({"dense": dists["dense"]}, ["a", "b", "c"]).axes) == 1
    with pytest.raises(ValueError, match="3 items"):
        plots.plot_flow_distance_by_item({"kd": [[1.0, 2.0]]}, ["a", "b", "c"])
    # an item a method has not: NaN, left out of its line and of its ratio
    nan = float("nan")
    fig = plots.plot_flow_distance_by_item({**dists, "fsp": [[1.0, nan, 1.5], [3.0, nan, 1.5]]}, ["a", "b", "c"])
    np.testing.assert_allclose(_line(fig.axes[1], "fsp").get_ydata(), [1.0, nan, 0.5])


def test_flow_distance_by_item_reads_the_method_screen_logs():
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "results" / "method-screen"
    logs = {m: [json.loads((root / f"{m}-s{s}" / "log.jsonl").read_text().splitlines()[-1]) for s in (0, 1)]
            for m in ("scratch", "kd")}  # fmt: skip
    fig = plots.plot_flow_distance_by_item({m: [r["flow_dist"] for r in rs] for m, rs in logs.items()},
                                           [f"item {k}" for k in range(6)])  # fmt: skip
    want = np.mean([r["flow_dist"] for r in logs["kd"]], axis=0)
    np.testing.assert_allclose(_line(fig.axes[0], "kd (n=2)").get_ydata(), want)


def test_discriminator_over_time_averages_seeds_at_shared_epochs_and_skips_flow_only_epochs():
    def rec(epoch, real, fake, lr, lf):
        return {"epoch": epoch, "d_acc_real": real, "d_acc_fake": fake, "d_logit_real": lr, "d_logit_fake": lf}

    seed0 = [{"epoch": 1, "loss_flow": 0.3}, rec(2, 60, 80, 1.0, -1.0), rec(3, 70, 90, 2.0, -1.0)]
    seed1 = [{"epoch": 1, "loss_flow": 0.3}, rec(2, 80, 100, 0.0, 0.0)]  # cut off after epoch 2
    fig = plots.plot_discriminator_over_time({"adv-dense": [seed0, seed1]})
    acc, margin = fig.axes
    real = _line(acc, "adv-dense (n=2): real")
    assert list(real.get_xdata()) == [2] and list(real.get_ydata()) == [70.0]
    assert list(_line(acc, "adv-dense (n=2): fake").get_ydata()) == [90.0]
    assert list(_line(margin, "adv-dense (n=2)").get_ydata()) == [1.0]  # (2 + 0) / 2
    one = plots.plot_discriminator_over_time({"adv-dense": [seed0]})
    assert list(_line(one.axes[1], "adv-dense (n=1)").get_ydata()) == [2.0, 3.0]
    with pytest.raises(ValueError):
        plots.plot_discriminator_over_time({})


def test_flow_compare_shares_a_colour_scale_per_item_and_gives_relative_distances():
    rng = np.random.default_rng(0)
    teacher = [rng.normal(size=(4, 4, 6)), rng.normal(size=(6, 8))]  # a batch of 4, then one matrix
    near = [teacher[0].mean(0) * 0.9, teacher[1] + 0.1]
    fig = plots.plot_flow_compare({"teacher": teacher, "fsp": near, "zero": [np.zeros((4, 6)), np.zeros((6, 8))]},
                                  names=["a", "b"])  # fmt: skip
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 6
    grid = np.array(panels).reshape(3, 2)
    assert grid[0, 0].get_title() == "a  (4×6)" and grid[0, 0].get_ylabel() == "teacher"
    t0 = teacher[0].mean(0)
    want = ((t0 - near[0]) ** 2).sum() / (t0**2).sum()  # 0.01
    assert grid[1, 0].get_title() == f"rel. distance {want:.2f}"
    assert grid[2, 1].get_title() == "rel. distance 1.00"  # an all-zero matrix
    for c in range(2):  # one colour scale per column
        assert len({im.get_clim() for ax in grid[:, c] for im in ax.images}) == 1
    with pytest.raises(ValueError, match="differ from those of 'teacher'"):
        plots.plot_flow_compare({"teacher": teacher, "bad": [np.zeros((4, 4))]})


def test_flow_over_time_divides_by_the_reference_per_epoch_and_puts_a_flow_only_stage_first():
    nan = float("nan")
    scratch = [[{"epoch": 1, "flow_dist": [1.0, 2.0]}, {"epoch": 2, "flow_dist": [1.0, 1.0]}],
               [{"epoch": 1, "flow_dist": [3.0, 2.0]}, {"epoch": 2, "flow_dist": [1.0, 1.0]}]]  # fmt: skip
    dense = [[{"epoch": 1, "flow_dist": [1.0, 1.0], "loss_flow": 0.5},
              {"epoch": 2, "flow_dist": [0.5, 0.25], "loss_flow": 0.25}]]  # fmt: skip
    # fsp: one flow-only epoch (stage 1), then two of cross-entropy; only the first item, and no
    # flow term once the labels take over
    fsp = [[{"epoch": 1, "stage": 1, "flow_dist": [0.5, nan], "loss_flow": 0.1},
            {"epoch": 2, "stage": 2, "flow_dist": [1.0, nan]},
            {"epoch": 3, "stage": 2, "flow_dist": [0.5, nan]}]]  # fmt: skip
    logs = {"scratch": scratch, "dense": dense, "fsp": fsp}
    got = plots.flows_over_time(logs)
    # epoch 1: scratch's mean is [2, 2], so (1/2 + 1/2) / 2; epoch 2: (0.5 + 0.25) / 2
    assert got["dense"]["distance"][0] == [1, 2] and np.allclose(got["dense"]["distance"][1], [0.5, 0.375])
    assert got["fsp"]["flow"] == ([0], [0.1]) and got["dense"]["flow"] == ([1, 2], [0.5, 0.25])
    assert got["scratch"] == {}  # the reference: no distance to itself, no flow term
    fig = plots.plot_flow_over_time(logs)
    ratio, flow = fig.axes
    d = _line(ratio, "dense (n=1)")
    # epoch 1: scratch's mean is [2, 2], so (1/2 + 1/2) / 2; epoch 2: (0.5 + 0.25) / 2
    assert list(d.get_xdata()) == [1, 2] and np.allclose(d.get_ydata(), [0.5, 0.375])
    assert _line(ratio, "scratch (n=2)").get_ydata()[0] == 1.0  # the reference
    f = _line(ratio, "fsp (n=1)")  # its stage-1 epoch has no scratch epoch beside it
    assert list(f.get_xdata()) == [1, 2] and np.allclose(f.get_ydata(), [0.5, 0.5])
    assert list(_line(flow, "fsp (n=1)").get_xdata()) == [0] and list(_line(flow, "fsp (n=1)").get_ydata()) == [0.1]
    assert list(_line(flow, "dense (n=1)").get_ydata()) == [0.5, 0.25]
    assert flow.get_yscale() == "log" and not [ln for ln in flow.get_lines() if "scratch" in ln.get_label()]
    plt.close(fig)
    for f in (plots.flows_over_time, plots.plot_flow_over_time):
        with pytest.raises(ValueError, match="reference"):
            f({"dense": dense})
    three = [[{"epoch": 1, "flow_dist": [1.0, 1.0, 1.0]}]]  # a log of another pair set, not placed on the items
    with pytest.raises(ValueError, match="same items"):
        plots.flows_over_time({"scratch": scratch, "sparse": three})


def test_flow_figures_give_the_per_image_losses_of_a_batch_not_those_of_its_mean():
    import torch

    from dfkd_lib.losses import flow_loss, relative_flow_errors

    g = torch.Generator().manual_seed(0)
    gt = torch.randn(8, 4, 6, generator=g)
    gs = gt + 0.7 * torch.randn(8, 4, 6, generator=g)  # the images' differences largely cancel in the mean
    title = plots.plot_flow_pair(gt, gs).axes[2].get_title()
    assert title.endswith(f"= {float(flow_loss([gt], [gs])):.3g} (image mean)")
    mean_only = float(((gt.mean(0) - gs.mean(0)) ** 2).sum())
    assert mean_only < 0.5 * float(flow_loss([gt], [gs]))  # so the two readings differ
    fig = plots.plot_flow_compare({"teacher": [gt], "student": [gs]})
    panels = [ax for ax in fig.axes if ax.images]
    assert panels[1].get_title() == f"rel. distance {float(relative_flow_errors([gt], [gs])[0]):.2f}"
    plt.close("all")


def test_a_method_has_one_colour_in_every_figure():
    from matplotlib.colors import to_hex

    method = {k: to_hex(v) for k, v in plots.METHOD_COLORS.items()}
    hist = [{"epoch": 1, "val_acc": 50.0}, {"epoch": 2, "val_acc": 60.0}]
    fig = plots.plot_history({"run": hist, "dense": hist, "scratch (10% labels)": hist}, keys=["val_acc"])
    colours = {line.get_label(): to_hex(line.get_color()) for line in fig.axes[0].get_lines()}
    assert colours["dense"] == method["dense"]
    assert colours["scratch (10% labels)"] == method["scratch"]
    assert colours["run"] not in method.values()  # not a method's
    fig = plots.plot_grouped_bars({"fsp\n(shipped)": [1.0, 2.0], "kd": [2.0, 1.0]}, ["a", "b"])
    bars = {c.get_label(): to_hex(c.patches[0].get_facecolor()) for c in fig.axes[0].containers}
    assert bars == {"fsp\n(shipped)": method["fsp"], "kd": method["kd"]}
    fig = plots.plot_seed_points({"adv-dense": [1.0, 2.0], "kd": [3.0]}, colors={"kd": "#000000"})
    points = [to_hex(c.get_facecolor()[0]) for c in fig.axes[0].collections if len(c.get_offsets())]
    assert method["adv-dense"] in points and "#000000" in points  # given colours win
    plt.close("all")


def test_history_panels_name_their_quantity_and_keep_small_terms_visible():
    h = [{"epoch": e, "stage": 1 if e <= 2 else 2, "loss_ce": 2.0 / e, "loss_flow": 0.02 / e, "val_acc": 10.0 * e,
          "d_acc_real": 90.0, "d_acc_fake": 95.0} for e in range(1, 6)]  # fmt: skip
    fig = plots.plot_history({"dense": h, "adv-dense": h})
    loss, acc, disc = fig.axes[:3]
    assert loss.get_yscale() == "log"  # the flow term is a hundredth of the cross-entropy
    assert acc.get_ylabel() == "validation accuracy (%)"  # one quantity, compared across runs
    assert any(list(line.get_ydata()) == [50, 50] for line in disc.get_lines())  # a critic at chance
    spans = [p for p in loss.patches if p.get_label() == "_flow only"]
    assert len(spans) == 1 and spans[0].get_x() == pytest.approx(0.5)  # epochs 1-2 shaded
    one = plots.plot_history(h, keys=["loss_ce"])
    assert one.axes[0].get_ylabel() == "cross-entropy loss (per image)" and one.axes[0].get_yscale() == "linear"
    plt.close("all")


def test_log_axes_are_labelled_in_plain_numbers():
    fig = plots.plot_grouped_bars({"a": [0.6, 4.0], "b": [0.9, 3.0]}, ["x", "y"], log=True)
    ax = fig.axes[0]
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels and all("times" not in t and "^" not in t for t in labels)  # "0.6", not "6×10^{-1}"
    assert {"1", "2", "3"} <= set(labels)
    plt.close("all")


def test_two_series_of_one_method_get_two_colours_and_negative_losses_stay_visible():
    from matplotlib.colors import to_hex

    hist = [{"epoch": 1, "val_acc": 50.0}, {"epoch": 2, "val_acc": 60.0}]
    fig = plots.plot_history({"adv-dense, all labels": hist, "adv-dense, 10 % labels": hist, "KD": hist},
                             keys=["val_acc"])  # fmt: skip
    colours = {line.get_label(): to_hex(line.get_color()) for line in fig.axes[0].get_lines()}
    assert colours["adv-dense, all labels"] == to_hex(plots.METHOD_COLORS["adv-dense"])
    assert colours["adv-dense, 10 % labels"] != colours["adv-dense, all labels"]
    assert colours["KD"] == to_hex(plots.METHOD_COLORS["kd"])  # whatever its case
    hinge = [{"epoch": e, "loss_ce": 2.0 / e, "loss_adv": -0.001 * e} for e in (1, 2, 3)]
    ax = plots.plot_history(hinge).axes[0]
    assert ax.get_yscale() == "linear"  # a log axis would hide the negative adversarial loss
    plt.close("all")


def test_family_styles_give_a_hue_per_family_and_a_shade_and_marker_per_member():
    from matplotlib.colors import to_rgb

    styles = plots.family_styles({"d": "dense", "a1": "adv-dense", "a2": "adv-dense", "a3": "adv-dense", "x": "other"})
    assert styles["d"]["color"] == plots.METHOD_COLORS["dense"].lower()  # a family of one keeps its hue
    shades = [np.array(to_rgb(styles[n]["color"])) for n in ("a1", "a2", "a3")]
    assert shades[0].sum() < shades[1].sum() < shades[2].sum()  # dark to light, in order
    base = np.array(to_rgb(plots.METHOD_COLORS["adv-dense"]))
    np.testing.assert_allclose(shades[0], base * 0.75, atol=1 / 255)  # a quarter towards black
    np.testing.assert_allclose(shades[2], (base + 1) / 2, atol=1 / 255)  # halfway to white
    assert len({styles[n]["marker"] for n in ("a1", "a2", "a3")}) == 3
    assert styles["x"]["color"] not in {s["color"] for n, s in styles.items() if n != "x"}
    assert plots.family_styles({"x": "other"}, colors={"other": "#123456"})["x"]["color"] == "#123456"


def test_flow_grid_titles_each_panel_with_its_size_and_hides_the_empty_ones():
    flows = [np.ones((2, 4, 8)), np.zeros((16, 16)), np.eye(3)]
    fig = plots.plot_flow_grid(flows, names=["a", "b", "c"], ncols=2, title="t")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["a  (4×8)", "b  (16×16)", "c  (3×3)"]
    assert sum(not ax.get_visible() for ax in fig.axes) == 1  # 3 items on a 2 x 2 grid
    assert fig._suptitle.get_text() == "t"
    with pytest.raises(ValueError, match="3 flow items but 2 names"):
        plots.plot_flow_grid(flows, names=["a", "b"])
    with pytest.raises(ValueError, match="no flow items"):
        plots.plot_flow_grid([])
    plt.close("all")


def test_show_images_one_panel_an_image_titled_with_its_class_and_normalisation_undone():
    x = np.zeros((3, 3, 4, 4))  # (N, 3, H, W) floats, normalised with mean 0.5 and std 0.25
    x[1] = 2.0  # 0.5 + 0.25 * 2 = 1.0: white
    fig = plots.show_images(x, labels=[2, 0, 1], classes=["cat", "dog", "owl"], ncols=2, mean=(0.5,) * 3,
                            std=(0.25,) * 3)  # fmt: skip
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in shown] == ["owl", "cat", "dog"] and len(fig.axes) == 4
    assert shown[0].images[0].get_array().shape == (4, 4, 3)  # channels last for imshow
    assert np.allclose(shown[0].images[0].get_array(), 0.5) and np.allclose(shown[1].images[0].get_array(), 1.0)
    with pytest.raises(ValueError, match="4-d"):
        plots.show_images(np.zeros((4, 4, 3)))
    plt.close("all")


def test_tap_alignment_puts_each_student_tap_under_its_teacher_tap():
    t, s = cifar_resnet(14), cifar_resnet(8)
    mapping = [0, 2, 4, 6]  # align_taps(2, 1)
    fig = plots.plot_tap_alignment(t.tap_names(), t.tap_stages, s.tap_names(), s.tap_stages, mapping)
    ax = fig.axes[0]
    teacher_dots, student_dots = ax.collections[-2], ax.collections[-1]
    assert teacher_dots.get_offsets()[:, 0].tolist() == list(range(len(t.tap_stages)))
    assert student_dots.get_offsets()[:, 0].tolist() == mapping
    assert [line.get_xdata()[0] for line in ax.lines] == mapping  # one dashed line a match
    with pytest.raises(ValueError, match="one entry per student tap"):
        plots.plot_tap_alignment(t.tap_names(), t.tap_stages, s.tap_names(), s.tap_stages, mapping[:3])
    plt.close("all")


def test_gram_blocks_outline_the_items_and_label_the_taps():
    names, channels = ["stem", "s1", "s2"], [2, 2, 4]
    gram = np.arange(8 * 4, dtype=float).reshape(8, 4)  # columns: the first two taps
    fig = plots.plot_gram_blocks(gram, names, channels, items=[(1, 0), (2, 1)])
    ax = fig.axes[0]
    boxes = [(p.get_xy(), p.get_width(), p.get_height()) for p in ax.patches]
    assert boxes == [((-0.5, 1.5), 2, 2), ((1.5, 3.5), 2, 4)]  # (x, y) of the top-left corner, in cells
    assert [tick.get_text() for tick in ax.get_yticklabels()] == names
    assert [tick.get_text() for tick in ax.get_xticklabels()] == names[:2]  # columns hold two taps
    with pytest.raises(ValueError, match="does not fit channels"):
        plots.plot_gram_blocks(gram, names, [2, 2, 2])
    plt.close("all")
