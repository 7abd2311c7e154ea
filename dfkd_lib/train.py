"""The training engine: one function, :func:`train`, runs every method.

Methods (each a named recipe; see :data:`RECIPES` for the defaults it sets):

==============  ==========================================================================
``scratch``     cross-entropy only (also how teachers are trained)
``kd``          Hinton et al.: ``ce_weight * CE + kd_weight * T^2 KL``
``at``          attention transfer on the stage outputs: ``CE + at_beta / 2 * AT``
``fsp``         Yim et al.: sparse pairs, two stages (flow loss only, then CE only)
``dense``       dense flow, L2, joint: ``CE + lambda_flow * flow``
``adv``         discriminators on the dense flow, no L2: ``CE + lambda_adv * adversarial``
``adv-dense``   the full objective: ``CE + lambda_flow * flow + lambda_adv * adversarial``
==============  ==========================================================================

On every batch of a method with discriminators, one discriminator step comes first (teacher
flows real, detached student flows fake), then one student step. The teacher is frozen and in
eval mode. With a labelled fraction below 1, cross-entropy uses only the labelled images of a
batch and all other terms use every image.

Each epoch appends one JSON line to ``log.jsonl`` and atomically rewrites ``checkpoint.pt``;
``resume=True`` continues from it and gives the same result as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from . import losses as L
from .checkpoint import CheckpointError, atomic_save, safe_load, save_model
from .data import Loaders, get_loaders, make_synthetic
from .discriminators import FlowDiscriminators
from .flow import FlowPlan, make_flow_plan
from .models import CifarResNet, model_from_name

__all__ = [
    "METHODS",
    "RECIPES",
    "TrainConfig",
    "TrainResult",
    "NonFiniteLossError",
    "config_for",
    "pick_device",
    "evaluate",
    "train",
]

METHODS = ("scratch", "kd", "at", "fsp", "dense", "adv", "adv-dense")

# The adversarial settings of ``adv`` and ``adv-dense`` (see the comment in RECIPES)
_ADV: dict[str, Any] = {"lambda_adv": 0.01, "spectral_norm": True, "d_hidden": (64, 32)}

#: What each method sets on top of the :class:`TrainConfig` defaults.
RECIPES: dict[str, dict[str, Any]] = {
    "scratch": {},
    "kd": {"ce_weight": 0.1, "kd_weight": 0.9, "temperature": 4.0},
    "at": {"at_beta": 1000.0},
    "fsp": {"pairs": "sparse", "two_stage": True, "lambda_flow": 1e-3},
    "dense": {"pairs": "dense", "lambda_flow": 5e-4},
    # lambda_adv, spectral_norm and d_hidden were chosen on the validation split (scripts/adv_search.sh,
    # results/adv-search): lambda_adv = 0.1, which makes the term start at order one, made the
    # student collapse to chance accuracy; of the settings tried, lambda_adv = 0.01 with spectral
    # normalisation and 64 x 32 hidden units ended highest on validation
    "adv": {"pairs": "dense", "lambda_flow": 0.0, **_ADV},
    "adv-dense": {"pairs": "dense", "lambda_flow": 5e-4, **_ADV},
}
_NEEDS_TEACHER = {"kd", "at", "fsp", "dense", "adv", "adv-dense"}
_USES_FLOW = {"fsp", "dense", "adv", "adv-dense"}
_USES_ADV = {"adv", "adv-dense"}


@dataclass
class TrainConfig:
    """Everything that defines a run. Unset fields take the method's recipe, then these defaults."""

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
    lambda_flow: float = 0.0
    lambda_adv: float = 0.0
    gan_loss: str = "bce"
    ce_weight: float = 1.0
    kd_weight: float = 0.0
    temperature: float = 4.0
    at_beta: float = 0.0
    two_stage: bool = False
    stage1_epochs: int | None = None  # two-stage: epochs of stage 1 (default a third)
    # discriminators
    d_lr: float = 2e-4
    d_betas: tuple[float, float] = (0.5, 0.999)
    d_hidden: tuple[int, ...] = (64, 32)
    spectral_norm: bool = False
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

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid option."""
        checks = [
            (self.method in METHODS, "method", f"one of {METHODS}"),
            (self.epochs >= 1, "epochs", "at least 1"),
            (self.batch_size >= 1, "batch_size", "at least 1"),
            (self.lr > 0, "lr", "positive"),
            (self.schedule in ("cosine", "step"), "schedule", "'cosine' or 'step'"),
            (self.pool in ("max", "avg"), "pool", "'max' or 'avg'"),
            (self.gan_loss in L.GAN_LOSSES, "gan_loss", f"one of {L.GAN_LOSSES}"),
            (self.flow_reduction in ("sum", "mean"), "flow_reduction", "'sum' or 'mean'"),
            (0 < self.labelled_fraction <= 1, "labelled_fraction", "in (0, 1]"),
            (self.lambda_flow >= 0 and self.lambda_adv >= 0, "lambda_flow/lambda_adv", "non-negative"),
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
                self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:"),
                "device",
                "auto, cpu, cuda or mps",
            ),
        ]
        for ok, name, what in checks:
            if not ok:
                raise ValueError(f"invalid {name}: {getattr(self, name.split('/')[0], '')!r} (must be {what})")
        if self.method in _NEEDS_TEACHER and not self.teacher:
            raise ValueError(f"method {self.method!r} needs a teacher (a model file or a pretrained name)")
        if self.two_stage:
            stage1_terms = (
                (self.method == "kd" and self.kd_weight > 0)
                or (self.method == "at" and self.at_beta > 0)
                or (self.method in _USES_FLOW and self.lambda_flow > 0)
                or (self.method in _USES_ADV and self.lambda_adv > 0)
            )
            if not stage1_terms:
                raise ValueError(
                    f"invalid two_stage: method {self.method!r} with these weights has no term for stage 1 "
                    "(which trains everything but the cross-entropy)"
                )
            if self.stage1_epochs is None:
                if self.epochs < 2:
                    raise ValueError(f"invalid epochs: {self.epochs} (a two-stage run needs at least 2)")
            elif not 1 <= self.stage1_epochs < self.epochs:
                raise ValueError(
                    f"invalid stage1_epochs: {self.stage1_epochs} (must be in [1, epochs) with epochs={self.epochs})"
                )

    def to_dict(self) -> dict[str, Any]:
        """Every option, tuples as lists (as ``config.json`` and checkpoints store them)."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def config_for(method: str, **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` with the method's recipe applied, then ``overrides``."""
    if method not in RECIPES:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise ValueError(f"unknown option(s) {bad}")
    return TrainConfig(method=method, **{**RECIPES[method], **overrides})


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite."""


#: Written into a run's folder when a non-finite loss stops it (message, epoch, step), so that the
#: run's logs say how it ended; removed when the run is started again.
STOPPED_FILE = "stopped.json"


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


def pick_device(name: str = "auto") -> torch.device:
    """``cuda`` if available, else Apple ``mps``, else ``cpu`` (or the one named)."""
    if name != "auto":
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
    """Top-1 accuracy (%) and mean cross-entropy of ``model`` on ``loader``."""
    was_training = model.training
    model.eval()
    correct, total, loss = 0, 0, 0.0
    device = next(model.parameters()).device
    for x, y in loader:
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(x)
        loss += float(torch.nn.functional.cross_entropy(logits.float(), y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        total += len(y)
    model.train(was_training)
    return {"acc": 100.0 * correct / max(total, 1), "loss": loss / max(total, 1)}


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


def _load_teacher(spec: str, num_classes: int, device: torch.device) -> CifarResNet:
    from .pretrained import load_teacher

    teacher = load_teacher(spec)
    if teacher.num_classes != num_classes:
        raise ValueError(f"the teacher {spec} has {teacher.num_classes} classes but the data set has {num_classes}")
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


class _Run:
    """The state of one training run (kept small: see :func:`train` for the story)."""

    def __init__(self, cfg: TrainConfig, loaders: Loaders | None, teacher: nn.Module | None, progress: bool | None):
        cfg.validate()
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
        self.amp_dtype = None
        if cfg.amp and self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
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

        # networks
        mf = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.student = model_from_name(cfg.student, n_cls).to(self.device, memory_format=mf)
        self.teacher = None
        if cfg.method in _NEEDS_TEACHER:
            if teacher is None:
                teacher = _load_teacher(cfg.teacher, n_cls, self.device)
            elif getattr(teacher, "num_classes", n_cls) != n_cls:
                raise ValueError(f"the teacher has {teacher.num_classes} classes but the data set has {n_cls}")
            self.teacher = teacher.to(self.device, memory_format=mf).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        self.plan = None
        if cfg.method in _USES_FLOW:
            self.plan = make_flow_plan(self.teacher, self.student, cfg.pairs, cfg.pool)
        self.at_taps = None
        if cfg.method == "at":
            s_ends = _stage_ends(self.student)
            t_ends = _stage_ends(self.teacher)
            self.at_taps = (t_ends, s_ends)
        self.disc = None
        if cfg.method in _USES_ADV:
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
        self.stage1 = (cfg.stage1_epochs or max(1, cfg.epochs // 3)) if cfg.two_stage else 0
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self._lr_factor)
        self.start_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.out = Path(cfg.out_dir) if cfg.out_dir else None
        self.where = (0, 0)  # (epoch, step) being trained, for error messages

    # ---------------------------------------------------------------------------------------
    def _lr_factor(self, step: int) -> float:
        """LR multiplier at optimiser step ``step``; a two-stage run restarts it at stage 2."""
        spe, cfg = self.steps_per_epoch, self.cfg
        start, length = (0, self.stage1) if step < self.stage1 * spe else (self.stage1, cfg.epochs - self.stage1)
        t = (step - start * spe) / max(1, length * spe)
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        return 0.1 ** sum(t >= m for m in cfg.milestones)

    def stage(self, epoch: int) -> int:
        """1 or 2 in a two-stage run, 0 in a joint one."""
        if not self.cfg.two_stage:
            return 0
        return 1 if epoch < self.stage1 else 2

    def state(self, epoch: int) -> dict[str, Any]:
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
        }

    def try_resume(self) -> None:
        path = self.out / "checkpoint.pt"
        if not path.exists():
            return
        # to the CPU: the RNG states must stay there; load_state_dict moves the rest to the device
        ck = safe_load(path, map_location="cpu")
        if ck.get("format") != "dfkd_lib.train":
            raise CheckpointError(f"{path} is not a training checkpoint")
        mine, theirs = self.cfg.to_dict(), ck["config"]
        # epochs is checked: the learning-rate schedule and the two stages are laid out over it
        ignore = {"resume", "out_dir", "device", "data_dir", "download"}
        diff = {k: (theirs.get(k), v) for k, v in mine.items() if k not in ignore and theirs.get(k) != v}
        if diff:
            raise CheckpointError(f"cannot resume {path}: its config differs in {diff} (checkpoint value, new value)")
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
        self.start_epoch = ck["epoch"] + 1
        self.history = list(ck["history"])
        # the log may hold a line written after the checkpoint was: keep what the checkpoint knows
        log = self.out / "log.jsonl"
        if self.main:
            with open(log, "w") as f:
                for rec in self.history:
                    f.write(json.dumps(rec) + "\n")

    # ---------------------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        )

    def _no_autocast(self):
        return torch.autocast(self.device.type, enabled=False)

    def flags(self, stage: int) -> dict[str, bool]:
        """Which loss terms are active in a stage (0 joint, 1 and 2 of a two-stage run)."""
        cfg = self.cfg
        f = {
            "ce": stage != 1 and cfg.ce_weight > 0,
            "kd": cfg.method == "kd" and cfg.kd_weight > 0,
            "at": self.at_taps is not None and cfg.at_beta > 0,
            "flow": self.plan is not None and cfg.lambda_flow > 0 and stage != 2,
            "adv": self.disc is not None and cfg.lambda_adv > 0 and stage != 2,
        }
        f["taps"] = f["flow"] or f["adv"] or f["at"]
        f["teacher"] = self.teacher is not None and (f["kd"] or f["taps"])
        return f

    def train_step(self, x: Tensor, y: Tensor, flags: dict[str, bool]) -> tuple[dict[str, Tensor], Tensor]:
        """One optimisation step on a batch: a discriminator step first when there is an
        adversarial term, then the student's. Returns the detached loss terms (with the
        discriminators' loss and accuracies under ``d_loss``, ``d_acc_real``, ``d_acc_fake``)
        and the student's logits. Raises :class:`NonFiniteLossError` on NaN or infinity."""
        cfg = self.cfg
        terms: dict[str, Tensor] = {}
        extra: dict[str, Tensor] = {}
        t_logits = t_taps = None
        if flags["teacher"]:
            with torch.no_grad(), self._autocast():
                t_logits, t_taps = self.teacher(x, return_taps=True)
        with self._autocast():
            out = self.model(x, return_taps=flags["taps"])
        logits, s_taps = out if flags["taps"] else (out, None)
        if flags["ce"]:
            terms["ce"] = cfg.ce_weight * L.cross_entropy(logits.float(), y)
        if flags["kd"]:
            terms["kd"] = cfg.kd_weight * L.kd_loss(logits.float(), t_logits.float(), cfg.temperature)
        if flags["at"]:
            t_ends, s_ends = self.at_taps
            terms["at"] = cfg.at_beta / 2 * L.at_loss([t_taps[i] for i in t_ends], [s_taps[i] for i in s_ends])
        if flags["flow"] or flags["adv"]:
            with self._no_autocast():
                g_t = self.plan.teacher_flows([t.float() for t in t_taps])
                g_s = self.plan.student_flows([s.float() for s in s_taps])
        if flags["flow"]:
            terms["flow"] = cfg.lambda_flow * L.flow_loss(g_t, g_s, cfg.flow_reduction)
        if flags["adv"]:
            # 1) discriminator step: teacher flows are real, (detached) student flows fake
            real = self.disc(g_t)
            fake = self.disc([g.detach() for g in g_s])
            d_loss = L.discriminator_loss(real, fake, cfg.gan_loss)
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
            extra["d_loss"] = d_loss.detach()
            extra["d_acc_real"], extra["d_acc_fake"] = L.discriminator_accuracy(real, fake, cfg.gan_loss)
            # 2) the student's adversarial term, against the updated discriminators (their
            # weights frozen, so that the student's backward pass computes no gradient for them)
            self.disc.requires_grad_(False)
            terms["adv"] = cfg.lambda_adv * L.generator_loss(self.disc(g_s), cfg.gan_loss)
            self.disc.requires_grad_(True)
        total = sum(terms.values())
        self._check(terms)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        return {**{k: v.detach() for k, v in terms.items()}, **extra}, logits.detach()

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
        correct = torch.zeros((), device=self.device)
        labelled = torch.zeros((), device=self.device)
        seen = 0
        bar = None
        t0 = time.perf_counter()
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(loader), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, dynamic_ncols=True)
        for step, (x, y) in enumerate(loader):
            self.where = (epoch, step)
            values, logits = self.train_step(x, y, flags)
            for k, v in values.items():
                sums[k] = sums[k] + v * len(x) if k in sums else v * len(x)
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
        if self.world > 1:  # each process saw its share of the data: log the sums over all of them
            keys = sorted(sums)
            packed = torch.stack([sums[k].float() for k in keys] + [correct, labelled, correct.new_tensor(seen)])
            dist.all_reduce(packed)
            sums = dict(zip(keys, packed[: len(keys)]))
            correct, labelled, seen = packed[-3], packed[-2], int(packed[-1])
        means = {k: float(v) / max(seen, 1) for k, v in sums.items()}
        rec: dict[str, Any] = {f"loss_{k}": v for k, v in means.items() if not k.startswith("d_")}
        rec["loss_total"] = sum(rec.values())
        if "d_loss" in means:
            rec["loss_disc"] = means["d_loss"]
            rec["d_acc_real"], rec["d_acc_fake"] = 100 * means["d_acc_real"], 100 * means["d_acc_fake"]
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


