"""Watching flows change during training: a recorder, a static figure and an interactive explorer.

:class:`FlowRecorder` is a ``callback`` for :func:`dfkd_lib.train.train` (and an ``on_start``
hook) that keeps, after every epoch, the teacher's and the student's flow matrices for a few
fixed images. :func:`plot_flow_evolution` draws them as a static figure (for the rendered
book); :func:`flow_explorer` is the same data behind ipywidgets (image, item, teacher or student
or difference, epoch) for Jupyter and Colab.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from .plots import _heatmap

__all__ = ["FlowRecorder", "plot_flow_evolution", "flow_explorer"]


class FlowRecorder:
    """Keeps the flow matrices of fixed images, per epoch, during :func:`~dfkd_lib.train.train`.

    Use it as both hooks: ``train(cfg, on_start=rec, callback=rec)``; ``on_start`` records the
    untrained student as epoch 0 (or, for a resumed run, the student of its checkpoint under the
    number of epochs already trained). The run must have a flow plan: it has a teacher, and its method
    uses flows (``fsp``, ``dense``, ``adv`` and the methods built on them) or it probes them
    (``probe_images > 0``, the default: ``kd``, ``at``, or ``scratch`` given a teacher).

    Args:
        images: the ``(N, 3, 32, 32)`` images to follow, normalised as the loaders give them.
        labels: their labels, for titles (optional).

    Attributes:
        images: the ``(N, 3, 32, 32)`` normalised images.
        names: name of each flow item.
        teacher: ``(N, items)`` list of numpy matrices, one list per image.
        student: ``{epoch: per-image list of per-item matrices}``.
    """

    def __init__(self, images: Tensor, labels: Sequence[int] | None = None) -> None:
        self.images = images
        self.labels = list(labels) if labels is not None else None
        self.names: list[str] = []
        self.teacher: list[list[np.ndarray]] = []
        self.student: dict[int, list[list[np.ndarray]]] = {}

    @torch.no_grad()
    def _flows(self, model: torch.nn.Module, run: Any, teacher: bool) -> list[list[np.ndarray]]:
        was_training = model.training
        model.eval()
        x = self.images.to(run.device)
        if run.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        _, taps = model(x, return_taps=True)
        model.train(was_training)
        taps = [t.float() for t in taps]
        flows = run.plan.teacher_flows(taps) if teacher else run.plan.student_flows(taps)
        per_item = [g.cpu().numpy() for g in flows]
        return [[item[i] for item in per_item] for i in range(len(x))]

    def __call__(self, rec_or_run: Any, run: Any = None) -> None:
        """``on_start(run)`` records the student before the run's next epoch (epoch 0 for a new run;
        a resumed run's student after the epochs its history holds); ``callback(record, run)``
        records that epoch."""
        if run is None:  # called as on_start(run)
            run = rec_or_run
            epoch = len(run.history)  # the epochs already trained (a resumed run's checkpoint)
        else:
            epoch = rec_or_run["epoch"]
        if run.plan is None:
            raise ValueError(f"method {run.cfg.method!r} has no flow items to record")
        if not self.teacher:
            self.names = list(run.plan.names)
            self.teacher = self._flows(run.teacher, run, teacher=True)
        self.student[epoch] = self._flows(run.student, run, teacher=False)

    @property
    def epochs(self) -> list[int]:
        """The recorded epochs, in order (0: the untrained student; a resumed run starts later)."""
        return sorted(self.student)

    def mean_flow(self, k: int, epoch: int | None = None) -> np.ndarray:
        """Item ``k``'s matrix averaged over the images: the teacher's, or the student's at ``epoch``."""
        if epoch is not None and epoch not in self.student:
            raise KeyError(f"epoch {epoch} was not recorded; recorded: {self.epochs}")
        mats = self.teacher if epoch is None else self.student[epoch]
        return np.mean([m[k] for m in mats], axis=0)

    def distance(self, epoch: int) -> list[float]:
        """Per item, the squared Frobenius distance between the teacher's and the student's mean
        matrices at ``epoch``."""
        return [float(np.sum((self.mean_flow(k) - self.mean_flow(k, epoch)) ** 2)) for k in range(len(self.names))]


