"""The W&B run-file reader: LevelDB log blocks, pieces across blocks, torn and damaged records.

The files are built here with the wandb package's own Record messages, in the format the
reader's docstring describes, so these tests need no W&B process."""

from __future__ import annotations

import json
import struct
import zlib

import pytest

pb = pytest.importorskip("wandb.proto.wandb_internal_pb2", reason="the [wandb] extra")

from interspace_pruning.tracking import wandb_files  # noqa: E402

BLOCK, HEADER = wandb_files.BLOCK, b":W&B\xe1\xbe\x00"


def history(step: int, **values) -> bytes:
    rec = pb.Record()
    for k, v in {**values, "_step": step}.items():
        item = rec.history.item.add()
        item.key, item.value_json = k, json.dumps(v)
    return rec.SerializeToString()


def write_log(payloads: list[bytes]) -> bytes:
    """LevelDB's log format after W&B's 7-byte header: records never straddle a block; a
    payload longer than the block's rest is cut into FIRST, MIDDLE..., LAST pieces."""
    out = bytearray(HEADER)
    for data in payloads:
        first = True
        while True:
            left = BLOCK - len(out) % BLOCK
            if left < 7:
                out += b"\0" * left
                continue
            piece, data = data[: left - 7], data[left - 7 :]
            kind = (1 if not data else 2) if first else (4 if not data else 3)
            crc = zlib.crc32(bytes([kind]) + piece) & 0xFFFFFFFF
            out += struct.pack("<IHB", crc, len(piece), kind) + piece
            first = False
            if not data:
                break
    return bytes(out)


def test_rows_come_back_in_order(tmp_path):
    f = tmp_path / "run-x.wandb"
    f.write_bytes(write_log([history(s, loss=1.0 / (s + 1)) for s in range(5)]))
    rows = wandb_files.history(f)
    assert [r["_step"] for r in rows] == list(range(5)) and rows[2]["loss"] == pytest.approx(1 / 3)


def test_a_record_longer_than_a_block_is_joined(tmp_path):
    big = history(7, text="x" * (3 * BLOCK))
    f = tmp_path / "run-x.wandb"
    f.write_bytes(write_log([history(1, a=1), big, history(8, a=2)]))
    rows = wandb_files.history(f)
    assert [r["_step"] for r in rows] == [1, 7, 8] and len(rows[1]["text"]) == 3 * BLOCK


def test_a_torn_tail_ends_the_read_and_a_damaged_record_is_skipped(tmp_path):
    data = write_log([history(s, a=s) for s in range(4)])
    f = tmp_path / "run-x.wandb"
    f.write_bytes(data[:-5])  # a killed writer: the last record is cut
    assert [r["_step"] for r in wandb_files.history(f)] == [0, 1, 2]
    broken = bytearray(data)
    broken[len(HEADER) + 7 + 2] ^= 0xFF  # a byte of the first record's payload
    f.write_bytes(bytes(broken))
    assert [r["_step"] for r in wandb_files.history(f)] == [1, 2, 3]


def test_not_a_run_file_is_one_line(tmp_path):
    f = tmp_path / "run-x.wandb"
    f.write_bytes(b"PK\x03\x04 not this")
    with pytest.raises(ValueError, match="is not a W&B run file"):
        wandb_files.history(f)


def test_logged_steps_is_the_last_step_per_key_over_every_file(tmp_path):
    for i, (stamp, steps) in enumerate([("20260101_000000", [1, 2]), ("20260101_000100", [3])]):
        d = tmp_path / "wandb" / f"offline-run-{stamp}-abc"
        d.mkdir(parents=True)
        rows = [history(s, loss=0.5, **({"acc": 0.9} if i == 0 else {})) for s in steps]
        (d / "run-abc.wandb").write_bytes(write_log(rows))
    assert wandb_files.logged_steps(tmp_path / "wandb", "abc") == {"loss": 3, "acc": 2}
    assert wandb_files.logged_steps(tmp_path / "wandb", "other") == {}
