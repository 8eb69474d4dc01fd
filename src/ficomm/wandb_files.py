"""Read an offline W&B run file (`run-<id>.wandb`) back without a server.

wandb 0.31 no longer ships a Python reader (the old `wandb.sdk.internal.datastore` is gone;
the Go core writes the file). The format is LevelDB's log format behind a 7-byte header
(":W&B", magic 0xBEE1 little-endian, version 0): 32 KiB blocks of chunks, each chunk a 7-byte
header (CRC32 of type byte + data, little-endian u32; length u16; type u8: 1 full, 2 first,
3 middle, 4 last) followed by its data; a block tail shorter than a header is zero padding.
Each reassembled record is a `wandb.proto.wandb_internal_pb2.Record`.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
_BLOCK = 32 * 1024
_CHUNK = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


class WandbFileError(ValueError):
    """The file is not a readable offline W&B run file; the message names it."""


def iter_record_bytes(path: str | Path) -> Iterator[bytes]:
    """The raw protobuf bytes of every record in a .wandb file, in order."""
    path = Path(path)
    data = path.read_bytes()
    if not data.startswith(_HEADER):
        raise WandbFileError(f"{path}: not a W&B run file (bad header)")
    pos, pending = len(_HEADER), None
    while pos + _CHUNK <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _CHUNK:
            pos += left_in_block
            continue
        crc, length, kind = struct.unpack_from("<IHB", data, pos)
        if crc == 0 and length == 0 and kind == 0:  # zero padding at the tail of the file
            pos += left_in_block
            continue
        body = data[pos + _CHUNK : pos + _CHUNK + length]
        if len(body) < length or zlib.crc32(body, zlib.crc32(bytes([kind]))) != crc:
            raise WandbFileError(f"{path}: corrupt record at byte {pos}")
        pos += _CHUNK + length
        if kind == _FULL:
            yield body
        elif kind == _FIRST:
            pending = bytearray(body)
        elif kind in (_MIDDLE, _LAST) and pending is not None:
            pending += body
            if kind == _LAST:
                yield bytes(pending)
                pending = None
        else:
            raise WandbFileError(f"{path}: unexpected chunk type {kind} at byte {pos}")


def iter_records(path: str | Path):
    """Every record of a .wandb file as a `wandb_internal_pb2.Record`."""
    from wandb.proto import wandb_internal_pb2 as pb

    for raw in iter_record_bytes(path):
        record = pb.Record()
        record.ParseFromString(raw)
        yield record


def read_offline_run(path: str | Path) -> dict:
    """The config, history rows, summary and tags of one offline run.

    `path` is a run-<id>.wandb file or an offline-run-* directory holding one. Values are
    decoded from their JSON; a logged wandb.Table is a dict with "_type": "table-file" and a
    "path" relative to the run's files/ directory (see `read_logged_table`).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("run-*.wandb"))
        if not files:
            raise WandbFileError(f"{path}: no run-*.wandb file inside")
        path = files[0]
    out: dict = {
        "file": str(path),
        "run_id": None,
        "config": {},
        "history": [],
        "summary": {},
        "tags": [],
    }
    for r in iter_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out["run_id"] = r.run.run_id
            out["project"] = r.run.project
            out["group"] = r.run.run_group
            out["job_type"] = r.run.job_type
            out["name"] = r.run.display_name
            out["tags"] = list(r.run.tags)
            _assign(out["config"], r.run.config.update)
        elif kind == "config":
            _assign(out["config"], r.config.update)
        elif kind == "history":
            row: dict = {}
            _assign(row, r.history.item)
            out["history"].append(row)
        elif kind == "summary":
            _assign(out["summary"], r.summary.update)
    return out


def wait_until_complete(path: str | Path, timeout: float = 60.0) -> bool:
    """Wait until the run file holds its exit record: `run.finish()` can return before
    wandb-core has flushed the file. True when complete, False on timeout."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            if any(r.WhichOneof("record_type") == "exit" for r in iter_records(path)):
                return True
        except (WandbFileError, OSError):
            pass  # not written far enough yet
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def read_logged_table(run_file: str | Path, value: dict):
    """A logged wandb.Table (a history/summary value) -> pandas DataFrame."""
    import pandas as pd

    files_dir = Path(run_file).parent / "files"
    table = json.loads((files_dir / value["path"]).read_text())
    return pd.DataFrame(table["data"], columns=table["columns"])


def _assign(target: dict, items) -> None:
    """Set each item's decoded JSON value at its key, nested keys as nested dicts."""
    for item in items:
        keys = [item.key] if item.key else list(item.nested_key)
        d = target
        for k in keys[:-1]:
            d = d.setdefault(k, {})
        d[keys[-1]] = json.loads(item.value_json)