def plot_flow_evolution(
    rec: FlowRecorder, image: int | None = None, items: Sequence[int] | None = None, epochs: Sequence[int] | None = None
) -> Figure:
    """Static figure: one column per flow item; rows are the teacher, the student at a few
    epochs, and the last difference (teacher minus student).

    Args:
        rec: a filled :class:`FlowRecorder`.
        image: which image (default: the mean over the recorded images).
        items: which flow items (default: all).
        epochs: which recorded epochs (default: first, middle and last).
    """
    import matplotlib.pyplot as plt

    if not rec.student:
        raise ValueError("the recorder is empty: pass it to train() as on_start= and callback=")
    items = list(range(len(rec.names))) if items is None else list(items)
    all_epochs = rec.epochs
    if epochs is None:
        epochs = sorted({all_epochs[0], all_epochs[len(all_epochs) // 2], all_epochs[-1]})

    def get(mats: list[list[np.ndarray]], k: int) -> np.ndarray:
        return mats[image][k] if image is not None else np.mean([m[k] for m in mats], axis=0)

    rows = ["teacher"] + [f"student,\nepoch {e}" for e in epochs] + [f"teacher − student\nepoch {epochs[-1]}"]
    # about 1.45 inches a column, so that six items fit a book page without being scaled down
    fig, axes = plt.subplots(
        len(rows),
        len(items),
        figsize=(1.45 * len(items) + 1.0, 1.3 * len(rows) + 0.4),
        layout="constrained",
        squeeze=False,
    )
    for c, k in enumerate(items):
        gt = get(rec.teacher, k)
        gs = [get(rec.student[e], k) for e in epochs]
        lo = float(min(gt.min(), *(g.min() for g in gs)))
        hi = float(max(gt.max(), *(g.max() for g in gs)))
        panels = [gt, *gs]
        for r, g in enumerate(panels):
            _heatmap(axes[r, c], g, None, False, lo, hi, colorbar=r == len(panels) - 1, labels=False, aspect="auto")
        _heatmap(axes[-1, c], gt - gs[-1], None, True, colorbar=True, labels=False, aspect="auto")
        axes[0, c].set_title(rec.names[k], fontsize=9.5)
    for r, name in enumerate(rows):
        axes[r, 0].set_ylabel(name, fontsize=9.5)
    for ax in fig.axes[len(rows) * len(items) :]:  # the colour bars
        ax.tick_params(labelsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    which = "mean over the recorded images" if image is None else f"image {image}"
    fig.suptitle(
        f"Flow matrices during training ({which});\nteacher and student share one scale per column, "
        "the difference row has its own",
        fontsize=11,
    )
    return fig


def flow_explorer(rec: FlowRecorder, classes: Sequence[str] | None = None) -> Any:
    """Interactive explorer (ipywidgets): pick an image, a flow item, teacher / student /
    difference and an epoch. Returns the widget; it needs a live kernel (Jupyter, Colab)."""
    import ipywidgets as W
    import matplotlib.pyplot as plt
    from IPython.display import display

    from .plots import plot_flow_matrix

    if not rec.student:
        raise ValueError("the recorder is empty: pass it to train() as on_start= and callback=")
    n_img = len(rec.teacher)
    labels = rec.labels or [None] * n_img
    img_opts = [("mean of all", -1)] + [
        (f"{i}: {classes[labels[i]]}" if classes is not None and labels[i] is not None else f"image {i}", i)
        for i in range(n_img)
    ]
    image = W.Dropdown(options=img_opts, value=-1, description="image")
    item = W.Dropdown(options=[(n, k) for k, n in enumerate(rec.names)], value=len(rec.names) - 1, description="item")
    who = W.ToggleButtons(options=["teacher", "student", "difference"], value="student", description="show")
    epoch = W.SelectionSlider(options=rec.epochs, value=rec.epochs[-1], description="epoch")
    out = W.Output()

    def draw(*_):
        def get(mats):
            return mats[image.value][item.value] if image.value >= 0 else np.mean([m[item.value] for m in mats], 0)

        gt, gs = get(rec.teacher), get(rec.student[epoch.value])
        g = {"teacher": gt, "student": gs, "difference": gt - gs}[who.value]
        with out:
            out.clear_output(wait=True)
            fig = plot_flow_matrix(
                g, title=f"{who.value}: {rec.names[item.value]}", diverging=who.value == "difference"
            )
            display(fig)
            plt.close(fig)

    for w in (image, item, who, epoch):
        w.observe(draw, names="value")
    draw()
    return W.VBox([W.HBox([image, item]), who, epoch, out])
