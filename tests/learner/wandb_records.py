"""Read an offline W&B run file (run-*.wandb) back into protobuf records.

wandb 0.31 has no Python reader any more (the old `wandb.sdk.internal.datastore` is gone;
the Go core writes the file). The format is a 7-byte header (":W&B", magic 0xBEE1, version)
followed by LevelDB-log framing: 32 KiB blocks of records with a 7-byte header (CRC32C,
length, type FULL/FIRST/MIDDLE/LAST); each payload is a `wandb_internal_pb2.Record`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list:
    data = Path(path).read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B" and magic == 0xBEE1, "not a W&B run file"
    records, pos, chunks = [], 7, []
    while pos + 7 <= len(data):
        room = BLOCK - pos % BLOCK
        if room < 7:  # block trailer padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        payload = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
            continue
        chunks.append(payload)
        if kind in (FULL, LAST):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(b"".join(chunks))
            records.append(rec)
            chunks = []
    return records


def history_rows(records) -> list[dict]:
    """The logged rows: {key: value} with values decoded from their JSON encoding."""
    rows = []
    for rec in records:
        if rec.WhichOneof("record_type") == "history":
            rows.append(
                {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json)
                    for item in rec.history.item
                }
            )
    return rows


def run_record(records):
    for rec in records:
        if rec.WhichOneof("record_type") == "run":
            return rec.run
    return None
