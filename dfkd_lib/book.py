"""A small helper for the book's chapters (in the spirit of d2l's ``d2l`` module).

Every chapter starts with::

    PROFILE = None  # "quick" (CPU), "gpu" (minutes on a GPU) or "full" (paper scale); None picks by hardware
    ch = book.setup(PROFILE)

:func:`setup` seeds everything, picks the device, loads the data and returns a
:class:`Chapter` holding the *profile knobs* (epochs, batches per epoch, test images
evaluated, ...) that the chapter's experiments use, so that the same cells run in minutes on
a CPU (``quick``), in minutes on a GPU (``gpu``: the CPU protocol's 15 epochs of all the
training images) or, only when asked for, at paper scale (``full``: hours per chapter).
Before a chapter trains, :meth:`Chapter.expect` prints how long the runs should take (the rule
is :func:`estimate_seconds`'s).

Environment variables:

``DFKD_PROFILE``
    the profile when ``setup`` is given none (default: ``gpu`` on CUDA, else ``quick``).
``DFKD_REQUIRE_DATA``
    ``1`` makes a missing CIFAR-10 an error instead of falling back to generated data (CI sets it).
``DFKD_TEACHER``
    a teacher model/checkpoint file, used when no pretrained teacher is shipped.

Chapters take :func:`glue` from here: myst-nb's, which hands values to the prose when the book
is built, or, where myst-nb is not installed (Colab), one that shows every glued value.
"""

from __future__ import annotations

import dataclasses
import functools
import html
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import DataNotFoundError, DatasetArrays, Loaders, get_loaders, load_cifar, make_synthetic
from .models import CifarResNet, frozen
from .train import TrainConfig, config_for, pick_device, seed_everything

__all__ = [
    "PROFILES",
    "estimate_seconds",
    "device_throughput",
    "gpu_step_overhead",
    "profile_run_seconds",
    "TEACHER_NAME",
    "REPOSITORY_URL",
    "Chapter",
    "setup",
    "in_colab",
    "glue",
    "repository",
    "is_checkout",
]

PROFILES = ("quick", "gpu", "full")
TEACHER_NAME = "resnet26_cifar10"  # the pretrained teacher every chapter uses

#: Knobs of each profile. ``quick``: each chapter runs in about 3 minutes on a 2-core CPU with
#: the real CIFAR-10. ``gpu`` (the default on a GPU): the CPU protocol's schedule, 15 epochs of
#: all 351 batches of the 45k training images, one seed; by :func:`estimate_seconds`, a run takes
#: one to five minutes on a T4 (:func:`profile_run_seconds`; the adversarial methods longest) and
#: a chapter a few runs. ``full``:
#: paper scale, only when asked for (Yim et al. trained 64k iterations at batch 128: 182 epochs,
#: as in ``recipes/``; three seeds for every reported number): hours per chapter.
_KNOBS: dict[str, dict[str, Any]] = {
    "quick": {"epochs": 3, "max_train_batches": 40, "eval_size": 2000, "seeds": (0,)},
    "gpu": {"epochs": 15, "max_train_batches": None, "eval_size": None, "seeds": (0,)},
    "full": {"epochs": 182, "max_train_batches": None, "eval_size": None, "seeds": (0, 1, 2)},
}

# --- how long a run takes: the rule behind the estimates the chapters print -------------------

#: Effective training throughput of one CPU thread in the chapters' short training cells, FLOP/s,
#: chosen so that the times they print come close to the times they take (start-up, small
#: epochs and evaluation included; chapter 4's two runs: 1.8 min estimated and measured,
#: December 2026). A long run does more per second: the 60-epoch protocol's one-thread runs
#: trained ResNet-8 at about 1,070 images/s and ResNet-26 at about 330 (3 x 24.5 and 3 x 109
#: MFLOP per image: about 80 and 110 GFLOP/s per thread).
CPU_FLOPS_PER_THREAD = 50e9
#: Peak float32 FLOP/s of common GPUs (the datasheets), looked up by name; unknown GPUs count as a T4.
GPU_FP32_PEAK = {"T4": 8.1e12, "L4": 30.3e12, "A10": 31.2e12, "V100": 15.7e12, "A100": 19.5e12, "H100": 67e12,
                 "H200": 67e12, "RTX 4090": 82.6e12, "RTX 3090": 35.6e12}  # fmt: skip
