"""Pretrained teachers shipped inside the package, checked against their manifest.

``dfkd_lib/weights/manifest.json`` lists each shipped model with its file, SHA-256, test accuracy,
the exact command that trained it and the commit it was trained at. :func:`load_pretrained`
verifies the checksum before it loads anything.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError, load_model
from .models import CifarResNet

__all__ = ["WEIGHTS_DIR", "available", "manifest", "sha256", "load_pretrained", "load_teacher"]

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


def load_teacher(spec: str) -> CifarResNet:
    """A teacher from a model/checkpoint file path or the name of a shipped model."""
    if spec in manifest():
        return load_pretrained(spec)
    path = Path(spec).expanduser()
    if path.exists():
        return load_model(path)
    raise FileNotFoundError(
        f"teacher {spec!r} is neither a file nor a pretrained name (available: {available() or 'none'})"
    )
