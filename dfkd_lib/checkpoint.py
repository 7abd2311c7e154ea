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

from .models import CifarResNet, model_from_name

__all__ = ["CheckpointError", "UnsafeCheckpointError", "atomic_save", "safe_load", "save_model", "load_model"]

MODEL_FORMAT = "dfkd_lib.model"

# what torch's weights-only unpickler says when a file asks it to call or build something
_UNSAFE = re.compile(r"GLOBAL|reduce|allowlist|Can only (create|build)")


class CheckpointError(ValueError):
    """A checkpoint or model file is missing, corrupt or does not fit."""


class UnsafeCheckpointError(CheckpointError):
    """A file holds objects other than tensors and plain data: loading it could run code."""


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
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
            raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or truncated?): {e}") from e
        raise UnsafeCheckpointError(
            f"refused to load {path}: it holds objects other than tensors and plain data, and loading those "
            f"could run code from the file, so it may be unsafe ({unsafe[0]}). dfkd_lib's own model files and "
            "checkpoints never hold such objects; if you trust where the file came from, inspect it yourself "
            "with torch.load(path, weights_only=False)."
        ) from None
    except Exception as e:  # truncated, not a zip, ...
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or truncated?): {e}") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} does not hold a dfkd_lib checkpoint (found {type(obj).__name__})")
    return obj


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
    atomic_save(
        {"format": MODEL_FORMAT, "version": 1, "arch": _arch_of(model), "num_classes": model.num_classes,
         "state_dict": state, "meta": meta},
        path,
    )  # fmt: skip


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> CifarResNet:
    """Rebuild a model saved by :func:`save_model` (or the ``student`` of a training checkpoint).

    The returned model carries the file's metadata in ``model.meta``.

    Raises:
        CheckpointError: the file is missing, corrupt, not a dfkd_lib file, or its weights do not
            fit its architecture (:class:`UnsafeCheckpointError` if it holds objects that loading
            could run).
    """
    obj = safe_load(path, map_location)
    if obj.get("format") == MODEL_FORMAT:
        arch, num_classes, state, meta = obj["arch"], obj["num_classes"], obj["state_dict"], obj.get("meta", {})
    elif obj.get("format") == "dfkd_lib.train":
        cfg = obj["config"]
        arch, num_classes, state, meta = cfg["student"], obj["num_classes"], obj["student"], {"epoch": obj["epoch"]}
    else:
        raise CheckpointError(f"{path} is not a dfkd_lib model or training checkpoint")
    model = model_from_name(arch, num_classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit a {arch} with {num_classes} classes: {e}") from e
    model.meta = dict(meta)
    return model
