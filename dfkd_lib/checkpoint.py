"""Saving and loading: atomic writes, model files with their metadata, clear errors.

A *model file* holds one network and what is needed to rebuild it::

    {"format": "dfkd_lib.model", "version": 1, "arch": "resnet26", "num_classes": 10,
     "state_dict": {...}, "meta": {...}}

A *training checkpoint* (see :mod:`dfkd_lib.train`) holds everything needed to resume a run.
Both are written to a temporary file in the same folder and then renamed over the target, so an
interrupted write never leaves a half-written file behind.

Loading never runs code from a file. ``torch.load`` unpickles, and a pickle can call any function
(``os.system`` among them) while it is read. :func:`safe_load` therefore reads with
``weights_only=True``: tensors, numbers, strings, ``None`` and lists, tuples and dicts of them, which
is all that the project's own files hold (random-number states included, stored as tensors and
plain numbers). A file that holds anything else is refused before any of it runs.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .models import DEFAULT_WIDTHS, CifarResNet, model_from_name

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "ConfigMismatchError",
    "atomic_save",
    "atomic_write_text",
    "safe_load",
    "save_model",
    "load_model",
    "check_training_checkpoint",
]

MODEL_FORMAT = "dfkd_lib.model"
TRAIN_FORMAT = "dfkd_lib.train"

# what torch's weights-only unpickler says when a file asks it to call or build something
_UNSAFE = re.compile(r"GLOBAL|reduce|allowlist|Can only (create|build)")


class CheckpointError(ValueError):
    """A checkpoint or model file is missing, corrupt or does not fit."""


class UnsafeCheckpointError(CheckpointError):
    """A file holds objects other than tensors and plain data: loading it could run code."""


class ConfigMismatchError(CheckpointError):
    """A run's checkpoint was made with other options than those it is asked to resume with."""


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``."""
    _atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Write ``text`` (UTF-8) to a temporary file beside ``path``, then rename it over ``path``:
    a reader, or a run killed while it writes, sees the old file or the new one, never half of it."""
    data = text.encode("utf-8")
    _atomic_write(path, lambda f: f.write(data))


def _atomic_write(path: str | os.PathLike, write: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def safe_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a file written by :func:`atomic_save` without running any code from it.

    Raises:
        CheckpointError: the file is missing, corrupt, or holds no dict.
        UnsafeCheckpointError: the file holds objects other than tensors and plain data (a
            pickled function call, a class instance, a NumPy array...); nothing in it has run.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such file: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # the weights-only unpickler met an object it will not build (a function to call, a class
        # to instantiate): refuse the file. Its other complaints (an unknown opcode...) mean the
        # file is not a pickle at all, which is corruption, not danger.
        lines = [line.strip() for line in str(e).splitlines()]
        unsafe = [line for line in lines if _UNSAFE.search(line)]
        if not unsafe:
            raise _not_a_checkpoint(path, e) from e
        raise UnsafeCheckpointError(
            f"refused to load {path}: it holds objects other than tensors and plain data, and loading those "
            f"could run code from the file, so it may be unsafe ({unsafe[0]}). dfkd_lib's own model files and "
            "checkpoints never hold such objects; if you trust where the file came from, inspect it yourself "
            "with torch.load(path, weights_only=False)."
        ) from None
    except PermissionError as e:
        raise CheckpointError(f"cannot read {path}: permission denied") from e
    except Exception as e:  # empty, truncated, not a zip, another format...
        raise _not_a_checkpoint(path, e) from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} does not hold a dfkd_lib checkpoint (found {type(obj).__name__})")
    return obj


def _not_a_checkpoint(path: Path, e: Exception) -> CheckpointError:
    """The one-line error for a file that ``torch.load`` cannot read: torch's reason, without its
    advice to retry with ``weights_only=False`` (the unsafe way) or to file an issue."""
    advice = ("weights_only", "file an issue", "documentation", "Please ", "WeightsUnpickler error:")
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    reason = " ".join(line for line in lines if not any(a in line for a in advice))
    reason = reason if len(reason) <= 200 else reason[:197] + "..."
    return CheckpointError(
        f"{path} is not a PyTorch checkpoint (corrupt, truncated or another format"
        + (f"; torch: {reason}" if reason else "")
        + "): re-download or re-train it"
    )


def _field(obj: dict, name: str, kind: type, path: Path, label: str | None = None, minimum: int = 1) -> Any:
    """``obj[name]``, checked to be a ``kind`` (for ``int``: an integer of at least ``minimum``);
    else a :class:`CheckpointError` naming the file and the field (``label``, default ``name``)."""
    label = label or name
    if name not in obj:
        raise CheckpointError(f"{path}: field '{label}' is missing (damaged, or not written by dfkd_lib): re-download "
                              "or re-train it")  # fmt: skip
    value = obj[name]
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
        want = f"an integer of at least {minimum}"
    else:
        ok = isinstance(value, kind)
        want = {dict: "a dict", str: "a string", list: "a list"}.get(kind, kind.__name__)
    if not ok:
        shown = repr(value) if isinstance(value, (str, int, float, type(None))) else type(value).__name__
        raise CheckpointError(f"{path}: field '{label}' is {shown}, not {want} (damaged, or not written by "
                              "dfkd_lib): re-download or re-train it")  # fmt: skip
    return value


