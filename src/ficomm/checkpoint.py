"""Atomic checkpoints: one file, written to a temporary name and renamed over the previous.

The rename is atomic, so a run killed at any moment leaves either the previous checkpoint or
the new one, never a partial file. numpy arrays are stored as tensors and the file is read
with `weights_only=True` (plain containers, numbers, strings and tensors only).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_NAME = "state.pt"


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be used."""


def _to_storable(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, dict):
        return {k: _to_storable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_storable(v) for v in obj)
    return obj


def save(directory: Path, state: dict) -> Path:
    """Write `state` to directory/state.pt atomically (tmp file, fsync, rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CHECKPOINT_NAME
    tmp = directory / (CHECKPOINT_NAME + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(_to_storable(state), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load(directory: Path) -> dict | None:
    """The saved state, or None when there is none. A file that cannot be read raises
    CheckpointError naming it, so a damaged run is never silently restarted."""
    path = directory / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "format" not in state:
            raise ValueError("not a ficomm checkpoint")
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__}: {exc}); "
            "delete it to start the run over, or restore it from a copy"
        ) from None
    return state


def to_numpy(t: Any) -> np.ndarray:
    return t.numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