def _epoch_line(rec: dict[str, Any], epochs: int) -> str:
    """One short line per epoch (it must fit a book's output column)."""
    losses = " ".join(f"{k[5:]} {v:.3g}" for k, v in rec.items() if k.startswith("loss_") and k != "loss_total")
    parts = [f"epoch {rec['epoch']}/{epochs}", losses]
    if "d_acc_real" in rec:
        parts.append(f"D real/fake {rec['d_acc_real']:.0f}/{rec['d_acc_fake']:.0f}%")
    accs = f"train {rec['train_acc']:.1f}"
    if "val_acc" in rec:
        accs += f" val {rec['val_acc']:.1f}"
    parts.append(accs + f" test {rec['test_acc']:.1f}%")
    parts.append(f"{rec['images_per_s']:.0f} img/s")
    return " | ".join(parts)


def train(
    cfg: TrainConfig,
    loaders: Loaders | None = None,
    teacher: nn.Module | None = None,
    progress: bool | None = None,
    callback: Callable[[dict[str, Any], Any], None] | None = None,
    verbose: bool = True,
    on_start: Callable[[Any], None] | None = None,
) -> TrainResult:
    """Train a student (or a teacher, with ``method="scratch"``) as ``cfg`` says.

    Args:
        cfg: the run's configuration (build it with :func:`config_for`).
        loaders: data to use instead of the ones ``cfg`` names (e.g. generated data); then the
            config's data fields (``batch_size``, ``val_size``, ``labelled_fraction``,
            ``max_train_batches``) are not used, and ``data.json`` in ``out_dir`` records what was.
        teacher: a teacher model to use instead of loading ``cfg.teacher``.
        progress: show progress bars (default: on the main process).
        callback: called after every epoch with the epoch's record and the run.
        verbose: print one line per epoch.
        on_start: called once with the run before the first epoch (e.g. to record the
            untrained student, see :class:`dfkd_lib.explorer.FlowRecorder`).

    Returns:
        The trained student, the per-epoch history and the discriminators and flow plan used.
    """
    run = _Run(cfg, loaders, teacher, progress)
    if run.out is not None:
        run.out.mkdir(parents=True, exist_ok=True)
        if cfg.resume:
            run.try_resume()
        elif (run.out / "checkpoint.pt").exists():
            raise FileExistsError(f"{run.out} already holds a run; pass resume=True (--resume) or another out_dir")
        if run.main:
            (run.out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
            # what the data really were (loaders passed in can differ from the config's data fields)
            ld = run.loaders
            data = {"source": ld.source, "synthetic": ld.synthetic, "sizes": ld.sizes, "classes": ld.num_classes,
                    "batch_size": ld.train.batch_size * run.world, "batches_per_epoch": len(ld.train),
                    "environment": _environment(run.device, run.world)}  # fmt: skip
            (run.out / "data.json").write_text(json.dumps(data, indent=2) + "\n")
            if run.start_epoch == 0:
                (run.out / "log.jsonl").write_text("")
            (run.out / STOPPED_FILE).unlink(missing_ok=True)  # an earlier stop no longer holds
    if on_start is not None:
        on_start(run)
    t_start = time.perf_counter()
    for epoch in range(run.start_epoch, cfg.epochs):
        rec = {"epoch": epoch + 1, "stage": run.stage(epoch), "lr": run.opt.param_groups[0]["lr"]}
        try:
            rec.update(run.train_epoch(epoch))
        except NonFiniteLossError as e:  # the run's folder says why it ended, beside its log
            if run.out is not None and run.main:
                stop = {"error": "NonFiniteLossError", "message": str(e), "epoch": run.where[0] + 1,
                        "step": run.where[1] + 1, "epochs_logged": len(run.history)}  # fmt: skip
                (run.out / STOPPED_FILE).write_text(json.dumps(stop, indent=2) + "\n")
            raise
        if run.world > 1:  # batch-norm statistics are per rank: evaluate and save rank 0's everywhere
            for buf in run.student.buffers():
                dist.broadcast(buf, 0)
        if run.loaders.val is not None:
            rec["val_acc"] = evaluate(run.student, run.loaders.val, run.amp_dtype)["acc"]
        rec["test_acc"] = evaluate(run.student, run.loaders.test, run.amp_dtype)["acc"]
        rec["wall_s"] = (run.history[-1]["wall_s"] if run.history else 0.0) + time.perf_counter() - t_start
        t_start = time.perf_counter()
        run.history.append(rec)
        if run.out is not None and run.main:
            with open(run.out / "log.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
            atomic_save(run.state(epoch), run.out / "checkpoint.pt")
        if verbose and run.main:
            print(_epoch_line(rec, cfg.epochs), flush=True)
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
    return TrainResult(run.student, run.history, cfg, run.out, run.disc, run.plan, run.loaders)