#: The share of that peak these small networks reach: their 16-64-channel convolutions on 32 x 32
#: maps are too small to fill a GPU (so mixed precision, whose tensor-core peak is 8x higher on a
#: T4, is counted as float32).
GPU_EFFICIENCY = 0.25
#: Milliseconds per training step measured on an H200 (``benchmarks/bench_train.py --device cuda``,
#: run by ``scripts/gpu_check.sh``: ResNet-26 -> ResNet-8, batch 128, bfloat16 autocast; see
#: ``benchmarks/results/gpu_check.md``). Networks this small keep a GPU waiting for the processor
#: that launches their kernels: a step took 15 to 25 microseconds per ATen operation, whatever its
#: arithmetic, and the discriminators' many small operations (three MLP layers per flow item, run
#: on real and fake flows, spectral norm, the R1 penalty) make an ``adv-dense`` step four times
#: as long as a ``kd`` step for 1.06 times its FLOPs.
GPU_STEP_MS_H200 = {"scratch": 6.7, "kd": 10.7, "at": 12.4, "fsp": 12.5, "dense": 16.2, "kd-dense": 16.9,
                    "adv": 44.2, "adv-dense": 44.6, "kd-adv-dense": 42.9}  # fmt: skip
#: Step time of a method beyond its FLOPs, relative to ``kd`` (measured on the CPU,
#: ``benchmarks/results/bench_train_cpu.txt``: the flow items and discriminators are small kernels).
METHOD_OVERHEAD = {"adv-dense": 1.25, "adv": 1.25, "dense": 1.13, "fsp": 1.15}


def forward_flops(model: torch.nn.Module) -> float:
    """FLOPs of one forward pass of one 32 x 32 image (2 per multiply-accumulate)."""
    from .models import count_macs

    return 2.0 * count_macs(model)


def _table_value(table: dict[str, float], method: str, default: float) -> float:
    """``table[method]``; a method not in the table (say a new combination) counts as the longest
    entry whose name it contains (of equally long ones, the largest value), else as ``default``."""
    if method in table:
        return table[method]
    inside = [k for k in table if k in method]
    return table[max(inside, key=lambda k: (len(k), table[k]))] if inside else default


def gpu_step_overhead(method: str) -> float:
    """Seconds per training step of ``method`` on a GPU that do not shrink with its arithmetic:
    the H200's measured step (:data:`GPU_STEP_MS_H200`) less the time :func:`estimate_seconds`
    counts for the step's FLOPs there, so that the rule gives the measured step on an H200 and
    adds only arithmetic on a slower GPU. Measured for ResNet-26 -> ResNet-8, what every chapter
    trains; deeper networks launch more kernels (ResNet-56 -> ResNet-20 took 1.7 to 5.5 times as
    long a step on the H200), and a slower processor launches them more slowly.

    >>> round(gpu_step_overhead("kd") * 1e3, 1), round(gpu_step_overhead("adv-dense") * 1e3, 1)
    (9.3, 43.2)
    """
    student, teacher = _book_pair_flops()
    h200 = GPU_EFFICIENCY * GPU_FP32_PEAK["H200"]
    arithmetic = estimate_seconds(
        method, 1, 128, student, 0.0 if method == "scratch" else teacher, 0, h200, on_gpu=True
    )
    return max(0.0, _table_value(GPU_STEP_MS_H200, method, GPU_STEP_MS_H200["kd"]) / 1e3 - arithmetic)


@functools.cache
def _book_pair_flops() -> tuple[float, float]:
    """Forward FLOPs per image of the book's student (ResNet-8) and teacher (ResNet-26)."""
    from .models import cifar_resnet

    return forward_flops(cifar_resnet(8)), forward_flops(cifar_resnet(26))


def _no_overhead(method: str) -> float:
    return 0.0


