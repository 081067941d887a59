"""Reads the records of an offline W&B run file (`run-<id>.wandb`) so tests can check what W&B got.

The file is a LevelDB-style log: a 7-byte header, then 32 KiB blocks of chunks
(4-byte checksum, 2-byte length, 1-byte type: full/first/middle/last).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

HEADER_BYTES = 7
BLOCK_BYTES = 32 * 1024
CHUNK_HEADER_BYTES = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(data: bytes):
    position, pending = HEADER_BYTES, b""
    while position + CHUNK_HEADER_BYTES <= len(data):
        left_in_block = BLOCK_BYTES - (position % BLOCK_BYTES)
        if left_in_block < CHUNK_HEADER_BYTES:  # block trailer padding
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + CHUNK_HEADER_BYTES])
        chunk = data[position + CHUNK_HEADER_BYTES : position + CHUNK_HEADER_BYTES + length]
        position += CHUNK_HEADER_BYTES + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""
        elif kind == 0 and length == 0:
            position += BLOCK_BYTES - (position % BLOCK_BYTES)


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    records = []
    for payload in _payloads(Path(path).read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def run_config(path: Path) -> dict:
    """The run config as W&B received it (later updates win)."""
    config: dict = {}
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        items = record.config.update if kind == "config" else record.run.config.update if kind == "run" else []
        for item in items:
            config[item.key] = json.loads(item.value_json)
    return config


def run_ids(path: Path) -> set[str]:
    return {record.run.run_id for record in read_records(path) if record.WhichOneof("record_type") == "run"}


def exit_codes(path: Path) -> list[int]:
    return [record.exit.exit_code for record in read_records(path) if record.WhichOneof("record_type") == "exit"]
