"""Atomic, checksummed checkpoints: `state.pt` (a torch file) and `state.pt.sha256` beside it.

`state.pt` is written to a temporary name and renamed over the previous one, so a run killed at
any moment leaves the previous checkpoint or the new one, never a partial file. Its sha256 is
computed while it is written and stored in `state.pt.sha256` (the format of `sha256sum`, so
`sha256sum -c state.pt.sha256` checks it by hand); `load` verifies it, because torch reads a
damaged file without complaint. Two files cannot be replaced in one atomic step, so the
checksum file briefly lists both the old and the new hash around the rename of `state.pt`:
whenever the run stops, the checkpoint on disk matches one of the hashes listed.

Checkpoints written before checksums (format 1, no `.sha256` file) are accepted with a note:
nothing can verify them, and the next checkpoint the run writes carries a checksum.

numpy arrays are stored as tensors and the file is read with `weights_only=True` (plain
containers, numbers, strings and tensors only).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_NAME = "state.pt"
CHECKSUM_NAME = CHECKPOINT_NAME + ".sha256"
FORMAT = 2  # 2: with a checksum file and the run's records; 1: neither
TMP_SUFFIX = ".tmp"


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


class _HashingWriter:
    """A file wrapper that hashes what passes through and keeps the OSError of a failed write
    (torch turns it into an opaque RuntimeError)."""

    def __init__(self, f):
        self.f, self.sha, self.error = f, hashlib.sha256(), None

    def write(self, data) -> int:
        try:
            n = self.f.write(data)
        except OSError as exc:
            self.error = exc
            raise
        self.sha.update(data)
        return n

    def flush(self) -> None:
        self.f.flush()


def _write_checksums(directory: Path, hashes: list[str]) -> None:
    tmp = directory / (CHECKSUM_NAME + TMP_SUFFIX)
    with open(tmp, "w") as f:
        f.write("".join(f"{h}  {CHECKPOINT_NAME}\n" for h in hashes))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / CHECKSUM_NAME)


def _read_checksums(directory: Path) -> list[str] | None:
    try:
        text = (directory / CHECKSUM_NAME).read_text()
    except FileNotFoundError:
        return None
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def remove_leftovers(directory: Path) -> None:
    """Delete temporary files a killed or failed save left behind (call with the run lock
    held: then no other process can be writing them)."""
    for name in (CHECKPOINT_NAME, CHECKSUM_NAME):
        (directory / (name + TMP_SUFFIX)).unlink(missing_ok=True)


def save(directory: Path, state: dict) -> Path:
    """Write `state` to directory/state.pt atomically with its checksum. A failed write (full
    disk, size limit) removes its temporary file, leaves the previous checkpoint as it was
    and raises OSError naming the file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CHECKPOINT_NAME
    tmp = directory / (CHECKPOINT_NAME + TMP_SUFFIX)
    # The hashes now listed include the one of the state.pt on disk (even when a kill came
    # between the two checksum writes below), so listing them all keeps it verifiable.
    old = (_read_checksums(directory) or []) if path.exists() else []
    try:
        with open(tmp, "wb") as f:
            writer = _HashingWriter(f)
            try:
                torch.save(_to_storable({**state, "format": FORMAT}), writer)
            except RuntimeError:
                if writer.error is not None:
                    raise writer.error from None
                raise
            f.flush()
            os.fsync(f.fileno())
        new = writer.sha.hexdigest()
        _write_checksums(directory, [*old, new])  # either file may be on disk at a kill
        os.replace(tmp, path)
        _write_checksums(directory, [new])
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        (directory / (CHECKSUM_NAME + TMP_SUFFIX)).unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(tmp)) from None
    return path


def _file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def load(directory: Path) -> dict | None:
    """The saved state, or None when there is none. A damaged or unreadable file raises
    CheckpointError naming it, so a damaged run is never silently resumed or restarted."""
    path = directory / CHECKPOINT_NAME
    if not path.exists():
        return None
    advice = (
        f"nothing was changed; delete the folder {directory} to start the run over, "
        f"or restore {CHECKPOINT_NAME} and {CHECKSUM_NAME} from a copy"
    )
    hashes = _read_checksums(directory)
    if hashes is not None and _file_sha256(path) not in hashes:
        raise CheckpointError(
            f"checkpoint {path} is damaged: its content does not match the sha256 in "
            f"{CHECKSUM_NAME}; {advice}"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "format" not in state:
            raise ValueError("not a ficomm checkpoint")
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {path} is damaged or unreadable ({type(exc).__name__}: {exc}); {advice}"
        ) from None
    if hashes is None:
        if state["format"] >= 2:
            raise CheckpointError(
                f"checkpoint {path} has lost its checksum file {CHECKSUM_NAME}, so it cannot "
                f"be verified; {advice}"
            )
        print(
            f"ficomm train: note: checkpoint {path} predates checksums (format "
            f"{state['format']}) and cannot be verified; the next checkpoint will carry one",
            file=sys.stderr,
        )
    return state