def device_throughput(device: torch.device) -> tuple[float, Callable[[str], float], str]:
    """For :func:`estimate_seconds`: the effective FLOP/s of ``device``, a function from a method's
    name to the seconds each of its steps adds there (:func:`gpu_step_overhead` on a GPU, none on
    a CPU, where the arithmetic dominates), and the device's name."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in GPU_FP32_PEAK.items() if k in name), GPU_FP32_PEAK["T4"])
        return GPU_EFFICIENCY * peak, gpu_step_overhead, name
    threads = torch.get_num_threads()
    return CPU_FLOPS_PER_THREAD * threads, _no_overhead, f"CPU, {threads} thread{'s' if threads != 1 else ''}"


def estimate_seconds(
    method: str,
    steps: int,
    batch_size: int,
    student_flops: float,
    teacher_flops: float,
    eval_images: int,
    flops_per_s: float,
    step_overhead_s: float = 0.0,
    on_gpu: bool = False,
) -> float:
    """The time of a training run by the book's rule of thumb.

    Each training image costs 3 forward passes of the student (forward and backward) and, for a
    method with a teacher, one of the teacher; on a CPU a method with flows or discriminators costs
    :data:`METHOD_OVERHEAD` times that (their small kernels); each step adds ``step_overhead_s``
    (on a GPU, :func:`gpu_step_overhead`, which holds those small kernels already); every evaluated
    image costs one forward pass of the student. All of it at ``flops_per_s`` (:func:`device_throughput`).

    >>> round(estimate_seconds("kd", 351 * 15, 128, 24.5e6, 109.4e6, 15 * 15000, 2e12, 0.005))
    91
    """
    per_image = 3 * student_flops + (teacher_flops if method != "scratch" else 0.0)
    if not on_gpu:
        per_image *= _table_value(METHOD_OVERHEAD, method, 1.0)
    return steps * (batch_size * per_image / flops_per_s + step_overhead_s) + eval_images * student_flops / flops_per_s


def profile_run_seconds(method: str, profile: str = "gpu", gpu: str = "T4") -> float:
    """How long one training run of ``method`` takes in ``profile`` on ``gpu`` (a name of
    :data:`GPU_FP32_PEAK`) by :func:`estimate_seconds`, as :meth:`Chapter.expect` would print it
    there: a ResNet-8 student (taught by a ResNet-26 unless ``scratch``), the profile's epochs of
    the 45,000 CIFAR-10 training images at batch 128 (at most its ``max_train_batches`` an epoch),
    and after every epoch the 5,000 validation images and the profile's test images.

    >>> profile_run_seconds("scratch") < profile_run_seconds("kd") < profile_run_seconds("adv-dense")
    True
    """

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES}")
    if gpu not in GPU_FP32_PEAK:
        raise ValueError(f"unknown GPU {gpu!r}; choose one of {sorted(GPU_FP32_PEAK)}")
    knobs = _KNOBS[profile]
    cfg = config_for(method, epochs=knobs["epochs"], max_train_batches=knobs["max_train_batches"])
    student, teacher = _book_pair_flops()
    teacher = 0.0 if method == "scratch" else teacher
    seconds, _, _ = _run_seconds(cfg, 45_000, 5_000 + (knobs["eval_size"] or 10_000), student,
                                 teacher, GPU_EFFICIENCY * GPU_FP32_PEAK[gpu], gpu_step_overhead(method),
                                 on_gpu=True)  # fmt: skip
    return seconds


def _run_seconds(
    cfg: TrainConfig, train_images: int, eval_images: int, student_flops: float, teacher_flops: float,
    flops_per_s: float, step_overhead_s: float, on_gpu: bool = False,
) -> tuple[float, int, int]:  # fmt: skip
    """:func:`estimate_seconds` for the run ``cfg`` describes, and its epochs and batches per epoch:
    its batches of ``train_images`` (capped by ``max_train_batches``), every epoch it trains (a
    two-stage run's first stage on top) and ``eval_images`` evaluated after each."""
    batches = train_images // cfg.batch_size
    if cfg.max_train_batches is not None:
        batches = min(batches, cfg.max_train_batches)
    epochs = cfg.total_epochs
    seconds = estimate_seconds(cfg.method, epochs * batches, cfg.batch_size, student_flops, teacher_flops,
                               epochs * eval_images, flops_per_s, step_overhead_s, on_gpu)  # fmt: skip
    return seconds, epochs, batches


def _duration(seconds: float) -> str:
    """``'about 40 s'``, ``'about 3.5 min'``, ``'about 2.1 h'``."""
    if seconds < 90:
        return f"about {max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"about {seconds / 60:.1f} min"
    return f"about {seconds / 3600:.1f} h"


REPOSITORY_URL = "https://github.com/dfkd-book/dfkd-book"


def repository() -> Path:
    """The folder that holds the repository's ``results/``, ``recipes/`` and protocol ``scripts/``.

    The checkout dfkd_lib runs from (an editable install, or the repository's folder), else the
    copy of those files that the installed package carries (``dfkd_lib/repository/``, made by
    ``setup.py`` when the wheel is built): after ``pip install`` chapter 7 reads the same run logs.
    That copy holds no ``benchmarks/`` and only the protocol's shell scripts; ``git clone`` the
    repository (:data:`REPOSITORY_URL`) for the rest. (A package built without the copy gets the
    copy's path all the same, where the chapters then find no logs and say so.)
    """
    package = Path(__file__).resolve().parent
    checkout = package.parent
    if (checkout / "results").is_dir() and (checkout / "pyproject.toml").is_file():
        return checkout
    return package / "repository"


def is_checkout(folder: Path) -> bool:
    """Whether ``folder`` (a :func:`repository`) is a checkout rather than the package's copy."""
    return (folder / "pyproject.toml").is_file()


def in_colab() -> bool:
    """Whether this code runs inside Google Colab."""
    return "google.colab" in sys.modules


def glue(name: str, variable: Any, display: bool = True) -> None:
    """``myst_nb.glue``: keep ``variable`` under ``name`` for the prose of the built book.

    Without myst-nb (a chapter opened in Colab, whose prose cannot be filled in from the run) the
    value is shown in the cell's output instead, also when ``display`` is false: the Colab
    editions of the chapters (``colab/``) refer to these outputs for numbers they do not hold.
    Rich values (Markdown tables, figures) are displayed, and so is any value glued with
    ``display=True``; others are printed as ``name: value``, a float to 4 significant digits (the
    prose formats its own, say ``:.1f``).
    """
    try:
        from myst_nb import glue as _glue
    except ImportError:
        from IPython.display import display as _display

        if display or hasattr(variable, "_repr_markdown_") or hasattr(variable, "savefig"):
            _display(variable)
        elif isinstance(variable, float | np.floating):  # 4 significant digits, never 1.235e+04
            print(f"{name}: {variable:.4g}" if abs(variable) < 1e4 else f"{name}: {variable:.0f}")
        else:
            print(f"{name}: {variable}")
        return
    _glue(name, variable, display=display)


def versus(diff: float, other: str) -> str:
    """A difference in accuracy points, in words: above, below or level with ``other``.

    Two decimals, as the book prints accuracies; a difference that rounds to 0.00 is level.

    >>> versus(0.857, "scratch")
    '0.86 points above scratch'
    >>> versus(-14.59, "kd")
    '14.59 points below kd'
    >>> versus(-0.004, "kd")
    'level with kd'
    """
    if abs(diff) < 0.005:
        return f"level with {other}"
    return f"{abs(diff):.2f} points {'above' if diff > 0 else 'below'} {other}"


def listing(items: Iterable[Any]) -> str:
    """Items in words: ``a``, ``a and b``, ``a, b and c`` (empty for none).

    >>> listing([0, 1, 2])
    '0, 1 and 2'
    >>> listing(["`kd`"])
    '`kd`'
    """
    words = [str(i) for i in items]
    if len(words) < 2:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: Sequence[str] | None = None) -> str:
    """A Markdown table: the header, an alignment row (``align``, default ``---`` for every
    column) and one line per row. Chapters show it with ``IPython.display.Markdown``.

    >>> print(md_table(["method", "acc. (%)"], [("kd", 87.74)], align=["---", "---:"]))
    | method | acc. (%) |
    | --- | ---: |
    | kd | 87.74 |
    """
    align = list(align) if align is not None else ["---"] * len(header)
    if len(align) != len(header):
        raise ValueError(f"{len(align)} alignments for {len(header)} columns")
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Chapter:
    """What a chapter needs: the profile, the device, the data and the profile's knobs.

    Attributes:
        profile: ``"quick"``, ``"gpu"`` or ``"full"``.
        device: where models and data live.
        data: CIFAR-10 as arrays (or generated stand-in data, see ``synthetic``); ``None`` for
            a chapter that trains nothing (``setup(data=False)``).
        in_colab: running inside Google Colab.
        seed: the seed everything was seeded with.
        epochs: epochs of a chapter's training runs.
        max_train_batches: batches per epoch (``None``: the whole training split).
        eval_size: test images used for evaluation (``None``: all of them); a seeded random
            subset, because some copies of the test set (the local ``.npz``) are sorted by class.
        seeds: seeds of repeated runs.
        batch_size: training batch size.
        val_size: training images held out for validation.
    """

    profile: str
    device: torch.device
    data: DatasetArrays | None
    in_colab: bool = False
    seed: int = 0
    epochs: int = 2
    max_train_batches: int | None = None
    eval_size: int | None = None
    seeds: tuple[int, ...] = (0,)
    batch_size: int = 128
    val_size: int = 5000
    _teacher: CifarResNet | None = field(default=None, repr=False)
    _teacher_spec: str | None = field(default=None, repr=False)
    _other_teachers: dict[str, CifarResNet] = field(default_factory=dict, repr=False)

    @property
    def synthetic(self) -> bool:
        """Whether the data are generated instead of CIFAR-10."""
        return self.data is not None and self.data.synthetic

    @property
    def quick(self) -> bool:
        """Whether the chapter runs the ``quick`` (CPU, minutes) profile."""
        return self.profile == "quick"

    @property
    def hardware(self) -> str:
        """Where the chapter runs, for the prose: the device, and the threads on a CPU."""
        if self.device.type != "cpu":
            return f"{self.device}"
        n = torch.get_num_threads()
        return f"cpu, {n} thread{'s' if n != 1 else ''}"

    # --- data ---------------------------------------------------------------------------------
    def _data(self) -> DatasetArrays:
        if self.data is None:
            raise RuntimeError("this chapter was set up without data: call book.setup(data=True)")
        return self.data

    def eval_data(self) -> DatasetArrays:
        """The data with the test set cut to ``eval_size`` images (a seeded, random subset)."""
        data = self._data()
        n = len(data.y_test)
        if self.eval_size is None or self.eval_size >= n:
            return data
        idx = np.random.default_rng(self.seed).permutation(n)[: self.eval_size]
        return dataclasses.replace(data, x_test=data.x_test[idx], y_test=data.y_test[idx])

    def images(
        self, indices: int | Sequence[int] | np.ndarray, split: str = "test"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``indices`` of a split (``"test"``, or ``"train"``: the whole training file,
        validation images included), normalised as the loaders do, and their labels, on the device."""
        from .data import normalise, stats_for

        if split not in ("test", "train"):
            raise ValueError(f"split must be 'test' or 'train', got {split!r}")
        data = self._data()
        x = data.x_test if split == "test" else data.x_train
        y = data.y_test if split == "test" else data.y_train
        idx = np.atleast_1d(np.asarray(indices))
        xb = normalise(torch.from_numpy(x[idx]).permute(0, 3, 1, 2), *stats_for(data.name))
        return xb.to(self.device), torch.from_numpy(y[idx]).to(self.device)

    def loaders(self, **overrides: Any) -> Loaders:
        """Train/validation/test loaders with the profile's knobs (``overrides`` win)."""
        kw: dict[str, Any] = dict(
            batch_size=self.batch_size, val_size=self.val_size, seed=self.seed, device=self.device,
            channels_last=True, max_train_batches=self.max_train_batches,
        )  # fmt: skip
        kw.update(overrides)
        return get_loaders(self.eval_data(), **kw)

    # --- teacher ------------------------------------------------------------------------------
    def teacher(self) -> CifarResNet:
        """The chapter's teacher, frozen and in eval mode on the device.

        The pretrained ``resnet26_cifar10`` when the package ships it, else the model file in
        ``$DFKD_TEACHER``; otherwise a :class:`FileNotFoundError` that says what to do.
        """
        if self._teacher is None:
            from . import pretrained

            if TEACHER_NAME in pretrained.available():
                spec, model = TEACHER_NAME, pretrained.load_pretrained(TEACHER_NAME)
            elif os.environ.get("DFKD_TEACHER"):
                spec = os.path.abspath(os.path.expanduser(os.environ["DFKD_TEACHER"]))
                model = pretrained.load_teacher(spec)
            else:
                raise FileNotFoundError(
                    f"no teacher: the pretrained {TEACHER_NAME!r} is not shipped with this copy of dfkd_lib "
                    f"(available: {pretrained.available() or 'none'}) and DFKD_TEACHER is not set. Train one with "
                    "`python -m dfkd_lib train-teacher --arch resnet26 --out runs/teacher-resnet26` and set "
                    "DFKD_TEACHER=runs/teacher-resnet26/model.pt (or its checkpoint.pt)."
                )
            self._teacher, self._teacher_spec = self._frozen(model), spec
        return self._teacher

    def _frozen(self, model: CifarResNet) -> CifarResNet:
        """A teacher as chapters use it: on the device, in eval mode, its weights frozen."""
        return frozen(model.to(self.device))

    @property
    def teacher_spec(self) -> str:
        """What :meth:`teacher` loaded: the pretrained name or the file path."""
        self.teacher()
        return self._teacher_spec  # type: ignore[return-value]

    @property
    def teacher_source(self) -> str:
        """A phrase for the prose: where the teacher came from."""
        spec = self.teacher_spec
        if spec == TEACHER_NAME:
            return f"the pretrained {TEACHER_NAME} shipped with dfkd_lib"
        return "a teacher checkpoint named by the DFKD_TEACHER environment variable"

    # --- trained students ---------------------------------------------------------------------
    def student(self, method: str, train: bool | None = None) -> CifarResNet:
        """A trained ResNet-8 of ``method``, in eval mode on the device: the shipped seed-0 student
        of the 60-epoch protocol (:func:`~dfkd_lib.pretrained.load_student`), or one trained here.

        Args:
            method: a method name (``"scratch"``, ``"kd"``, ...).
            train: ``True`` trains one here even when one is shipped; ``None`` (the default) trains
                only when none is shipped or ``$DFKD_TRAIN_STUDENTS`` is ``1``; ``False`` never
                trains (a :class:`KeyError` when none is shipped).

        A student trained here gets the profile's budget (``ch.config(method)``: minutes on a CPU,
        far from the shipped students' 60 epochs) and the chapter's teacher. ``model.meta["source"]``
        says which it is: ``"shipped"`` or ``"trained here"``; a shipped one's manifest entry (its
        teacher, accuracy and command) is the rest of ``model.meta``.
        """
        return self.students([method], train)[method]

    def _student(self, method: str, train: bool) -> CifarResNet:
        from . import pretrained
        from .train import train as train_run

        if train:
            cfg = self.config(method)
            teacher = self.teacher() if cfg.teacher else None
            model = train_run(cfg, loaders=self.loaders(), teacher=teacher, progress=False, verbose=False).student
            model.meta = {"source": "trained here", "method": method, "epochs": cfg.total_epochs,
                          "teacher": self.teacher_spec if cfg.teacher else None}  # fmt: skip
        else:
            model = pretrained.load_student(method)
            model.meta["source"] = "shipped"
        return model.to(self.device).eval()

    def students(self, methods: Sequence[str], train: bool | None = None) -> dict[str, CifarResNet]:
        """Trained students of several methods, for a comparison at equal budgets: all shipped, or,
        when one of them is not shipped (or ``train``/``$DFKD_TRAIN_STUDENTS`` asks for it), all
        trained here with the same profile (see :meth:`student`)."""
        from . import pretrained

        if train is None:
            shipped = pretrained.students()
            train = os.environ.get("DFKD_TRAIN_STUDENTS") == "1" or any(m not in shipped for m in methods)
        return {m: self._student(m, train) for m in methods}

    def teacher_of(self, students: dict[str, CifarResNet]) -> tuple[str, CifarResNet]:
        """The teacher that ``students`` (from :meth:`students`) learnt from, as ``(name, model)``,
        frozen and in eval mode on the device.

        Shipped students name theirs in their manifest (``meta["teacher"]``); students trained here
        learnt from the chapter's :meth:`teacher`. Flows, soft labels and agreement of a student can
        only be compared with its own teacher: another network numbers its channels differently.
        Raises :class:`ValueError` when the students name different teachers.
        """
        names = {t for n in students.values() if (t := getattr(n, "meta", {}).get("teacher"))}
        if len(names) > 1:
            raise ValueError(f"these students learnt from different teachers: {sorted(names)}")
        name = names.pop() if names else self.teacher_spec
        if name == self.teacher_spec:
            return name, self.teacher()
        if name not in self._other_teachers:
            from . import pretrained

            self._other_teachers[name] = self._frozen(pretrained.load_teacher(name))
        return name, self._other_teachers[name]

    @staticmethod
    def students_note(students: dict[str, CifarResNet]) -> str:
        """A phrase for the prose: where the students of :meth:`student` came from (shipped, with
        their epochs, or trained on the page), so that a page never passes off minutes of
        training as the shipped students or mixes the two silently."""

        def where(net: CifarResNet, plural: bool = False) -> str:
            meta = getattr(net, "meta", {})
            epochs = f"{meta.get('epochs', '?')} epochs" + (" each" if plural else "")
            if meta.get("source") == "shipped":
                return f"the shipped student{'s' if plural else ''} ({epochs})"
            who = "none is shipped, or they were asked for" if plural else "none is shipped, or it was asked for"
            return f"{'students ' if plural else ''}trained on this page ({epochs}; {who})"

        nets = list(students.values())
        if len(nets) > 1 and len({where(n) for n in nets}) == 1:  # all alike: say it once
            return where(nets[0], plural=True)
        return "; ".join(f"`{m}`: {where(n)}" for m, n in students.items())

    # --- training -----------------------------------------------------------------------------
    def config(self, method: str, **overrides: Any) -> TrainConfig:
        """:func:`~dfkd_lib.config_for` with the profile's epochs, batches and device filled in.

        Pass the result to ``train(cfg, loaders=ch.loaders(), teacher=ch.teacher())``.
        """
        kw: dict[str, Any] = dict(
            epochs=self.epochs, max_train_batches=self.max_train_batches, batch_size=self.batch_size,
            val_size=self.val_size, seed=self.seed, device=str(self.device), out_dir=None,
        )  # fmt: skip
        if method != "scratch":
            kw["teacher"] = self.teacher_spec
        kw.update(overrides)
        return config_for(method, **kw)

    def expect(self, *runs: str | TrainConfig, repeat: int = 1) -> float:
        """Print how long the training runs about to start should take; return the seconds.

        Args:
            runs: the runs' configs, or method names (for :meth:`config` with no overrides).
            repeat: how many times the whole list runs (e.g. once per seed).
        """
        flops_per_s, overhead, where = device_throughput(self.device)
        from .models import model_from_name

        data = self._data()
        train_images = len(data.y_train) - self.val_size
        eval_images = self.val_size + len(self.eval_data().y_test)
        total, names, cfgs = 0.0, [], [self.config(r) if isinstance(r, str) else r for r in runs]
        for cfg in cfgs:
            teacher = forward_flops(self.teacher()) if cfg.method != "scratch" else 0.0
            student = forward_flops(model_from_name(cfg.student))
            seconds, epochs, batches = _run_seconds(cfg, train_images, eval_images, student, teacher, flops_per_s,
                                                    overhead(cfg.method), self.device.type == "cuda")  # fmt: skip
            total += seconds
            names.append(f"{cfg.method} ({epochs} epochs x {batches} batches)")
        total *= repeat
        what = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        what += f", {repeat} times" if repeat > 1 else ""
        in_all = " in all" if len(names) > 1 or repeat > 1 else ""
        print(f"expected time: {_duration(total)}{in_all} for {what} on {where} (book.estimate_seconds)")
        return total

    def describe(self) -> str:
        """Two short lines saying what this chapter runs with (one when it has no data)."""
        if self.data is None:
            return f"profile {self.profile} | {self.hardware} | no data loaded: this page trains nothing"
        data = "generated stand-in data (NOT CIFAR-10)" if self.synthetic else "CIFAR-10"
        batches = "all" if self.max_train_batches is None else str(self.max_train_batches)
        evals = "all" if self.eval_size is None else f"{self.eval_size:,}"
        return (
            f"profile {self.profile} | {self.hardware} | data {data}\n"
            f"runs: {self.epochs} epochs x {batches} batches of {self.batch_size} | test images: {evals}"
        )


def _warn_generated(reason: str) -> None:
    """A visible warning box in the page: the numbers below come from generated data."""
    msg = (
        "CIFAR-10 was not found, so this page was built on <b>generated stand-in data</b> "
        "(<code>dfkd_lib.make_synthetic</code>), <b>not CIFAR-10</b>. Images, accuracies and "
        "every other number on this page say nothing about CIFAR-10. " + html.escape(reason)
    )
    box = (
        '<div class="admonition warning" style="border-left:6px solid #e65100;background:#fff3e0;'
        'padding:0.6em 1em;margin:0.5em 0;color:#222">'
        '<p class="admonition-title" style="font-weight:bold;margin:0 0 0.3em 0">'
        "Warning: generated data, not CIFAR-10</p>"
        f"<p style='margin:0'>{msg}</p></div>"
    )
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display

        if get_ipython() is not None:
            display(HTML(box))
            return
    except ImportError:
        pass
    print("WARNING: CIFAR-10 not found; using generated stand-in data, not CIFAR-10. " + reason)


def setup(
    profile: str | None = None, seed: int = 0, verbose: bool = True, data: bool = True, download: bool | None = None
) -> Chapter:
    """Seed everything, pick the device and profile, load the data: a chapter's first call.

    Args:
        profile: ``"quick"``, ``"gpu"`` or ``"full"``; ``None`` takes ``$DFKD_PROFILE``, else
            ``gpu`` on CUDA and ``quick`` otherwise (``full``, hours per chapter, only when asked for).
        seed: seed of Python's, NumPy's and PyTorch's generators.
        verbose: print one line describing the setup.
        data: load CIFAR-10 (or its generated stand-in); ``False`` for a chapter that reads logs
            and trains nothing, which then needs no data at all.
        download: download CIFAR-10 (into :func:`~dfkd_lib.data.local_data_dir`) when no copy is
            found; ``None``: only inside Colab. A failed download falls back like a missing copy.

    Raises:
        DataNotFoundError: CIFAR-10 is missing and ``DFKD_REQUIRE_DATA=1``.
        ValueError: an unknown profile.
    """
    device = pick_device("auto")
    if profile is None:
        profile = os.environ.get("DFKD_PROFILE") or ("gpu" if device.type == "cuda" else "quick")
    profile = profile.strip().lower()
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES}")
    seed_everything(seed)

    from . import plots

    plots.set_style()

    knobs = dict(_KNOBS[profile])
    arrays: DatasetArrays | None = None
    if data:
        try:
            arrays = load_cifar("cifar10", download=in_colab() if download is None else download)
        except DataNotFoundError as e:
            if os.environ.get("DFKD_REQUIRE_DATA") == "1":
                raise
            arrays = make_synthetic(10, train_per_class=500, test_per_class=100, seed=seed)
            knobs["val_size"] = 500
            _warn_generated(str(e))  # where it looked, and what to do
    ch = Chapter(profile=profile, device=device, data=arrays, in_colab=in_colab(), seed=seed, **knobs)
    if verbose:
        print(ch.describe())
    return ch
