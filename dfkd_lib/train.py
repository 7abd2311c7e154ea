"""The training engine: one function, :func:`train`, runs every method.

The methods are defined in :mod:`dfkd_lib.methods` (each one names its loss terms and its recipe);
:data:`METHODS` and :data:`RECIPES` are re-exported here.

On every batch of a method with discriminators, a discriminator step comes first (teacher flows
real, detached student flows fake; every ``d_every`` batches), then one student step. The teacher
is frozen and in eval mode. With a labelled fraction below 1, cross-entropy uses only the labelled
images of a batch and all other terms use every image. A two-stage run (Yim et al.) first trains
``stage1_epochs`` epochs on the flow terms alone at ``stage1_lr``, then the ``epochs`` epochs of
cross-entropy that a one-stage run has: its cross-entropy budget equals scratch's.

Whenever a run has a teacher (``teacher`` may be given to ``scratch`` too, as a probe), every
epoch also logs the relative distance of each flow item between teacher and student on fixed
validation images (``flow_dist``, no gradient): the control that says how much of the distance a
method closes beyond what cross-entropy alone does.

Each epoch appends one JSON line to ``log.jsonl`` and atomically rewrites ``checkpoint.pt``;
``resume=True`` continues from it and gives the same result as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import numbers
import os
import random
import re
import time
import types
import typing
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from . import losses as L
from .checkpoint import (
    ConfigMismatchError,
    atomic_save,
    atomic_write_text,
    check_training_checkpoint,
    safe_load,
    save_model,
)
from .data import BatchLoader, Loaders, get_loaders, interleave_classes, make_synthetic
from .discriminators import FlowDiscriminators
from .flow import PAIR_SETS, POOLS, FlowPlan, make_flow_plan
from .methods import ADDED_LATER, METHODS, RECIPE_VERSIONS, RECIPES, get_method
from .models import CifarResNet, eval_mode, frozen, model_from_name

__all__ = [
    "METHODS",
    "RECIPES",
    "TrainConfig",
    "TrainResult",
    "NonFiniteLossError",
    "RunFolderBusyError",
    "Run",
    "config_for",
    "measure_lambda_flow",
    "pick_device",
    "amp_dtype_for",
    "evaluate",
    "probe_flow_distances",
    "train",
]

D_INPUTS = ("raw", "scaled", "unit")
#: Which validation images the flow probe reads: ``"balanced"``, the first ``probe_images`` of the
#: classes taken in turn (:func:`~dfkd_lib.data.interleave_classes`), or ``"first"``, the first in
#: stored order, which on a file stored class by class are of one or two classes only. The 60-epoch
#: protocol and the method screen ran with ``"first"`` (airplanes and automobiles; the 15-epoch
#: protocol logged no flow distances); so does a checkpoint or log written before the option existed.
PROBE_ORDERS = ("balanced", "first")
#: How many of the first training batches ``calibrate`` measures the item scales and the gradient
#: rule's ``lambda_flow`` on.
CALIBRATION_BATCHES = 4


#: The device names the library accepts: auto, cpu, cuda, cuda:N (an index) and mps.
DEVICE_NAME = r"auto|cpu|(?P<cuda>cuda)(?::(?P<index>\d+))?|mps"


@dataclass
class TrainConfig:
    """Everything that defines a run.

    Build it with :func:`config_for`, which fills in the method's recipe (its loss weights, pair
    set, discriminator settings) and then your overrides. ``TrainConfig(method=...)`` on its own
    takes only the defaults below, in which every weight but the cross-entropy's is 0: a ``kd``
    or ``dense`` config made that way trains on cross-entropy alone."""

    method: str = "scratch"
    student: str = "resnet8"
    teacher: str | None = None  # a model file or the name of a pretrained teacher
    dataset: str = "cifar10"  # cifar10, cifar100 or synthetic
    data_dir: str | None = None
    download: bool = False
    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine or step
    milestones: tuple[float, ...] = (0.5, 0.75)  # step schedule: fractions of the epochs, x0.1 each
    # method options
    pairs: str | list = "dense"
    pool: str = "max"
    flow_reduction: str = "sum"
    flow_norm: str = "none"  # none, teacher (relative error of each example) or item (a fixed weight per item)
    lambda_flow: float = 0.0
    flow_grad_ratio: float | None = None  # if set, lambda_flow is chosen at the start by the gradient rule
    lambda_adv: float = 0.0
    gan_loss: str = "bce"
    ce_weight: float = 1.0
    kd_weight: float = 0.0
    temperature: float = 4.0
    at_beta: float = 0.0
    two_stage: bool = False
    stage1_epochs: int | None = None  # two-stage: flow-only epochs before the `epochs` (default a third of them)
    stage1_lr: float = 0.01  # two-stage: peak learning rate of stage 1 (Yim et al.: a small one)
    # discriminators
    d_lr: float = 2e-4
    d_betas: tuple[float, float] = (0.5, 0.999)
    d_hidden: tuple[int, ...] = (64, 32)
    spectral_norm: bool = False
    d_input: str = "raw"  # raw, scaled (each item over the teacher's RMS norm) or unit (each matrix over its norm)
    d_noise: float = 0.0  # instance noise, relative to an item's scale, annealed linearly to 0 over the run
    d_r1: float = 0.0  # R1 penalty weight gamma (the discriminators' loss adds gamma / 2 * R1)
    d_every: int = 1  # one discriminator step every d_every student steps
    probe_images: int = 1000  # validation images on which flow distances are logged every epoch (0: none)
    probe_order: str = "balanced"  # which of them: balanced (the classes in turn) or first (stored order)
    # data
    labelled_fraction: float = 1.0
    val_size: int = 5000
    split_seed: int = 0
    synthetic_per_class: int = 200
    max_train_batches: int | None = None
    # machinery
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    out_dir: str | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        # NumPy's numbers and arrays become Python's, so that the run logs and saves plain values
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if _has_numpy(v):
                setattr(self, f.name, tuple(_plain(v)) if isinstance(v, tuple) else _plain(v))

    def validate(self, teacher_given: bool = False) -> None:
        """Raise ``ValueError`` naming the first invalid option. ``teacher_given``: a teacher
        model comes with the config (:func:`train`'s ``teacher``), so ``teacher`` may be empty."""
        for name, optional in _number_fields().items():  # first: a string "3" would fail the comparisons below
            v = getattr(self, name)
            if not (isinstance(v, numbers.Real) and not isinstance(v, bool)) and not (optional and v is None):
                raise ValueError(f"invalid {name}: {v!r} (must be a number, not {type(v).__name__})")
        if not _is_pair_set(self.pairs):
            raise ValueError(f"invalid pairs: {self.pairs!r} (must be one of {PAIR_SETS} or a list of (a, b) pairs)")
        checks = [
            (self.method in METHODS, "method", f"one of {', '.join(METHODS)}"),
            (self.epochs >= 1, "epochs", "at least 1"),
            (self.batch_size >= 1, "batch_size", "at least 1"),
            (self.lr > 0, "lr", "positive"),
            (self.schedule in ("cosine", "step"), "schedule", "'cosine' or 'step'"),
            (self.pool in POOLS, "pool", f"one of {POOLS}"),
            (self.gan_loss in L.GAN_LOSSES, "gan_loss", f"one of {L.GAN_LOSSES}"),
            (self.flow_reduction in L.REDUCTIONS, "flow_reduction", f"one of {L.REDUCTIONS}"),
            (self.flow_norm in L.FLOW_NORMS, "flow_norm", f"one of {L.FLOW_NORMS}"),
            (  # the item weights are 1 / ||G_T||^2, a sum over entries: with a mean each item would be
                # its relative error over its number of entries, the large items weighted least
                not (self.flow_norm == "item" and self.flow_reduction == "mean"),
                "flow_reduction",
                "'sum' with flow_norm 'item', whose weights are over each teacher item's summed squares",
            ),
            (self.flow_grad_ratio is None or self.flow_grad_ratio > 0, "flow_grad_ratio", "positive"),
            (self.stage1_lr > 0, "stage1_lr", "positive"),
            (self.d_input in D_INPUTS, "d_input", f"one of {D_INPUTS}"),
            (self.d_noise >= 0, "d_noise", "non-negative"),
            (self.d_r1 >= 0, "d_r1", "non-negative"),
            (self.d_every >= 1, "d_every", "at least 1"),
            (self.probe_images >= 0, "probe_images", "non-negative"),
            (self.probe_order in PROBE_ORDERS, "probe_order", f"one of {PROBE_ORDERS}"),
            (self.max_train_batches is None or self.max_train_batches >= 1, "max_train_batches", "None or at least 1"),
            (0 < self.labelled_fraction <= 1, "labelled_fraction", "in (0, 1]"),
            (self.lambda_flow >= 0, "lambda_flow", "non-negative"),
            (self.lambda_adv >= 0, "lambda_adv", "non-negative"),
            (self.ce_weight >= 0, "ce_weight", "non-negative"),
            (self.kd_weight >= 0, "kd_weight", "non-negative"),
            (self.at_beta >= 0, "at_beta", "non-negative"),
            (self.momentum >= 0 and self.momentum < 1, "momentum", "in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay", "non-negative"),
            (self.val_size >= 0, "val_size", "non-negative"),
            (all(0 < m <= 1 for m in self.milestones), "milestones", "fractions of the run in (0, 1]"),
            (self.d_lr > 0, "d_lr", "positive"),
            (len(self.d_betas) == 2 and all(0 <= b < 1 for b in self.d_betas), "d_betas", "two numbers in [0, 1)"),
            (all(h >= 1 for h in self.d_hidden), "d_hidden", "positive widths"),
            (self.temperature > 0, "temperature", "positive"),
            (self.dataset in ("cifar10", "cifar100", "synthetic"), "dataset", "'cifar10', 'cifar100' or 'synthetic'"),
            (
                re.fullmatch(DEVICE_NAME, self.device) is not None,
                "device",
                "auto, cpu, cuda, cuda:N or mps",
            ),
        ]
        for ok, name, what in checks:
            if not ok:
                raise ValueError(f"invalid {name}: {getattr(self, name)!r} (must be {what})")
        method = get_method(self.method)
        if method.needs_teacher and not self.teacher and not teacher_given:
            raise ValueError(f"method {self.method!r} needs a teacher (a model file or a pretrained name)")
        weights = {"ce": self.ce_weight, "kd": self.kd_weight, "at": self.at_beta, "flow": self.lambda_flow,
                   "adv": self.lambda_adv}  # fmt: skip
        if self.flow_grad_ratio is not None:  # the rule sets lambda_flow, positive
            weights["flow"] = self.flow_grad_ratio
        active = {t for t in method.terms if weights[t] > 0}
        if not active:
            raise ValueError(f"invalid weights: every term of method {self.method!r} ({', '.join(method.terms)}) "
                             "has weight 0, so nothing would be trained")  # fmt: skip
        if self.two_stage:
            if not active - {"flow", "adv"}:
                raise ValueError(
                    f"invalid two_stage: method {self.method!r} with these weights has no term for stage 2 "
                    "(which trains everything but the flow and adversarial terms)"
                )
            if not active - {"ce"}:
                raise ValueError(
                    f"invalid two_stage: method {self.method!r} with these weights has no term for stage 1 "
                    "(which trains everything but the cross-entropy)"
                )
            if self.stage1_epochs is not None and self.stage1_epochs < 1:
                raise ValueError(f"invalid stage1_epochs: {self.stage1_epochs} (must be at least 1)")

    @property
    def stage1(self) -> int:
        """Epochs of stage 1 of a two-stage run (0 for a one-stage run)."""
        if not self.two_stage:
            return 0
        return self.stage1_epochs if self.stage1_epochs is not None else max(1, self.epochs // 3)

    @property
    def total_epochs(self) -> int:
        """Every epoch the run trains: a two-stage run's stage 1 comes on top of ``epochs``."""
        return self.stage1 + self.epochs

    def to_dict(self) -> dict[str, Any]:
        """Every option as JSON has it (as ``config.json`` and checkpoints store them): tuples as
        lists, nested ones too, and NumPy's numbers and arrays as Python's."""
        return _plain(dataclasses.asdict(self))


def _has_numpy(value: Any) -> bool:
    if isinstance(value, np.ndarray | np.generic):
        return True
    return isinstance(value, list | tuple) and any(_has_numpy(v) for v in value)


def _plain(value: Any) -> Any:
    """``value`` with tuples turned into lists and NumPy's numbers and arrays into Python's, at
    every depth: what a JSON round trip gives, so that two configs compare equal either way."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@functools.cache
def _number_fields() -> dict[str, bool]:
    """The options of :class:`TrainConfig` that take a number (numpy's numbers count), each with
    whether ``None`` is allowed too."""
    hints = typing.get_type_hints(TrainConfig)
    out = {}
    for f in dataclasses.fields(TrainConfig):
        hint = hints[f.name]
        if hint in (int, float):
            out[f.name] = False
        elif isinstance(hint, types.UnionType) and set(typing.get_args(hint)) in (
            {int, type(None)},
            {float, type(None)},
        ):
            out[f.name] = True  # int | None, float | None
    return out


def _is_pair_set(pairs: Any) -> bool:
    """A named pair set, or a sequence of two-element pairs (lists, tuples, arrays)."""
    if isinstance(pairs, str):
        return pairs in PAIR_SETS
    try:
        return len(pairs) > 0 and all(len(p) == 2 for p in pairs)
    except TypeError:  # not a sequence, or pairs that are not
        return False


def config_for(method: str, *, recipe: int = RECIPE_VERSIONS[-1], **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` with the method's recipe applied, then ``overrides``.

    ``recipe`` picks the version of the recipe (:data:`~dfkd_lib.methods.RECIPE_VERSIONS`): the
    current one by default, 1 for the first (with which the 15-epoch protocol of ``results/cpu`` ran).
    """
    m = get_method(method)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise ValueError(f"unknown option(s) {bad}")
    base = RECIPES[method] if recipe == RECIPE_VERSIONS[-1] else m.recipe_of(recipe)
    return TrainConfig(method=method, **{**base, **overrides})


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite."""


#: Written into a run's folder when a non-finite loss stops it (message, epoch, step), so that the
#: run's logs say how it ended; removed when the run is started again.
STOPPED_FILE = "stopped.json"
LOCK_FILE = ".lock"


class RunFolderBusyError(RuntimeError):
    """Another process is training in the same run folder (two writers would interleave the log
    and overwrite each other's checkpoints)."""


def _claim_folder(out: Path) -> Any:
    """Hold an exclusive lock on ``out/.lock`` for the duration of a run, so that a second process
    started on the same folder (a protocol script launched twice, say) stops at once instead of
    corrupting it. The lock goes with the process: a killed run leaves nothing to clean up. On
    systems without ``fcntl`` (Windows) the folder is not locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    out.mkdir(parents=True, exist_ok=True)
    f = open(out / LOCK_FILE, "a")  # noqa: SIM115 - held open until the run ends
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise RunFolderBusyError(f"{out} is in use by another training process; wait for it or stop it") from None
    return f


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    student: CifarResNet
    history: list[dict[str, Any]]
    config: TrainConfig
    out_dir: Path | None
    discriminators: FlowDiscriminators | None = None
    plan: FlowPlan | None = None
    loaders: Loaders | None = field(default=None, repr=False)


def check_device(name: str, label: str | None = None) -> None:
    """Refuse a device this machine cannot use, in one line that starts with ``label`` (default
    ``--device NAME``).

    Raises:
        ValueError: an unknown device, ``cuda`` without a CUDA device, a CUDA index beyond the
            machine's devices, or ``mps`` without Apple's MPS.
    """
    label = label or f"--device {name}"
    if name in ("auto", "cpu"):
        return
    m = re.fullmatch(DEVICE_NAME, name)
    if m and m["cuda"]:
        if not torch.cuda.is_available():
            raise ValueError(f"{label}: no CUDA device is available here; use --device auto or cpu")
        count = torch.cuda.device_count()
        if m["index"] is not None and int(m["index"]) >= count:
            raise ValueError(
                f"{label}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}; use one of them or auto"
            )
        return
    if name == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise ValueError(f"{label}: Apple's MPS is not available here; use --device auto or cpu")
        return
    raise ValueError(f"{label}: unknown device; use auto, cpu, cuda, cuda:N or mps")


def amp_dtype_for(device: torch.device) -> torch.dtype | None:
    """The mixed-precision type a run uses on ``device``: bfloat16 on a GPU that computes in it
    (compute capability 8 or more), float16 (with a gradient scaler, in training) on one that would
    only emulate it (a T4), ``None`` (float32) elsewhere. Asked of the current CUDA device, which a
    run has set to its own."""
    if device.type != "cuda":
        return None
    # PyTorch counts emulated bfloat16 as supported by default: slow on a T4, so not counted here
    return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16


def pick_device(name: str = "auto") -> torch.device:
    """``cuda`` if available, else Apple ``mps``, else ``cpu`` (or the one named, checked by
    :func:`check_device`)."""
    if name != "auto":
        check_device(name, f"device {name!r}")
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python's, NumPy's and PyTorch's generators; optionally ask for deterministic algorithms."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]], amp_dtype: torch.dtype | None = None
) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` on ``loader``, in eval mode.

    Args:
        model: a classifier; its mode is restored afterwards.
        loader: batches of ``(images, labels)``, e.g. ``loaders.test`` or ``loaders.val`` of
            :func:`dfkd_lib.data.get_loaders`; they are moved to the model's device.
        amp_dtype: run the forward passes under autocast with this dtype (None: float32).

    Returns:
        ``{"acc": accuracy in %, "loss": mean cross-entropy per image}``.

    Raises:
        ValueError: the model's outputs do not match the data set's classes (say a CIFAR-100
            model on CIFAR-10), as far as the loader's ``num_classes`` or its labels tell.
    """
    if isinstance(loader, Loaders):
        raise TypeError("evaluate takes one loader (say loaders.test or loaders.val), not the Loaders of get_loaders")
    correct, total, loss = 0, 0, 0.0
    device = next(model.parameters()).device
    expected = getattr(loader, "num_classes", None)
    with eval_mode(model):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                logits = model(x)
            _check_outputs(logits, y, expected)
            loss += float(torch.nn.functional.cross_entropy(logits.float(), y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            total += len(y)
    return {"acc": 100.0 * correct / max(total, 1), "loss": loss / max(total, 1)}


def _check_outputs(logits: Tensor, labels: Tensor, num_classes: int | None) -> None:
    """Refuse logits whose width is not the data set's number of classes (or too small for a label)."""
    outputs = logits.shape[-1]
    if num_classes is not None and outputs != num_classes:
        raise ValueError(
            f"the model has {outputs} outputs but the data set has {num_classes} classes: "
            "was it trained on another data set?"
        )
    if len(labels) and int(labels.max()) >= outputs:
        raise ValueError(f"a label is {int(labels.max())} but the model has only {outputs} outputs")


@torch.no_grad()
def probe_flow_distances(
    teacher: CifarResNet,
    student: CifarResNet,
    plan: FlowPlan,
    loader: BatchLoader,
    images: int = 1000,
    order: str = "balanced",
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> list[float]:
    """Each flow item's relative distance ``||G_T - G_S|| / ||G_T||`` between ``teacher`` and
    ``student`` (both in eval mode; their modes are restored), averaged over ``images`` images of
    ``loader``: what a training log calls ``flow_dist``.

    Args:
        plan: the flow items (:func:`~dfkd_lib.flow.make_flow_plan` of the two networks).
        loader: the images, usually the validation split's loader.
        images: how many (all of the loader's if it has fewer).
        order: ``"balanced"``, the classes in turn (:func:`~dfkd_lib.data.interleave_classes`), or
            ``"first"``, the first in stored order (see :data:`PROBE_ORDERS`).
        autocast: a context in which the networks run (the flows are multiplied in float32).
    """
    if order not in PROBE_ORDERS:
        raise ValueError(f"order must be one of {PROBE_ORDERS}, got {order!r}")
    n = min(images, loader.num_samples)
    idx = interleave_classes(loader.labels)[:n] if order == "balanced" else np.arange(n)
    sums, seen = None, 0
    with eval_mode(teacher, student):
        for x, _ in loader.subset(idx):
            with autocast():
                _, t_taps = teacher(x, return_taps=True)
                _, s_taps = student(x, return_taps=True)
            d = L.flow_distances(*_float32_flows(plan, t_taps, s_taps)) * len(x)
            sums = d if sums is None else sums + d
            seen += len(x)
    return [float(v) for v in sums / max(seen, 1)] if sums is not None else []


def _float32_flows(plan: FlowPlan, t_taps: list[Tensor], s_taps: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """The teacher's and the student's flows of ``plan``: Gram products in float32 outside
    autocast, whatever precision the taps were computed in."""
    with torch.autocast(t_taps[0].device.type, enabled=False):
        return plan.teacher_flows([t.float() for t in t_taps]), plan.student_flows([s.float() for s in s_taps])


def _rng_state() -> dict[str, Any]:
    """Every generator's state as tensors and plain numbers (so that a checkpoint loads with
    ``weights_only=True``: NumPy's key array is kept as a tensor, not as a pickled array)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _stage_ends(model: CifarResNet) -> list[int]:
    st = model.tap_stages
    return [i for i in range(len(st)) if i == len(st) - 1 or st[i + 1] != st[i]][1:]


class Run:
    """The state of one training run: what :func:`train` builds and its hooks receive. The
    attributes a hook may use are listed in :func:`train`; the rest is the engine's own."""

    def __init__(self, cfg: TrainConfig, loaders: Loaders | None, teacher: nn.Module | None, progress: bool | None):
        cfg.validate(teacher_given=teacher is not None)
        self.cfg = cfg
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() and cfg.device in ("auto", "cuda") else "gloo"
            dist.init_process_group(backend)
        if self.world > 1 and torch.cuda.is_available() and cfg.device in ("auto", "cuda"):
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            self.device = torch.device("cuda", local)
        else:
            self.device = pick_device(cfg.device)
        self.main = self.rank == 0
        seed_everything(cfg.seed, cfg.deterministic)
        self.amp_dtype = amp_dtype_for(self.device) if cfg.amp else None
        fp16 = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=fp16)
        self.progress = self.main if progress is None else (progress and self.main)

        # data
        if loaders is None:
            source, val_size = cfg.dataset, cfg.val_size
            if cfg.dataset == "synthetic":
                source = make_synthetic(10, cfg.synthetic_per_class, max(20, cfg.synthetic_per_class // 5), seed=0)
                val_size = min(cfg.val_size, len(source.y_train) // 10)
            loaders = get_loaders(
                source, root=cfg.data_dir, batch_size=cfg.batch_size, val_size=val_size,
                labelled_fraction=cfg.labelled_fraction, split_seed=cfg.split_seed, seed=cfg.seed, device=self.device,
                channels_last=cfg.channels_last, download=cfg.download, rank=self.rank, world_size=self.world,
                max_train_batches=cfg.max_train_batches,
            )  # fmt: skip
        self.loaders = loaders
        n_cls = loaders.num_classes

        # networks: what the method's terms need (a teacher given to scratch or kd is a flow probe)
        self.method = get_method(cfg.method)
        mf = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.student = model_from_name(cfg.student, n_cls).to(self.device, memory_format=mf)
        self.teacher = None
        if self.method.needs_teacher or teacher is not None or cfg.teacher:
            name = "given" if teacher is not None else cfg.teacher
            if teacher is None:
                from .pretrained import load_teacher

                teacher = load_teacher(cfg.teacher)
            if getattr(teacher, "num_classes", n_cls) != n_cls:
                raise ValueError(f"the teacher {name} has {teacher.num_classes} classes but the data set has {n_cls}")
            self.teacher = frozen(teacher.to(self.device, memory_format=mf))
        self.plan = None
        if self.teacher is not None and self.method.uses_flow:
            self.plan = make_flow_plan(self.teacher, self.student, cfg.pairs, cfg.pool)
        elif self.teacher is not None and cfg.probe_images > 0:
            try:  # only for the flow probe: a pair the method can train without flows is not refused
                self.plan = make_flow_plan(self.teacher, self.student, cfg.pairs, cfg.pool)
            except (ValueError, TypeError) as e:
                warnings.warn(f"no flow probe for this teacher and student ({e}); set probe_images=0 "
                              "to go without it quietly", stacklevel=2)  # fmt: skip
        self.at_taps = None
        if "at" in self.method.terms:
            self.at_taps = (_stage_ends(self.teacher), _stage_ends(self.student))
        self.disc = None
        if self.method.uses_adv:
            self.disc = FlowDiscriminators(self.plan.shapes, cfg.d_hidden, cfg.spectral_norm).to(self.device)
        self.model = self.student
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # stage 1 of a two-stage run trains no head: DDP must be told that some weights get no gradient
            self.model = nn.parallel.DistributedDataParallel(
                self.student, device_ids=ids, find_unused_parameters=cfg.two_stage
            )

        # optimisers and schedule
        self.opt = torch.optim.SGD(
            self.student.parameters(),
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            nesterov=cfg.nesterov,
        )
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=cfg.d_lr, betas=cfg.d_betas) if self.disc else None
        self.steps_per_epoch = len(loaders.train)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"invalid batch_size: {loaders.train.batch_size} (larger than the {loaders.train.num_samples} "
                "training images of this process: an epoch would have no step)"
            )
        self.stage1 = cfg.stage1
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self._lr_factor)
        self.start_epoch = 0
        self.probe_seen = 0  # images the last flow probe read (fewer than probe_images on a small split)
        self.history: list[dict[str, Any]] = []
        self.out = Path(cfg.out_dir) if cfg.out_dir else None
        self.where = (0, 0)  # (epoch, step) being trained, for error messages
        self.d_steps = 0  # student steps taken, for d_every
        # measured at the start (see calibrate), kept in the checkpoint
        self.lambda_flow = cfg.lambda_flow
        self.item_scale: Tensor | None = None  # each teacher item's RMS norm

    # ---------------------------------------------------------------------------------------
    def _lr_factor(self, step: int) -> float:
        """LR multiplier at optimiser step ``step``: stage 1 of a two-stage run follows the same
        schedule shape at ``stage1_lr``, then stage 2 restarts it for the ``epochs`` of scratch."""
        spe, cfg = self.steps_per_epoch, self.cfg
        if step < self.stage1 * spe:
            start, length, peak = 0, self.stage1, cfg.stage1_lr / cfg.lr
        else:
            start, length, peak = self.stage1, cfg.epochs, 1.0
        t = (step - start * spe) / max(1, length * spe)
        if cfg.schedule == "cosine":
            return peak * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        return peak * 0.1 ** sum(t >= m for m in cfg.milestones)

    def stage(self, epoch: int) -> int:
        """1 or 2 in a two-stage run, 0 in a joint one."""
        if not self.cfg.two_stage:
            return 0
        return 1 if epoch < self.stage1 else 2

    # ---------------------------------------------------------------------------------------
    def _first_batches(self, n: int) -> list[tuple[Tensor, Tensor]]:
        """The first ``n`` training batches of epoch 0 (the loader draws from its own generator,
        so this changes nothing that training sees)."""
        loader = self.loaders.train
        loader.set_epoch(0)
        return [b for _, b in zip(range(n), loader)]

    def _mean_over_ranks(self, t: Tensor) -> Tensor:
        if self.world > 1:
            t = t.clone()
            dist.all_reduce(t)
            t /= self.world
        return t

    def calibrate(self) -> None:
        """Measure, before the first step, what the options ask to be measured: each teacher item's
        scale (``flow_norm="item"``, ``d_input="scaled"``, ``d_noise``) and ``lambda_flow`` by the
        gradient rule (``flow_grad_ratio``). Uses the first training batches; changes no weight."""
        cfg = self.cfg
        need_scale = self.plan is not None and (
            cfg.flow_norm == "item" or (self.disc is not None and (cfg.d_input == "scaled" or cfg.d_noise > 0))
        )
        need_lambda = cfg.flow_grad_ratio is not None and "flow" in self.method.terms
        if not (need_scale or need_lambda):
            return
        batches = self._first_batches(CALIBRATION_BATCHES)
        if need_scale:
            with torch.no_grad(), self._autocast():
                sq = [self.teacher(x, return_taps=True)[1] for x, _ in batches]
            with self._no_autocast():
                norms = [L.teacher_flow_norms(self.plan.teacher_flows([t.float() for t in taps])) for taps in sq]
            self.item_scale = self._mean_over_ranks(torch.stack(norms).pow(2).mean(0)).sqrt()
        if need_lambda:
            self.lambda_flow = self.flow_weight_by_gradients(batches, cfg.flow_grad_ratio)

    def flow_weight_by_gradients(self, batches: list[tuple[Tensor, Tensor]], ratio: float) -> float:
        """The rule for ``lambda_flow``: the weight at which the flow term's gradient is ``ratio``
        times the gradient of the supervised terms (``ce_weight * CE`` plus ``kd_weight * KD`` where
        the method has it), both with respect to the student's weights, at the start of training,
        with the student in train mode, on ``batches`` (norms averaged over them). A copy of the
        student is used, so nothing of the run changes."""
        import copy

        student = copy.deepcopy(self.student).train()
        params = [p for p in student.parameters() if p.requires_grad]
        task_norm, flow_norm = [], []
        for x, y in batches:
            with torch.no_grad(), self._autocast():
                t_logits, t_taps = self.teacher(x, return_taps=True)
            with self._autocast():
                logits, s_taps = student(x, return_taps=True)
            task = self.cfg.ce_weight * L.cross_entropy(logits.float(), y)
            if "kd" in self.method.terms:
                task = task + self.cfg.kd_weight * L.kd_loss(logits.float(), t_logits.float(), self.cfg.temperature)
            flow = self.flow_term(t_taps, s_taps, weight=1.0)
            g_task = torch.autograd.grad(task, params, retain_graph=True, allow_unused=True)
            g_flow = torch.autograd.grad(flow, params, allow_unused=True)
            task_norm.append(torch.sqrt(sum(g.pow(2).sum() for g in g_task if g is not None)))
            flow_norm.append(torch.sqrt(sum(g.pow(2).sum() for g in g_flow if g is not None)))
        task_n = self._mean_over_ranks(torch.stack(task_norm).mean())
        flow_n = self._mean_over_ranks(torch.stack(flow_norm).mean())
        return float(ratio * task_n / flow_n.clamp_min(1e-12))

    def state(self, epoch: int) -> dict[str, Any]:
        """Everything a resumed run needs after ``epoch``: weights, optimisers, schedule, scaler,
        the generators' states and the history (what :meth:`try_resume` reads back)."""
        return {
            "format": "dfkd_lib.train",
            "version": 1,
            "epoch": epoch,
            "config": self.cfg.to_dict(),
            "num_classes": self.loaders.num_classes,
            "student": self.student.state_dict(),
            "discriminators": self.disc.state_dict() if self.disc else None,
            "opt": self.opt.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d else None,
            "sched": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "rng": _rng_state(),
            "history": self.history,
            "lambda_flow": self.lambda_flow,
            "item_scale": self.item_scale,
            "d_steps": self.d_steps,
        }

    def try_resume(self) -> None:
        """Continue from ``out_dir/checkpoint.pt`` if there is one, after checking that it was
        written by a run with the same options (:class:`ConfigMismatchError` otherwise)."""
        path = self.out / "checkpoint.pt"
        if not path.exists():
            return
        # to the CPU: the RNG states must stay there; load_state_dict moves the rest to the device
        ck = safe_load(path, map_location="cpu")
        check_training_checkpoint(ck, path)  # the fields read below, named if missing
        mine, theirs = self.cfg.to_dict(), _plain({**ADDED_LATER, **ck["config"]})
        # epochs is checked: the learning-rate schedule and the two stages are laid out over it
        ignore = {"resume", "out_dir", "device", "data_dir", "download"}
        if mine.get("flow_grad_ratio") is not None:  # the rule sets the weight; the configured one is unused
            ignore.add("lambda_flow")
        diff = {k: (theirs.get(k), v) for k, v in mine.items() if k not in ignore and theirs.get(k) != v}
        if diff:
            raise ConfigMismatchError(
                f"cannot resume {path}: its config differs in {diff} (checkpoint value, new value)"
            )
        self.student.load_state_dict(ck["student"])
        if self.disc:
            self.disc.load_state_dict(ck["discriminators"])
            self.opt_d.load_state_dict(ck["opt_d"])
        self.opt.load_state_dict(ck["opt"])
        self.sched.load_state_dict(ck["sched"])
        for scaler, saved in ((self.scaler, ck["scaler"]), (self.scaler_d, ck["scaler_d"])):
            if saved:  # empty when the run was made without fp16 (say on a CPU), then resumed with it
                scaler.load_state_dict(saved)
        _set_rng_state(ck["rng"])
        self.lambda_flow = ck.get("lambda_flow", self.cfg.lambda_flow)
        self.item_scale = ck.get("item_scale")
        self.d_steps = ck.get("d_steps", 0)
        self.start_epoch = ck["epoch"] + 1
        self.history = list(ck["history"])
        # the log may hold a line written after the checkpoint was: keep what the checkpoint knows
        if self.main:
            atomic_write_text("".join(json.dumps(rec) + "\n" for rec in self.history), self.out / "log.jsonl")

    # ---------------------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        )

    def _no_autocast(self):
        return torch.autocast(self.device.type, enabled=False)

    def flags(self, stage: int) -> dict[str, bool]:
        """Which loss terms are active in a stage (0 joint, 1 and 2 of a two-stage run): the
        method's terms whose weight is positive; stage 1 drops cross-entropy, stage 2 the flow and
        adversarial terms."""
        cfg, terms = self.cfg, self.method.terms
        weight = {"ce": cfg.ce_weight, "kd": cfg.kd_weight, "at": cfg.at_beta, "flow": self.lambda_flow,
                  "adv": cfg.lambda_adv}  # fmt: skip
        f = {t: t in terms and weight[t] > 0 for t in weight}
        f["ce"] = f["ce"] and stage != 1
        f["flow"] = f["flow"] and stage != 2
        f["adv"] = f["adv"] and stage != 2
        f["taps"] = f["flow"] or f["adv"] or f["at"]
        f["teacher"] = self.teacher is not None and (f["kd"] or f["taps"])
        return f

    def flow_term(self, t_taps: list[Tensor], s_taps: list[Tensor], weight: float | None = None) -> Tensor:
        """``lambda_flow`` (or ``weight``) times the flow loss of the two networks' taps."""
        g_t, g_s = self._flows(t_taps, s_taps)
        return self._flow_loss(g_t, g_s, self.lambda_flow if weight is None else weight)

    def _flows(self, t_taps: list[Tensor], s_taps: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        return _float32_flows(self.plan, t_taps, s_taps)

    def _flow_loss(self, g_t: list[Tensor], g_s: list[Tensor], weight: float) -> Tensor:
        weights = None if self.item_scale is None else (1.0 / self.item_scale.pow(2)).tolist()
        return weight * L.flow_loss(g_t, g_s, self.cfg.flow_reduction, self.cfg.flow_norm, weights)

    def disc_inputs(self, flows: list[Tensor], noise: bool = True) -> list[Tensor]:
        """What the discriminators see of flows: raw, scaled by each teacher item's norm, or each
        matrix over its own norm (``d_input``), plus annealed instance noise (``d_noise``)."""
        cfg = self.cfg
        if cfg.d_input == "scaled":
            flows = [g / s for g, s in zip(flows, self.item_scale)]
        elif cfg.d_input == "unit":
            flows = [g / g.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None] for g in flows]
        sigma = self.noise_level()
        if noise and sigma > 0:
            scales = self.item_scale.tolist() if cfg.d_input == "raw" else [1.0] * len(flows)
            flows = [g + torch.randn_like(g) * (sigma * s / math.sqrt(g[0].numel())) for g, s in zip(flows, scales)]
        return flows

    def noise_level(self) -> float:
        """The instance noise's level now: ``d_noise`` at the start, falling linearly to 0 at the end
        of the adversarial part of the run."""
        if self.cfg.d_noise == 0:
            return 0.0
        total = (self.stage1 if self.cfg.two_stage else self.cfg.epochs) * self.steps_per_epoch
        return self.cfg.d_noise * max(0.0, 1.0 - self.d_steps / max(1, total))

    def discriminator_step(self, g_t: list[Tensor], g_s: list[Tensor]) -> dict[str, Tensor]:
        """One step of the discriminators: teacher flows real, detached student flows fake (plus
        ``d_r1 / 2`` times the R1 penalty on the real ones). Returns the loss and the accuracies."""
        cfg = self.cfg
        real_in = self.disc_inputs([g.detach() for g in g_t])
        fake_in = self.disc_inputs([g.detach() for g in g_s])
        if cfg.d_r1 > 0:
            real_in = [g.requires_grad_(True) for g in real_in]
        real, fake = self.disc(real_in), self.disc(fake_in)
        d_loss = L.discriminator_loss(real, fake, cfg.gan_loss)
        if cfg.d_r1 > 0:
            d_loss = d_loss + cfg.d_r1 / 2 * L.r1_penalty(real, real_in)
        self._check({"d_loss": d_loss})
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(d_loss).backward()
        if self.world > 1:
            for p in self.disc.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= self.world
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        acc_real, acc_fake = L.discriminator_accuracy(real, fake, cfg.gan_loss)
        logit_real = torch.cat([r.detach().flatten() for r in real]).mean()
        logit_fake = torch.cat([f.detach().flatten() for f in fake]).mean()
        return {"d_loss": d_loss.detach(), "d_acc_real": acc_real, "d_acc_fake": acc_fake,
                "d_logit_real": logit_real, "d_logit_fake": logit_fake}  # fmt: skip

    def adversarial_term(self, g_s: list[Tensor]) -> Tensor:
        """``lambda_adv`` times the student's loss against the discriminators (their weights frozen,
        so that the student's backward pass computes no gradient for them)."""
        self.disc.requires_grad_(False)
        loss = self.cfg.lambda_adv * L.generator_loss(self.disc(self.disc_inputs(g_s)), self.cfg.gan_loss)
        self.disc.requires_grad_(True)
        return loss

    def student_step(self, terms: dict[str, Tensor]) -> None:
        """Check the terms, then one backward pass of their sum and one optimiser and schedule step."""
        self._check(terms)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(sum(terms.values())).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        if not (self.scaler.is_enabled() and self.sched.last_epoch == 0):
            self.sched.step()
            return
        # float16's first step: the scaler skips a step whose gradients overflowed (often the first,
        # while it finds its scale) and the schedule advances all the same, as intended; PyTorch's
        # warning (given only there) that the scheduler stepped before the optimiser would puzzle a reader
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
            self.sched.step()

    def train_step(self, x: Tensor, y: Tensor, flags: dict[str, bool]) -> tuple[dict[str, Tensor], Tensor]:
        """One optimisation step on a batch: a discriminator step first when there is an
        adversarial term (every ``d_every`` steps), then the student's. Returns the detached loss
        terms (with the discriminators' loss, accuracies and mean logits under ``d_loss``,
        ``d_acc_real``, ``d_acc_fake``, ``d_logit_real``, ``d_logit_fake``) and the student's logits.
        Raises :class:`NonFiniteLossError` on NaN or infinity."""
        cfg = self.cfg
        t_logits = t_taps = None
        if flags["teacher"]:  # taps only where a term reads them: kd's teacher may be any network
            with torch.no_grad(), self._autocast():
                t_out = self.teacher(x, return_taps=True) if flags["taps"] else self.teacher(x)
            t_logits, t_taps = t_out if flags["taps"] else (t_out, None)
        with self._autocast():
            out = self.model(x, return_taps=flags["taps"])
        logits, s_taps = out if flags["taps"] else (out, None)

        terms: dict[str, Tensor] = {}
        if flags["ce"]:
            terms["ce"] = cfg.ce_weight * L.cross_entropy(logits.float(), y)
        if flags["kd"]:
            terms["kd"] = cfg.kd_weight * L.kd_loss(logits.float(), t_logits.float(), cfg.temperature)
        if flags["at"]:
            t_ends, s_ends = self.at_taps
            terms["at"] = cfg.at_beta / 2 * L.at_loss([t_taps[i] for i in t_ends], [s_taps[i] for i in s_ends])
        extra: dict[str, Tensor] = {}
        if flags["flow"] or flags["adv"]:
            g_t, g_s = self._flows(t_taps, s_taps)
        if flags["flow"]:
            terms["flow"] = self._flow_loss(g_t, g_s, self.lambda_flow)
        if flags["adv"]:
            if self.d_steps % cfg.d_every == 0:
                extra = self.discriminator_step(g_t, g_s)
            terms["adv"] = self.adversarial_term(g_s)
        self.student_step(terms)
        self.d_steps += 1
        return {**{k: v.detach() for k, v in terms.items()}, **extra}, logits.detach()

    def flow_probe(self) -> list[float] | None:
        """Each flow item's relative distance (teacher vs the student in eval mode) on
        ``probe_images`` validation images (test images if there is no validation split), chosen
        by ``probe_order`` (:func:`probe_flow_distances`): what the log calls ``flow_dist``.
        ``None`` without a teacher."""
        if self.plan is None or self.cfg.probe_images == 0:
            return None
        loader = self.loaders.val if self.loaders.val is not None else self.loaders.test
        self.probe_seen = min(self.cfg.probe_images, loader.num_samples)
        dists = probe_flow_distances(
            self.teacher, self.student, self.plan, loader, self.cfg.probe_images, self.cfg.probe_order,
            autocast=self._autocast,
        )  # fmt: skip
        return [round(v, 5) for v in dists]

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One epoch; returns its record (mean loss terms, accuracies, speed)."""
        cfg = self.cfg
        flags = self.flags(self.stage(epoch))
        self.student.train()
        if self.disc:
            self.disc.train()
        loader = self.loaders.train
        loader.set_epoch(epoch)
        sums: dict[str, Tensor] = {}
        counts: dict[str, int] = {}  # images each value was averaged over (the discriminators' may skip steps)
        correct = torch.zeros((), device=self.device)
        labelled = torch.zeros((), device=self.device)
        seen = 0
        bar = None
        t0 = time.perf_counter()
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(loader), desc=f"epoch {epoch + 1}/{cfg.total_epochs}", leave=False, dynamic_ncols=True)
        for step, (x, y) in enumerate(loader):
            self.where = (epoch, step)
            values, logits = self.train_step(x, y, flags)
            for k, v in values.items():
                sums[k] = sums[k] + v * len(x) if k in sums else v * len(x)
                counts[k] = counts.get(k, 0) + len(x)
            mask = y >= 0
            correct += (logits.argmax(1)[mask] == y[mask]).sum()
            labelled += mask.sum()
            seen += len(x)
            if bar is not None:
                bar.update(1)
                if step % 10 == 0:
                    bar.set_postfix({k: f"{float(values[k]):.3g}" for k in values if not k.startswith("d_acc")})
        if bar is not None:
            bar.close()
        wall = time.perf_counter() - t0
        keys = sorted(sums)
        if self.world > 1:  # each process saw its share of the data: log the sums over all of them
            n = torch.tensor([counts[k] for k in keys] + [seen], dtype=torch.float32, device=self.device)
            packed = torch.cat([torch.stack([sums[k].float() for k in keys] + [correct, labelled]), n])
            dist.all_reduce(packed)
            sums = dict(zip(keys, packed[: len(keys)]))
            correct, labelled = packed[len(keys)], packed[len(keys) + 1]
            counts = {k: int(c) for k, c in zip(keys, packed[len(keys) + 2 : -1])}
            seen = int(packed[-1])
        means = {k: float(sums[k]) / max(counts[k], 1) for k in keys}
        rec: dict[str, Any] = {f"loss_{k}": v for k, v in means.items() if not k.startswith("d_")}
        rec["loss_total"] = sum(rec.values())
        if "flow" in self.method.terms:
            rec["lambda_flow"] = self.lambda_flow
        if "d_loss" in means:
            rec["loss_disc"] = means["d_loss"]
            rec["d_acc_real"], rec["d_acc_fake"] = 100 * means["d_acc_real"], 100 * means["d_acc_fake"]
            rec["d_logit_real"], rec["d_logit_fake"] = means["d_logit_real"], means["d_logit_fake"]
            if cfg.d_noise > 0:
                rec["d_noise"] = self.noise_level()
        rec["train_acc"] = 100.0 * float(correct) / max(float(labelled), 1.0)
        rec["train_time_s"] = wall
        rec["images_per_s"] = seen / wall
        return rec

    def _check(self, terms: dict[str, Tensor]) -> None:
        vals = torch.stack([v.detach().float() for v in terms.values()])
        finite = torch.isfinite(vals).all()
        if self.world > 1:  # every process stops together: one left alone would wait for the others forever
            flag = finite.float()
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            finite = flag > 0
        if bool(finite):
            return
        epoch, step = self.where
        bad = next((k for k, v in terms.items() if not bool(torch.isfinite(v.detach()))), None)
        if bad is None:
            raise NonFiniteLossError(
                f"a loss term became non-finite in another process at epoch {epoch + 1}, step {step + 1}"
            )
        last = self.out / "checkpoint.pt" if self.out is not None else None
        keep = f"; the last good checkpoint is {last}" if last is not None and last.exists() else ""
        raise NonFiniteLossError(
            f"loss term {bad!r} became {float(terms[bad].detach())} at epoch {epoch + 1}, step {step + 1}{keep}"
        )


def _environment(device: torch.device, world: int) -> dict[str, Any]:
    """Where a run ran: versions, device, threads and the library's git commit (if it has one)."""
    import platform
    import subprocess

    from . import __version__

    env: dict[str, Any] = {"dfkd_lib": __version__, "torch": torch.__version__, "python": platform.python_version(),
                           "device": str(device), "world_size": world, "threads": torch.get_num_threads()}  # fmt: skip
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    # the processor and the vector instructions PyTorch's CPU kernels use: runs with the same seed
    # and code can differ in rounding, and so diverge, between processors of different capability
    env["cpu"] = _cpu_model()
    env["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    try:
        here = Path(__file__).resolve().parent
        git = ["git", "-C", str(here)]
        env["git_commit"] = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                           timeout=10).stdout.strip()  # fmt: skip
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "."], capture_output=True, text=True, timeout=10)
        env["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass  # installed from a wheel, or no git
    return env


def _cpu_model() -> str:
    """The processor's model name (Linux's /proc/cpuinfo), else what the platform module says."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_LEGENDS_SHOWN: set[str] = set()  # legends this process has printed (a notebook trains many runs)


def _log_legend(rec: dict[str, Any], terms: Sequence[str], probe_images: int, probe_order: str = "balanced") -> str:
    """What the columns of :func:`_epoch_line` mean, for a run with these loss ``terms`` and the
    fields of its first record ``rec`` (printed once, above its first line)."""
    lines = [f"  {' '.join(terms)}: the epoch's mean loss terms, each times its weight (their sum is minimised)"]
    if "loss_disc" in rec:
        lines.append("  disc: the discriminators' own loss, which they minimise (not part of the student's sum)")
    if "d_acc_real" in rec:
        lines.append("  D real/fake: % of the teacher's flows the discriminators called real / of the student's, fake")
    if "flow_dist" in rec:
        where = "validation" if "val_acc" in rec else "test"
        which = "the classes in turn" if probe_order == "balanced" else "the first in stored order"
        lines.append(
            f"  flow dist: ||G_T - G_S|| / ||G_T||, mean over flow items, on {probe_images:,} {where} images ({which})"
        )
    lines.append("  train" + (" val" if "val_acc" in rec else "") + " test: accuracy (%) at the end of the epoch")
    return "\n".join(["how to read each line:", *lines])


def _epoch_line(rec: dict[str, Any], epochs: int) -> str:
    """One short line per epoch (it must fit a book's output column)."""
    losses = " ".join(f"{k[5:]} {v:.3g}" for k, v in rec.items() if k.startswith("loss_") and k != "loss_total")
    parts = [f"epoch {rec['epoch']}/{epochs}", losses]
    if "d_acc_real" in rec:
        parts.append(f"D real/fake {rec['d_acc_real']:.0f}/{rec['d_acc_fake']:.0f}%")
    if "flow_dist" in rec:
        parts.append(f"flow dist {sum(rec['flow_dist']) / len(rec['flow_dist']):.2f}")
    accs = f"train {rec['train_acc']:.1f}"
    if "val_acc" in rec:
        accs += f" val {rec['val_acc']:.1f}"
    parts.append(accs + f" test {rec['test_acc']:.1f}%")
    parts.append(f"{rec['images_per_s']:.0f} img/s")
    return " | ".join(parts)


def measure_lambda_flow(
    cfg: TrainConfig,
    loaders: Loaders | None = None,
    teacher: nn.Module | None = None,
    student: nn.Module | None = None,
) -> float:
    """The flow weight a run of ``cfg`` trains with: ``cfg.lambda_flow``, or where ``flow_grad_ratio``
    is set, the weight the gradient rule measures at the start (the same first batches and the same
    seeded student as :func:`train` uses, so the same value; ``lambda_flow`` in its log). ``loaders``
    and ``teacher`` as in :func:`train`.

    ``student``: measure the rule on these weights instead of the run's seeded student (e.g. a
    trained one: the weight the rule would set if it were measured again at that point). It must be
    the architecture ``cfg.student`` names; it is not changed."""
    run = Run(cfg, loaders, teacher, progress=False)
    if student is not None:
        try:
            run.student.load_state_dict(student.state_dict())
        except RuntimeError as e:
            raise ValueError(f"student does not have the weights of cfg.student={cfg.student!r}: {e}") from e
    run.calibrate()
    return float(run.lambda_flow)


def train(
    cfg: TrainConfig,
    loaders: Loaders | None = None,
    teacher: nn.Module | None = None,
    progress: bool | None = None,
    callback: Callable[[dict[str, Any], Run], None] | None = None,
    verbose: bool = True,
    on_start: Callable[[Run], None] | None = None,
) -> TrainResult:
    """Train a student (or a teacher, with ``method="scratch"``) as ``cfg`` says.

    Args:
        cfg: the run's configuration (build it with :func:`config_for`).
        loaders: data to use instead of the ones ``cfg`` names (e.g. generated data); then the
            config's data fields (``batch_size``, ``val_size``, ``labelled_fraction``,
            ``max_train_batches``) are not used, and ``data.json`` in ``out_dir`` records what was.
        teacher: a teacher model to use instead of loading ``cfg.teacher`` (which may then be
            empty; ``config.json`` records ``cfg.teacher``, so name the teacher there too when the
            run's logs will be read by the report).
        progress: show progress bars (default: on the main process).
        callback: called after every epoch with the epoch's record and the run, once the epoch is
            logged and its checkpoint written: what it changes in the run (say ``run.lambda_flow``)
            is saved with the next epoch's checkpoint; a run resumed from this epoch's does not have it.
        verbose: print one line per epoch.
        on_start: called once with the run before the first epoch (e.g. to record the
            untrained student, see :class:`dfkd_lib.explorer.FlowRecorder`).

    The run that the hooks receive offers: ``cfg``, ``device``, ``student``, ``teacher`` (None
    without one), ``plan`` (the flow plan, None without flows), ``disc`` (the discriminators, None
    without), ``lambda_flow`` (the flow weight in use; a hook may set it), ``history`` (the
    records so far) and ``flow_weight_by_gradients(batches, ratio)`` (the gradient rule, see
    :func:`measure_lambda_flow`). The rest of the run object is the engine's own.

    Returns:
        The trained student, the per-epoch history and the discriminators and flow plan used.

    Raises:
        ValueError: an invalid option (named), or a teacher and student that do not fit.
        FileNotFoundError: the teacher (neither a file nor a shipped name) or the data set is not found.
        FileExistsError: ``out_dir`` already holds a run and ``resume`` is not set.
        RunFolderBusyError: another process is training in ``out_dir``.
        CheckpointError: the checkpoint to resume from is corrupt or was made with other settings.
        NonFiniteLossError: a loss term became NaN or infinite (``stopped.json`` in ``out_dir``
            says where).
    """
    run = Run(cfg, loaders, teacher, progress)
    lock = _claim_folder(run.out) if run.out is not None and run.main else None
    try:
        if run.out is not None:
            run.out.mkdir(parents=True, exist_ok=True)
            if cfg.resume:
                run.try_resume()
            elif (run.out / "checkpoint.pt").exists():
                raise FileExistsError(f"{run.out} already holds a run; pass resume=True (--resume) or another out_dir")
            if run.main:
                atomic_write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", run.out / "config.json")
                # what the data really were (loaders passed in can differ from the config's data fields)
                ld = run.loaders
                data = {"source": ld.source, "synthetic": ld.synthetic, "sizes": ld.sizes, "classes": ld.num_classes,
                        "batch_size": ld.train.batch_size * run.world, "batches_per_epoch": len(ld.train),
                        "environment": _environment(run.device, run.world)}  # fmt: skip
                atomic_write_text(json.dumps(data, indent=2) + "\n", run.out / "data.json")
                if run.start_epoch == 0:
                    (run.out / "log.jsonl").write_text("")
                (run.out / STOPPED_FILE).unlink(missing_ok=True)  # an earlier stop no longer holds
        if run.start_epoch == 0:
            run.calibrate()
        if on_start is not None:
            on_start(run)
        t_start = time.perf_counter()
        for epoch in range(run.start_epoch, cfg.total_epochs):
            rec = {"epoch": epoch + 1, "stage": run.stage(epoch), "lr": run.opt.param_groups[0]["lr"]}
            try:
                rec.update(run.train_epoch(epoch))
            except NonFiniteLossError as e:  # the run's folder says why it ended, beside its log
                if run.out is not None and run.main:
                    stop = {"error": "NonFiniteLossError", "message": str(e), "epoch": run.where[0] + 1,
                            "step": run.where[1] + 1, "epochs_logged": len(run.history)}  # fmt: skip
                    atomic_write_text(json.dumps(stop, indent=2) + "\n", run.out / STOPPED_FILE)
                raise
            if run.world > 1:  # batch-norm statistics are per rank: evaluate and save rank 0's everywhere
                for buf in run.student.buffers():
                    dist.broadcast(buf, 0)
            if run.loaders.val is not None:
                rec["val_acc"] = evaluate(run.student, run.loaders.val, run.amp_dtype)["acc"]
            rec["test_acc"] = evaluate(run.student, run.loaders.test, run.amp_dtype)["acc"]
            dists = run.flow_probe()
            if dists is not None:
                rec["flow_dist"] = dists
            rec["wall_s"] = (run.history[-1]["wall_s"] if run.history else 0.0) + time.perf_counter() - t_start
            t_start = time.perf_counter()
            run.history.append(rec)
            if run.out is not None and run.main:
                with open(run.out / "log.jsonl", "a") as f:
                    f.write(json.dumps(rec) + "\n")
                atomic_save(run.state(epoch), run.out / "checkpoint.pt")
            if verbose and run.main:
                if len(run.history) == run.start_epoch + 1:  # this call's first line: its legend, once per kind
                    legend = _log_legend(rec, run.method.terms, run.probe_seen, run.cfg.probe_order)
                    if legend not in _LEGENDS_SHOWN:
                        _LEGENDS_SHOWN.add(legend)
                        print(legend, flush=True)
                print(_epoch_line(rec, cfg.total_epochs), flush=True)
            if callback is not None:
                callback(rec, run)
            if run.world > 1:
                dist.barrier()
        if run.out is not None and run.main:
            last = run.history[-1] if run.history else {}
            save_model(
                run.student, run.out / "model.pt", method=cfg.method, dataset=cfg.dataset, epochs=cfg.epochs,
                test_acc=last.get("test_acc"), val_acc=last.get("val_acc"), config=cfg.to_dict(),
            )  # fmt: skip
    finally:
        if lock is not None:
            lock.close()  # releases the folder
    return TrainResult(run.student, run.history, cfg, run.out, run.disc, run.plan, run.loaders)