def check_training_checkpoint(ck: dict, path: str | os.PathLike) -> None:
    """Check that a training checkpoint (from :func:`safe_load`) holds the fields resuming reads.

    Raises:
        CheckpointError: it is no training checkpoint, or a field is missing or of the wrong kind
            (the message names the file and the field).
    """
    path = Path(path)
    if ck.get("format") != TRAIN_FORMAT:
        raise CheckpointError(f"{path} is not a training checkpoint")
    _field(_field(ck, "config", dict, path), "student", str, path, "config.student")
    _field(ck, "epoch", int, path, minimum=0)
    _field(ck, "num_classes", int, path)
    for name, kind in (("student", dict), ("opt", dict), ("sched", dict), ("scaler", dict), ("scaler_d", dict),
                       ("rng", dict), ("history", list)):  # fmt: skip
        _field(ck, name, kind, path)
    for name in ("discriminators", "opt_d"):  # None for a run without discriminators
        if name not in ck or ck[name] is not None:
            _field(ck, name, dict, path)


def _state_dict_hint(path: Path, obj: dict) -> str:
    """Why a dict without dfkd_lib's ``format`` is refused, and how to convert a plain state_dict."""
    wrapped = isinstance(obj.get("state_dict"), dict)
    state = obj["state_dict"] if wrapped else obj
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        keys = sorted(str(k) for k in obj)
        shown = ", ".join(keys[:6]) + (", ..." if len(keys) > 6 else "")
        return (f"{path} is not a dfkd_lib model or training checkpoint (it has no 'format' field; its keys: "
                f"{shown or 'none'}): save models with dfkd_lib.save_model")  # fmt: skip
    if all(str(k).startswith("module.") for k in state):
        return (f"{path} is not a dfkd_lib model file: it holds the plain weights of a wrapped model (its keys start "
                "with 'module.', as DistributedDataParallel saves them); strip that prefix, load them into "
                "dfkd_lib.model_from_name(...) and save it with dfkd_lib.save_model")  # fmt: skip
    blocks = [int(m.group(1)) for k in state if (m := re.fullmatch(r"stages\.0\.(\d+)\.conv1\.weight", str(k)))]
    fc = state.get("fc.weight")
    if not blocks or fc is None or fc.dim() != 2:
        return (f"{path} is not a dfkd_lib model file: it holds plain weights (a state_dict) of a network that is not "
                "one of dfkd_lib's CIFAR ResNets")  # fmt: skip
    arch, classes = f"'resnet{6 * (max(blocks) + 1) + 2}'", str(fc.shape[0])
    load = f"torch.load({str(path)!r}, weights_only=True)" + ("['state_dict']" if wrapped else "")
    return (
        f"{path} is not a dfkd_lib model or training checkpoint: it holds plain weights (a state_dict). Convert it "
        f"with: model = dfkd_lib.model_from_name({arch}, {classes}); model.load_state_dict({load}); "
        "dfkd_lib.save_model(model, 'model.pt')"
    )


def _one_line(e: Exception, limit: int = 300) -> str:
    """``e``'s text on one line, cut at ``limit`` characters."""
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _arch_of(model: nn.Module) -> str:
    if not isinstance(model, CifarResNet):
        raise TypeError(f"save_model saves CifarResNet models, got {type(model).__name__}")
    return f"resnet{model.depth}"


def save_model(model: nn.Module, path: str | os.PathLike, **meta: Any) -> None:
    """Save a :class:`~dfkd_lib.models.CifarResNet` with its architecture and ``meta`` (atomically).

    Raises:
        TypeError: ``model`` is not a :class:`~dfkd_lib.models.CifarResNet`.
    """
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    obj = {"format": MODEL_FORMAT, "version": 1, "arch": _arch_of(model), "num_classes": model.num_classes,
           "state_dict": state, "meta": meta}  # fmt: skip
    if model.widths != DEFAULT_WIDTHS:  # stored only when not the usual, so standard files stay as they were
        obj["widths"] = list(model.widths)
    atomic_save(obj, path)


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> CifarResNet:
    """Rebuild a model saved by :func:`save_model` (or the ``student`` of a training checkpoint).

    The returned model carries the file's metadata in ``model.meta``.

    Raises:
        CheckpointError: the file is missing, corrupt, not a dfkd_lib file (a plain state_dict: the
            message says how to convert it), a field is missing or wrong (named), or its weights do
            not fit its architecture (:class:`UnsafeCheckpointError` if it holds objects that loading
            could run).
    """
    path = Path(path)
    obj = safe_load(path, map_location)
    if obj.get("format") == MODEL_FORMAT:
        arch_field = "arch"
        arch = _field(obj, "arch", str, path)
        num_classes = _field(obj, "num_classes", int, path)
        state = _field(obj, "state_dict", dict, path)
        meta = _field(obj, "meta", dict, path) if obj.get("meta") is not None else {}
        widths = obj.get("widths", DEFAULT_WIDTHS)
        if not (
            isinstance(widths, list | tuple) and len(widths) == 3 and all(type(w) is int and w > 0 for w in widths)
        ):
            raise CheckpointError(f"{path}: field 'widths' must be three positive channel counts, got {widths!r}")
    elif obj.get("format") == TRAIN_FORMAT:
        arch_field = "config.student"
        cfg = _field(obj, "config", dict, path)
        arch = _field(cfg, "student", str, path, arch_field)
        num_classes = _field(obj, "num_classes", int, path)
        state = _field(obj, "student", dict, path)
        epoch = _field(obj, "epoch", int, path, minimum=0)
        meta = {"epoch": epoch}
        widths = DEFAULT_WIDTHS  # a training run's student is always built with the usual widths
    else:
        raise CheckpointError(_state_dict_hint(path, obj))
    try:
        model = model_from_name(arch, num_classes, tuple(widths))
    except ValueError as e:
        raise CheckpointError(f"{path}: field '{arch_field}' names no network dfkd_lib builds: {e}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit a {arch} with {num_classes} classes: {_one_line(e)}") from e
    model.meta = dict(meta)
    return model
