"""Pretrained models shipped inside the package, checked against their manifest: the teachers,
and the seed-0 ResNet-8 student of each method of the 60-epoch protocol.

``dfkd_lib/weights/manifest.json`` lists each shipped model with its file, SHA-256, test accuracy,
the exact command that trained it and the commit it was trained at (a student also names its
method, teacher, labelled fraction, seed and run folder). :func:`load_pretrained` verifies the
checksum before it loads anything; :func:`load_student` finds a student by its method.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError, load_model
from .models import CifarResNet

__all__ = [
    "WEIGHTS_DIR",
    "available",
    "manifest",
    "sha256",
    "load_pretrained",
    "load_teacher",
    "students",
    "load_student",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def manifest() -> dict[str, dict[str, Any]]:
    """The manifest of shipped models, by name (empty if none is shipped)."""
    path = WEIGHTS_DIR / "manifest.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def available() -> list[str]:
    """Names of the shipped pretrained models."""
    return sorted(manifest())


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_pretrained(name: str, verify: bool = True) -> CifarResNet:
    """Load a shipped model by name (e.g. ``"resnet26_cifar10"``), verifying its checksum.

    Raises:
        KeyError: unknown name (the message lists the available ones).
        CheckpointError: the file is missing or its checksum does not match the manifest.
    """
    entries = manifest()
    if name not in entries:
        raise KeyError(f"no pretrained model {name!r}; available: {available() or 'none'}")
    entry = entries[name]
    path = WEIGHTS_DIR / entry["file"]
    if not path.exists():
        raise CheckpointError(f"pretrained file {path} is missing (reinstall the package)")
    if verify:
        digest = sha256(path)
        if digest != entry["sha256"]:
            raise CheckpointError(
                f"checksum mismatch for {path}: expected {entry['sha256']}, got {digest}; the file is corrupt or was replaced"
            )
    model = load_model(path)
    model.meta = {**getattr(model, "meta", {}), **{k: v for k, v in entry.items() if k != "file"}}
    return model


def load_teacher(spec: str, what: str = "teacher") -> CifarResNet:
    """A teacher from a model/checkpoint file path or the name of a shipped model; ``what`` names
    ``spec`` in the errors (the CLI's ``evaluate`` passes ``"--model"``).

    Raises:
        FileNotFoundError: ``spec`` is neither a file nor a shipped name.
        IsADirectoryError: ``spec`` is a folder (a run folder holds ``model.pt``).
        CheckpointError: the file is corrupt, unsafe, or not a dfkd_lib model.
    """
    if spec in manifest():
        return load_pretrained(spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        inside = [p.name for p in (path / "model.pt", path / "checkpoint.pt") if p.is_file()]
        hint = f"; it holds {' and '.join(inside)}: pass {path / inside[0]}" if inside else ""
        raise IsADirectoryError(f"{what} {spec!r} is a folder, not a model file{hint}")
    if path.exists():
        return load_model(path)
    raise FileNotFoundError(
        f"{what} {spec!r} is neither a file nor a pretrained name (available: {available() or 'none'})"
    )


def students(dataset: str = "cifar10", labelled_fraction: float = 1.0) -> dict[str, str]:
    """The shipped students of ``dataset`` trained with ``labelled_fraction`` of the labels, as
    ``{method: name}`` (empty until some are shipped)."""
    return {
        e["method"]: name
        for name, e in sorted(manifest().items())
        if e.get("role") == "student" and e.get("dataset") == dataset
        and float(e.get("labelled_fraction", 1.0)) == labelled_fraction
    }  # fmt: skip


def load_student(method: str, dataset: str = "cifar10", labelled_fraction: float = 1.0) -> CifarResNet:
    """The shipped student of ``method`` (e.g. ``"kd"``: ResNet-8, seed 0 of the 60-epoch protocol),
    checksum verified; its manifest entry is in ``model.meta``.

    Raises:
        KeyError: no student of that method is shipped (the message lists those that are).
    """
    found = students(dataset, labelled_fraction)
    if method not in found:
        shipped = sorted({(e["dataset"], float(e.get("labelled_fraction", 1.0))) for e in manifest().values()
                          if e.get("role") == "student"})  # fmt: skip
        where = ", ".join(f"{d} at {f:g}" for d, f in shipped) or "none"
        raise KeyError(
            f"no shipped student of method {method!r} ({dataset}, labelled fraction {labelled_fraction:g}); "
            f"shipped: {sorted(found) or 'none'} (students are shipped for: {where})"
        )
    return load_pretrained(found[method])
