"""Read W&B's offline run files (``run-<id>.wandb``) back: the history a run logged.

A ``.wandb`` file is W&B's transaction log: a 7-byte header (``:W&B``, a 2-byte magic, a
version byte), then LevelDB's log format (32 KiB blocks of records, each a CRC-32, a
length, a type: whole, first, middle or last piece) whose payloads are the ``Record``
protocol buffers of the ``wandb`` package. Used to resume a run without logging a step
twice, and by the tests to check what was logged. A torn last record (a killed process)
ends the read; a record whose checksum fails is skipped.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..foundations.io import read_file_bytes

HEADER = b":W&B"
HEADER_LEN = 7
BLOCK = 32768
RECORD_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def payloads(path: Path) -> Iterator[bytes]:
    """The records' payloads of one ``.wandb`` file, in order."""
    data = read_file_bytes(path)  # a regular file that fits in memory: a received folder
    if not data.startswith(HEADER):
        raise ValueError(f"{path} is not a W&B run file (no {HEADER!r} header)")
    pos, pieces = HEADER_LEN, []
    while pos < len(data):
        left = BLOCK - pos % BLOCK
        if left < RECORD_HEADER:  # a block's zero-filled trailer
            pos += left
            continue
        if pos + RECORD_HEADER > len(data):
            return  # torn
        crc, length, kind = struct.unpack_from("<IHB", data, pos)
        body = data[pos + RECORD_HEADER : pos + RECORD_HEADER + length]
        if len(body) < length:
            return  # torn
        pos += RECORD_HEADER + length
        if kind == 0 and length == 0:  # padding up to the next block
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
            continue
        if zlib.crc32(bytes([kind]) + body) & 0xFFFFFFFF != crc:
            pieces = []
            continue
        if kind == FULL:
            yield body
        elif kind == FIRST:
            pieces = [body]
        elif kind == MIDDLE and pieces:
            pieces.append(body)
        elif kind == LAST and pieces:
            yield b"".join([*pieces, body])
            pieces = []


def records(path: Path) -> Iterator[Any]:
    """The ``wandb_internal_pb2.Record`` messages of one run file."""
    from wandb.proto import wandb_internal_pb2

    for body in payloads(path):
        rec = wandb_internal_pb2.Record()
        try:
            rec.ParseFromString(body)
        except Exception:  # noqa: BLE001 - a damaged record: skip it, as W&B's sync does
            continue
        yield rec


def history(path: Path) -> list[dict[str, Any]]:
    """The rows ``run.log`` wrote, each a dict with its ``_step``; a logged object (an
    image, a histogram, a table) is a dict of its fields under its key."""
    rows = []
    for rec in records(path):
        if rec.WhichOneof("record_type") != "history":
            continue
        row: dict[str, Any] = {}
        for item in rec.history.item:
            try:
                value = json.loads(item.value_json)
            except ValueError:
                value = item.value_json
            if item.key:
                row[item.key] = value
                continue
            *outer, last = item.nested_key
            node = row
            for k in outer:
                node = node.setdefault(k, {})
            node[last] = value
        if "_step" not in row and rec.history.HasField("step"):
            row["_step"] = rec.history.step.num
        rows.append(row)
    return rows


def run_record(path: Path) -> Any:
    """The run's own record (id, name, group, job type) in one run file, if any."""
    for rec in records(path):
        if rec.WhichOneof("record_type") == "run":
            return rec.run
    return None


def run_files(wandb_dir: Path, run_id: str) -> list[Path]:
    """Every offline (or online) run file of run ``run_id`` under ``wandb_dir``
    (``<dir>/wandb``), oldest first: one per process that opened the run."""
    found = Path(wandb_dir).glob(f"*run-*-{run_id}/run-{run_id}.wandb")
    return sorted(found, key=lambda p: p.parent.name.split("-")[-2])


def logged_steps(wandb_dir: Path, run_id: str) -> dict[str, int]:
    """The last step logged per key, over every file of run ``run_id``."""
    last: dict[str, int] = {}
    for f in run_files(wandb_dir, run_id):
        for row in history(f):
            step = row.get("_step")
            if not isinstance(step, int):
                continue
            for k in row:
                if not k.startswith("_"):
                    last[k] = max(last.get(k, -1), step)
    return last
